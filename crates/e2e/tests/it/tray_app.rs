//! The Tauri app itself, end to end, through WebDriver: `tauri-driver` (crates.io) in front
//! of WebKitGTK's `WebKitWebDriver` launches the debug build of `sparklio-desk-app` with a
//! temporary config and one supervised test service. The window must load the dashboard,
//! a Restart click in it must reach the core, and SIGTERM must quit the app cleanly.
//!
//! Ignored by default: it needs an X server, a session bus, the built app and
//! tauri-driver. Run it with `bash scripts/tauri-e2e.sh` (Xvfb, D-Bus, the right env).
#![cfg(unix)]

use serde_json::{json, Value};
use sparklio_desk_e2e::{
    artifacts_dir, free_port, start_driver_with, wait_for_port, Guard, Session,
};
use sparklio_testkit::ServiceToml;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SERVICE: &str = "comfyui";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The debug app binary (`SPARKLIO_APP_BIN`, else `$CARGO_TARGET_DIR` or `<workspace>/target`).
fn app_binary() -> PathBuf {
    let bin = std::env::var_os("SPARKLIO_APP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"))
                .join("debug/sparklio-desk-app")
        });
    assert!(
        bin.exists(),
        "{} missing: cargo build -p sparklio-desk-app",
        bin.display()
    );
    bin.canonicalize().unwrap()
}

fn tauri_driver() -> PathBuf {
    if let Some(p) = std::env::var_os("TAURI_DRIVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin/tauri-driver");
    assert!(
        cargo_bin.exists(),
        "tauri-driver missing: cargo install tauri-driver --locked"
    );
    cargo_bin
}

/// A process's state letter from /proc (None when it is gone).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Live (not zombie) processes running `exe`.
fn live_processes_of(exe: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe)
                && proc_state(*pid).is_some_and(|s| s != 'Z')
        })
        .collect()
}

