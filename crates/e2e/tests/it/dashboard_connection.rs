//! The dashboard when the connection to the core goes wrong in ways a closed socket does
//! not show: a core that hangs (or a link that goes silent), and a core that restarts
//! while a log tail and an end-to-end check are open. A relay between the browser and the
//! core stands in for the network (`sparklio_desk_e2e::relay`).

use crate::dashboard_browser::{browser, chromedriver};
use sparklio_desk_e2e::artifacts_dir;
use sparklio_desk_e2e::relay::Relay;
use sparklio_testkit::app::start_app;
use sparklio_testkit::OllamaDouble;
use std::time::Duration;

/// A supervised process that prints a numbered line every 200 ms.
const LOOPER: &str = r#"
[[services]]
name = "looper"
kind = "process"
command = "sh"
args = ["-c", "i=0; while true; do i=$((i+1)); echo \"line $i\"; sleep 0.2; done"]
"#;

/// The relay freezes (no byte either way, sockets open): within three snapshot intervals
/// the page says the core is unreachable, shows the health and the services as unknown
/// instead of green, and drops the log tail; thawed, it reconnects and tails again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_notices_a_silent_core_and_marks_what_it_shows_stale() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, LOOPER, &[]).await;
    let relay = Relay::start(app.addr).await.unwrap();
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("http://{}/", relay.addr)).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up' && document.querySelector('article.service[data-name=looper]')?.dataset.state === 'running'",
        Duration::from_secs(20),
    )
    .await
    .expect("connected, the looper running");
    s.execute("document.querySelector('article.service[data-name=looper] .actions button:last-child').click()", vec![])
        .await
        .unwrap();
    s.wait_for(
        "return document.querySelector('#log-lines').textContent.includes('line ')",
        Duration::from_secs(20),
    )
    .await
    .expect("the log tail shows lines");

    relay.freeze();
    let frozen_at = std::time::Instant::now();
    let banner = s
        .wait_for(
            "const b = document.querySelector('#banner'); return document.querySelector('#conn').dataset.state === 'down' && !b.hidden && b.textContent",
            Duration::from_secs(15),
        )
        .await
        .expect("a silent core is noticed");
    assert!(banner.as_str().unwrap().contains("unreachable"), "{banner}");
    assert!(
        frozen_at.elapsed() >= Duration::from_secs(4),
        "noticed after {:?}: sooner than the snapshot interval allows",
        frozen_at.elapsed()
    );
    let shown = s
        .execute(
            "const h = document.querySelector('#health'); const c = document.querySelector('article.service[data-name=looper]');\
             return [h.dataset.level, h.textContent, c.querySelector('.state').textContent, c.dataset.level, document.body.dataset.stale || ''].join('|')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, "unknown|health unknown|unknown|unknown|true");
    s.wait_for(
        "return document.querySelector('#log-lines').textContent.includes('[log stream ended: core unreachable')",
        Duration::from_secs(10),
    )
    .await
    .expect("the log pane says its tail was dropped");
    s.screenshot(&artifacts_dir().join("dashboard-silent-core.png"))
        .await
        .unwrap();

    relay.thaw();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up' && document.querySelector('article.service[data-name=looper] .state').textContent === 'running' && !document.body.dataset.stale",
        Duration::from_secs(30),
    )
    .await
    .expect("reconnected and current again");
    // The tail resumes: lines after the marker.
    let last = s
        .wait_for(
            "const t = document.querySelector('#log-lines').textContent; const i = t.lastIndexOf('[log stream ended'); return i >= 0 && /line \\d+/.test(t.slice(i + 20)) && t.slice(i)",
            Duration::from_secs(30),
        )
        .await
        .expect("the tail resumes after reconnecting");
    assert!(!last.as_str().unwrap().is_empty());
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// The core restarts (stopped, then started again at the address the page uses) while the
/// log viewer is open and an end-to-end check is running: the pane says the tail ended
/// and shows the new process's lines after it; the check's verdict stops saying
/// "running" and says it was interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_reattaches_the_log_tail_and_rereads_the_check_after_a_core_restart() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    // The check's first LLM call never gets an answer, so it is running when the core stops.
    let ollama = OllamaDouble::start_with(&["qwen2.5:7b"], &[]).await;
    ollama
        .set_fault(sparklio_testkit::Fault::HangBeforeHeaders.on("/api/chat"))
        .await;
    let toml = format!(
        "generator_mode = \"live\"\n[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n{LOOPER}",
        ollama.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let first = start_app(&dir, &toml, &[]).await;
    let relay = Relay::start(first.addr).await.unwrap();
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("http://{}/", relay.addr)).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up' && !!document.querySelector('article.service[data-name=looper]')",
        Duration::from_secs(20),
    )
    .await
    .expect("connected");
    s.execute("document.querySelector('article.service[data-name=looper] .actions button:last-child').click(); document.querySelector('#e2e-run').click();", vec![])
        .await
        .unwrap();
    s.wait_for(
        "return document.querySelector('#log-lines').textContent.includes('line ') && document.querySelector('#e2e-verdict').textContent.startsWith('running')",
        Duration::from_secs(20),
    )
    .await
    .expect("the tail shows lines and the check runs");

    first.shutdown().await.unwrap();
    let second = start_app(&dir, &toml, &[]).await;
    relay.retarget(second.addr);

    s.wait_for(
        "return document.querySelector('#log-lines').textContent.includes('[log stream ended')",
        Duration::from_secs(30),
    )
    .await
    .expect("the pane says the tail ended");
    s.wait_for(
        "const t = document.querySelector('#log-lines').textContent; const i = t.lastIndexOf('[log stream ended'); return i >= 0 && /line \\d+/.test(t.slice(i + 20))",
        Duration::from_secs(40),
    )
    .await
    .expect("the new process's lines follow the marker");
    let verdict = s
        .wait_for(
            "const v = document.querySelector('#e2e-verdict').textContent; return v.includes('the core restarted') && !document.querySelector('#e2e-run').disabled && v",
            Duration::from_secs(40),
        )
        .await
        .expect("the verdict no longer says running");
    assert!(
        verdict.as_str().unwrap().starts_with("Check interrupted"),
        "{verdict}"
    );
    s.screenshot(&artifacts_dir().join("dashboard-core-restarted.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    second.shutdown().await.unwrap();
}
