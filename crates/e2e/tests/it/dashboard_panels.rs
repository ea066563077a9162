//! Panels that must keep up with work started elsewhere or served under another name: a
//! model pull already running when the page loads, and the end-to-end check's image when
//! `server.public_url` is not the page's origin.

use crate::dashboard_browser::{browser, chromedriver};
use serde_json::json;
use sparklio_desk_e2e::relay::Relay;
use sparklio_testkit::app::start_app;
use sparklio_testkit::OllamaDouble;
use std::time::Duration;

/// A pull started before the page was opened (or before a reload) shows with its bar and
/// Cancel, and Cancel stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_pull_that_was_running_before_it_loaded() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let ollama = OllamaDouble::start_with(&["qwen2.5:7b"], &[]).await;
    ollama
        .set_fault(sparklio_testkit::Fault::StallMidStream { after_chunks: 3 }.on("/api/pull"))
        .await;
    let toml = format!(
        "generator_mode = \"live\"\n[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        ollama.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &toml, &[]).await;
    let base = format!("http://{}", app.addr);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/models/ollama/pull"))
        .json(&json!({"model": "phi3:mini"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();
    s.wait_for(
        "const p = document.querySelector('.pull.running[data-model=\"phi3:mini\"]'); return p && [...p.querySelectorAll('button')].some(b => b.textContent === 'Cancel')",
        Duration::from_secs(20),
    )
    .await
    .expect("the running pull shows with Cancel");
    s.execute(
        "[...document.querySelectorAll('.pull[data-model=\"phi3:mini\"] button')].find(b => b.textContent === 'Cancel').click()",
        vec![],
    )
    .await
    .unwrap();
    s.wait_for(
        "return !!document.querySelector('.pull.cancelled[data-model=\"phi3:mini\"]')",
        Duration::from_secs(20),
    )
    .await
    .expect("cancelled from the page");
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// The tray window and a browser on the bound address, with `public_url` naming the
/// machine otherwise (its Tailscale name): the check's image still loads (the page's CSP allows only
/// its own origin, so the page asks for the signed path there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_loads_the_check_image_when_public_url_is_another_origin() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    // The other name: `localhost` on another port, relayed to the core (the check itself
    // fetches its image through public_url, so the name must lead to the core).
    let other = Relay::start("127.0.0.1:9".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(
        &dir,
        &format!(
            "generator_mode = \"mock\"\n[server]\npublic_url = \"http://localhost:{}\"\n",
            other.addr.port()
        ),
        &[],
    )
    .await;
    other.retarget(app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("http://{}/", app.addr)).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up'",
        Duration::from_secs(20),
    )
    .await
    .expect("connected");
    s.execute("document.querySelector('#e2e-run').click()", vec![])
        .await
        .unwrap();
    let verdict = s
        .wait_for(
            "const v = document.querySelector('#e2e-verdict'); return (v.className === 'pass' || v.className === 'fail') && v.textContent",
            Duration::from_secs(60),
        )
        .await
        .expect("a verdict");
    assert!(verdict.as_str().unwrap().starts_with("PASS"), "{verdict}");
    let loaded = s
        .wait_for(
            "const i = document.querySelector('#e2e-image'); return i.complete && i.getAttribute('src') + ' ' + i.naturalWidth",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let loaded = loaded.as_str().unwrap();
    assert!(
        loaded.starts_with("/api/v1/media/files/") && !loaded.ends_with(" 0"),
        "the image: {loaded}"
    );
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}
