//! The dashboard in a real browser: headless Chromium (Debian's package) driven through
//! chromedriver, against a real `sparklio-desk` core on 127.0.0.1.

#[path = "../../core/tests/support/ollama_double.rs"]
mod ollama_double;

use ollama_double::OllamaDouble;
use serde_json::{json, Value};
use sparklio_core::config::ConfigInput;
use sparklio_desk_e2e::{artifacts_dir, free_port, start_driver, test_service, Guard, Session};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromedriver, or None (with a note) when Chromium is not installed outside CI.
fn chromedriver() -> Option<(Guard, String)> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver (see .ci/run)"
        );
        eprintln!("skipping: {CHROMEDRIVER} not installed (bash scripts/test.sh installs it)");
        return None;
    }
    let port = free_port();
    let guard =
        start_driver(CHROMEDRIVER, &[format!("--port={port}")], port).expect("chromedriver starts");
    Some((guard, format!("http://127.0.0.1:{port}")))
}

async fn browser(driver: &str, profile: &std::path::Path) -> Session {
    Session::new(
        driver,
        json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,2300",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }),
    )
    .await
    .expect("browser session")
}

pub async fn start_app(dir: &tempfile::TempDir, toml: &str) -> sparklio_core::RunningApp {
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        // Top-level keys of `toml` must come before any table.
        format!(
            "{toml}\n[storage]\ndata_dir = {:?}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let loaded = sparklio_core::load_config(&ConfigInput {
        config_flag: Some(path),
        env: [("SPARKLIO_DESK_BIND".to_string(), "127.0.0.1:0".to_string())].into(),
        dotenv_path: None,
        use_os_config_dir: false,
    })
    .expect("config");
    sparklio_core::start(loaded, Default::default())
        .await
        .expect("app starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_status_and_switches_mode() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, "").await;
    let base = format!("http://{}", app.addr);
    let profile = dir.path().join("profile");
    let s = browser(&driver_url, &profile).await;

    s.goto(&format!("{base}/")).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up'",
        Duration::from_secs(20),
    )
    .await
    .expect("dashboard connects to the core");
    let about: Value = s
        .wait_for(
            "return document.querySelector('#status-list').textContent",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        about.as_str().unwrap().contains(env!("CARGO_PKG_VERSION")),
        "{about}"
    );
    let mode = s
        .execute(
            "return document.querySelector('#mode-select').value",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(mode, "mock");

    // Switch to live through the page; the core must agree.
    s.execute(
        "const sel = document.querySelector('#mode-select'); sel.value = 'live'; sel.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let mut live = false;
    for _ in 0..50 {
        let st: Value = client
            .get(format!("{base}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if st["generator_mode"] == "live" {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "the mode switch did not reach the core");

    s.screenshot(&artifacts_dir().join("dashboard-basic.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_says_when_the_core_is_unreachable() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, "").await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up'",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    app.shutdown().await.unwrap();
    let banner = s
        .wait_for(
            "const b = document.querySelector('#banner'); return !b.hidden && b.textContent",
            Duration::from_secs(20),
        )
        .await
        .expect("banner appears");
    assert!(banner.as_str().unwrap().contains("unreachable"), "{banner}");
    assert_eq!(
        s.execute(
            "return document.querySelector('#conn').dataset.state",
            vec![]
        )
        .await
        .unwrap(),
        "down"
    );
    s.screenshot(&artifacts_dir().join("dashboard-unreachable.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
}

/// The whole page against real parts: a supervised process (the test service), a Docker
/// service whose engine is not running, an Ollama double lacking two routed models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_services_models_events_and_restarts_a_service() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let ollama =
        OllamaDouble::start_with(&["qwen2.5:7b", "llama3.2:latest"], &["qwen2.5:7b"]).await;
    let port = free_port();
    let dead = free_port();
    let toml = format!(
        r#"
generator_mode = "mock"

[llm.providers.ollama]
kind = "ollama"
base_url = "{ollama}"

[supervisor]
docker_host = "tcp://127.0.0.1:{dead}"

[[services]]
name = "comfyui"
kind = "process"
command = {cmd}
args = ["--port", "{port}"]
port = {port}
provides = ["comfyui"]
health = {{ url = "http://127.0.0.1:{port}/health", interval_ms = 200, timeout_ms = 300, failures = 3 }}
stop_timeout_ms = 1500

[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
"#,
        ollama = ollama.base_url(),
        cmd = serde_json::to_string(&test_service().display().to_string()).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &toml).await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();

    // Service cards: the process comes up, Docker's absence is said plainly.
    s.wait_for(
        "return document.querySelector('article.service[data-name=comfyui]')?.dataset.state === 'running'",
        Duration::from_secs(30),
    )
    .await
    .expect("comfyui card shows running");
    let docker = s
        .wait_for(
            "const c = document.querySelector('article.service[data-name=\"ollama-sparklio\"]'); return c && c.dataset.state === 'unavailable' && c.textContent",
            Duration::from_secs(30),
        )
        .await
        .expect("docker card");
    assert!(
        docker.as_str().unwrap().contains("Docker is not running"),
        "{docker}"
    );

    // Models: the installed ones, and the routed ones that are missing, highlighted.
    let models = s
        .wait_for("return document.querySelector('#models table') && document.querySelector('#models').textContent", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(models.as_str().unwrap().contains("qwen2.5:7b"), "{models}");
    let missing = s
        .wait_for(
            "return [...document.querySelectorAll('#models tr.missing')].map(r => r.textContent).join('|')",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        missing.as_str().unwrap().contains("qwen2.5:14b")
            && missing.as_str().unwrap().contains("mistral-small"),
        "{missing}"
    );

    // Events render (the service start-up is in the timeline).
    s.wait_for(
        "return document.querySelectorAll('#events li').length > 0",
        Duration::from_secs(20),
    )
    .await
    .expect("events render");

    // Click Restart on the service card; the core restarts it and the page shows it.
    let pid_before = service(&base, "comfyui").await["pid"].clone();
    let button = s
        .find("article.service[data-name=comfyui] button[data-action=restart]")
        .await
        .unwrap();
    s.click(&button).await.unwrap();
    let restart_event = s
        .wait_for(
            "return [...document.querySelectorAll('#events li')].map(l => l.textContent).find(t => t.includes('comfyui') && t.includes('restart'))",
            Duration::from_secs(20),
        )
        .await
        .expect("the restart shows in the event list");
    // Who asked is in the event log.
    assert!(
        restart_event.as_str().unwrap().contains("restarted by"),
        "{restart_event}"
    );
    s.wait_for(
        "return document.querySelector('article.service[data-name=comfyui]')?.dataset.state === 'running'",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let after = service(&base, "comfyui").await;
    assert_eq!(after["state"], "running");
    assert_ne!(after["pid"], pid_before, "a new process after the restart");

    // The end-to-end check from its button.
    let run = s.find("#e2e-run").await.unwrap();
    s.click(&run).await.unwrap();
    let verdict = s
        .wait_for(
            "const v = document.querySelector('#e2e-verdict'); return (v.className === 'pass' || v.className === 'fail') && v.className + ': ' + v.textContent",
            Duration::from_secs(60),
        )
        .await
        .expect("the check passes");
    assert!(
        verdict.as_str().unwrap().starts_with("pass: PASS"),
        "{verdict}"
    );
    s.wait_for(
        "return document.querySelector('#e2e-image').naturalWidth",
        Duration::from_secs(20),
    )
    .await
    .expect("the image loads");

    s.screenshot(&artifacts_dir().join("dashboard.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

async fn service(base: &str, name: &str) -> Value {
    reqwest::get(format!("{base}/api/v1/services/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
