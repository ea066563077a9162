//! The dashboard in a real browser: headless Chromium (Debian's package) driven through
//! chromedriver, against a real `sparklio-desk` core on 127.0.0.1.

use serde_json::{json, Value};
use sparklio_core::config::{self, ConfigInput};
use sparklio_desk_e2e::{artifacts_dir, free_port, start_driver, Guard, Session};
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
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
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
        format!(
            "[storage]\ndata_dir = {:?}\n{toml}",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let loaded = config::load(&ConfigInput {
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