async fn get(url: &str) -> Value {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs X, D-Bus, the built app and tauri-driver: bash scripts/tauri-e2e.sh"]
async fn tray_app_loads_the_dashboard_restarts_a_service_and_quits_cleanly() {
    let started = Instant::now();
    let app_bin = app_binary();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let service_port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"generator_mode = "mock"

[server]
bind = "127.0.0.1:{port}"

[storage]
data_dir = {data:?}

{service}"#,
            data = dir.path().join("data"),
            service = ServiceToml::new(SERVICE, service_port)
                .args(&["--startup-ms", "1500"])
                .default_backoff(),
        ),
    )
    .unwrap();

    let driver_port = free_port();
    let native_port = free_port();
    let log = artifacts_dir().join("tray-app-driver.log");
    let config_env = config.display().to_string();
    let driver: Guard = start_driver_with(
        tauri_driver().to_str().unwrap(),
        &[
            "--port".into(),
            driver_port.to_string(),
            "--native-port".into(),
            native_port.to_string(),
            "--native-driver".into(),
            "/usr/bin/WebKitWebDriver".into(),
        ],
        &[("SPARKLIO_DESK_CONFIG", &config_env), ("NO_COLOR", "1")],
        Some(&log),
        driver_port,
    )
    .expect("tauri-driver starts");
    wait_for_port(native_port, Duration::from_secs(30)).expect("WebKitWebDriver listens");
    eprintln!("drivers up after {:?}", started.elapsed());

    let s = Session::new(
        &format!("http://127.0.0.1:{driver_port}"),
        json!({"tauri:options": {"application": app_bin.display().to_string()}}),
    )
    .await
    .expect("a WebDriver session on the app (see ci-artifacts/tray-app-driver.log)");
    eprintln!("session up after {:?}", started.elapsed());
    let base = format!("http://127.0.0.1:{port}");

    // The window shows the core's dashboard, live.
    s.wait_for(
        "return document.querySelector('#conn')?.dataset.state === 'up'",
        Duration::from_secs(60),
    )
    .await
    .expect("the window's dashboard connects to the core");
    let url = s.current_url().await.unwrap();
    assert!(url.starts_with(&format!("{base}/")), "window shows {url}");
    s.wait_for(
        &format!("return document.querySelector('article.service[data-name={SERVICE}]')?.dataset.state === 'running'"),
        Duration::from_secs(60),
    )
    .await
    .expect("the service card shows running");
    eprintln!("dashboard live after {:?}", started.elapsed());

    // The status names the process serving it: the app itself, launched by the driver.
    let status = get(&format!("{base}/api/v1/status")).await;
    let app_pid = status["pid"].as_u64().expect("status has pid") as u32;
    assert_eq!(
        std::fs::read_link(format!("/proc/{app_pid}/exe")).unwrap(),
        app_bin,
        "the core runs inside the app"
    );

    // A Restart click in the window reaches the core: new process, event names who asked.
    let before = get(&format!("{base}/api/v1/services/{SERVICE}")).await;
    let old_pid = before["pid"].clone();
    assert!(old_pid.is_u64(), "{before}");
    let button = s
        .find(&format!(
            "article.service[data-name={SERVICE}] button[data-action=restart]"
        ))
        .await
        .unwrap();
    s.click(&button).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = get(&format!("{base}/api/v1/services/{SERVICE}")).await;
        if now["state"] == "running" && now["pid"].is_u64() && now["pid"] != old_pid {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no restart after the click: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let events = get(&format!("{base}/api/v1/events?service={SERVICE}")).await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("restarted by")),
        "{events}"
    );
    s.wait_for(
        "return [...document.querySelectorAll('#events li')].some(l => l.textContent.includes('restarted by'))",
        Duration::from_secs(20),
    )
    .await
    .expect("the restart shows in the window's event list");
    eprintln!(
        "restart reached the core after {:?} (pid {old_pid} -> {})",
        started.elapsed(),
        after["pid"]
    );
    // The tray followed (amber while the service started, green again) and the app's
    // notifier saw the restart (shown as a desktop notification, logged either way).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tray: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once("tray icon: ").map(|(_, rest)| rest))
            .collect();
        let degraded = tray.iter().filter(|t| t.starts_with("degraded")).count();
        let ok_last = tray.last().is_some_and(|t| t.starts_with("ok"));
        let notified = text.contains(&format!("notification: {SERVICE} is restarting"));
        if degraded >= 2 && ok_last && notified {
            eprintln!("tray: {tray:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tray/notifier did not follow the restart (tray {tray:?}, notified {notified}); see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.screenshot(&artifacts_dir().join("tray-app.png"))
        .await
        .unwrap();

    // Quit: SIGTERM, as a session logout or a service manager sends it.
    let t_quit = Instant::now();
    assert_eq!(
        unsafe { libc::kill(app_pid as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        || proc_state(app_pid).is_some_and(|s| s != 'Z')
    {
        assert!(
            Instant::now() < deadline,
            "the app did not quit within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("app quit {:?} after SIGTERM", t_quit.elapsed());
    // The services it started stop with it.
    let service_pid = after["pid"].as_u64().unwrap() as u32;
    assert!(
        proc_state(service_pid).is_none_or(|s| s == 'Z'),
        "the supervised service outlived the app"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", service_port)).is_err(),
        "the service's port is still open"
    );
    let left = live_processes_of(&app_bin);
    assert!(
        left.is_empty(),
        "sparklio-desk-app processes left: {left:?}"
    );
    let driver_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        driver_log.contains("shutdown complete"),
        "the core did not log a clean shutdown (see {})",
        log.display()
    );
    assert!(!driver_log.contains("panicked"), "{driver_log}");

    // The session's browser is gone; ending the driver's process group cleans up the rest.
    drop(s);
    drop(driver);
    eprintln!("total {:?}", started.elapsed());
}
