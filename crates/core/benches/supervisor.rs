//! Supervisor benchmark (bounded, about a minute):
//! - crash → `crashed` observed,
//! - hang → `unhealthy` (1 s probe interval, 3 failures, 500 ms timeout),
//! - restart → `running`, minus the service's own start time,
//! - the app's CPU and memory while it watches two services at a 1 s probe interval.
//!
//! Run: `cargo bench -p sparklio-desk-core --bench supervisor`
//! (builds `sparklio-test-service` in release mode first, as the tests do).

use sparklio_core::supervisor::events::Event;
use sparklio_testkit::{free_port, test_service, ServiceToml};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const ROUNDS: usize = 5;
const STARTUP_MS: u64 = 300;

/// A test-service block: `startup_ms` before it is healthy, probed every `interval_ms`.
fn service(name: &str, port: u16, interval_ms: u64, startup_ms: u64) -> String {
    ServiceToml::new(name, port)
        .args(&["--startup-ms", &startup_ms.to_string()])
        .health(interval_ms, 500, 3)
        .backoff(100, 100)
        .stop_timeout_ms(2000)
        .line("restart = \"always\"")
        .line("crash_loop = { restarts = 100, within_s = 60 }")
        .to_string()
}

async fn start(dir: &tempfile::TempDir, toml: &str) -> sparklio_core::RunningApp {
    sparklio_testkit::app::start_app(dir, toml, &[]).await
}

/// Wait (bounded) for `service` to reach `to`; returns when it was seen.
async fn until(rx: &mut broadcast::Receiver<Event>, service: &str, to: &str) -> Instant {
    let deadline = Duration::from_secs(30);
    tokio::time::timeout(deadline, async {
        loop {
            match rx.recv().await {
                Ok(e) if e.service == service && e.to == to => return Instant::now(),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{service} never became {to}"))
}

async fn post(url: String) {
    let _ = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = ms[ms.len() / 2];
    println!(
        "{name:<44} median {median:>8.1} ms   min {:>8.1}   max {:>8.1}   (n={})",
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
}

/// The service's own start time: spawn it and poll its health URL every 2 ms.
async fn own_start_time(bin: &str) -> f64 {
    let port = free_port();
    let t0 = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--startup-ms",
            &STARTUP_MS.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let took = loop {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    took.as_secs_f64() * 1000.0
}

/// (CPU seconds used by this process, resident memory in bytes), where the OS tells.
fn own_usage() -> Option<(f64, u64)> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 (1-based); `rest` starts at field 3.
        let ticks: f64 = f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((ticks / 100.0, rss_kb * 1024))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let bin = test_service().display().to_string();
    println!("supervisor benchmark ({ROUNDS} rounds each; test service start-up {STARTUP_MS} ms)");

    let mut own = Vec::new();
    for _ in 0..ROUNDS {
        own.push(own_start_time(&bin).await);
    }
    let own_median = {
        let mut o = own.clone();
        o.sort_by(|a, b| a.partial_cmp(b).unwrap());
        o[o.len() / 2]
    };
    stats("service's own start time (spawn → healthy)", own);

    // Fast probes (200 ms) for the crash and restart rounds, 1 s for the hang round.
    let dir = tempfile::tempdir().unwrap();
    let (p_fast, p_hang) = (free_port(), free_port());
    let toml = format!(
        "{}{}",
        service("fast", p_fast, 200, STARTUP_MS),
        service("hang", p_hang, 1000, STARTUP_MS)
    );
    let mut events = {
        let app = start(&dir, &toml).await;
        let rx = app.state.supervisor.events.subscribe();
        (app, rx)
    };
    let (app, rx) = (&events.0, &mut events.1);
    until(rx, "fast", "running").await;

    let mut crash = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        post(format!("http://127.0.0.1:{p_fast}/exit/1")).await;
        let seen = until(rx, "fast", "crashed").await;
        crash.push((seen - t0).as_secs_f64() * 1000.0);
        until(rx, "fast", "running").await;
    }
    stats("crash → crashed observed", crash);

    let mut restart = Vec::new();
    let mut restart_over = Vec::new();
    let api = format!("http://{}/api/v1/services/fast/restart", app.addr);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        post(api.clone()).await;
        let seen = until(rx, "fast", "running").await;
        let ms = (seen - t0).as_secs_f64() * 1000.0;
        restart.push(ms);
        restart_over.push(ms - own_median);
    }
    stats("restart → running (200 ms probes)", restart);
    stats("restart → running minus own start time", restart_over);

    let mut hang = Vec::new();
    for _ in 0..3 {
        until_running(app, "hang").await;
        let t0 = Instant::now();
        post(format!("http://127.0.0.1:{p_hang}/hang")).await;
        let seen = until(rx, "hang", "unhealthy").await;
        hang.push((seen - t0).as_secs_f64() * 1000.0);
    }
    stats("hang → unhealthy (1 s interval, 3 × 500 ms)", hang);
    events.0.shutdown().await.unwrap();

    // Resource use: two services watched at a 1 s probe interval for 30 s.
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}{}",
        service("a", free_port(), 1000, 0),
        service("b", free_port(), 1000, 0)
    );
    let app = start(&dir, &toml).await;
    until_running(&app, "a").await;
    until_running(&app, "b").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = Duration::from_secs(30);
    match own_usage() {
        Some((cpu0, _)) => {
            let t0 = Instant::now();
            tokio::time::sleep(window).await;
            let (cpu1, rss) = own_usage().unwrap();
            let wall = t0.elapsed().as_secs_f64();
            println!(
                "app watching 2 services at 1 s: CPU {:.2} % of one core over {:.0} s, RSS {:.1} MiB",
                (cpu1 - cpu0) / wall * 100.0,
                wall,
                rss as f64 / 1048576.0
            );
        }
        None => println!("app CPU/memory: not measured on this OS"),
    }
    app.shutdown().await.unwrap();
}

async fn until_running(app: &sparklio_core::RunningApp, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state.supervisor.get(name).unwrap().status().state
        != sparklio_core::supervisor::ServiceState::Running
    {
        assert!(Instant::now() < deadline, "{name} not running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
