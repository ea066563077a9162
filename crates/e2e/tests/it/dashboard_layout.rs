//! The dashboard's layout in narrow windows, and what assistive technology is told.

use crate::dashboard_browser::{browser, chromedriver};
use sparklio_desk_e2e::artifacts_dir;
use sparklio_testkit::app::start_app;
use sparklio_testkit::{free_port, OllamaDouble, ServiceToml};
use std::time::Duration;

/// At 375 px (a phone) and 600 px (a narrowed tray window) every control is inside the
/// viewport, no card is wider than the page, and the page does not scroll sideways; the
/// seven-column model table scrolls inside its card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_fits_narrow_windows() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let ollama = OllamaDouble::start_with(&["qwen2.5:7b", "llama3.2:latest"], &[]).await;
    let toml = format!(
        "generator_mode = \"live\"\n[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n{}",
        ollama.base_url(),
        ServiceToml::new("comfyui", free_port()).default_backoff()
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &toml, &[]).await;
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("http://{}/", app.addr)).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up' && !!document.querySelector('article.service') && !!document.querySelector('#models table')",
        Duration::from_secs(20),
    )
    .await
    .expect("the page is loaded");
    for width in [375, 600] {
        s.set_window_size(width, 900).await.unwrap();
        let viewport = s
            .wait_for(
                &format!("return document.documentElement.clientWidth <= {width} && document.documentElement.clientWidth"),
                Duration::from_secs(10),
            )
            .await
            .expect("the window narrows");
        // Controls inside a scrolling table are reached by scrolling it, not the page.
        let problems = s
            .execute(
                "const vw = document.documentElement.clientWidth; const out = [];\
                 for (const e of document.querySelectorAll('button, select, input')) {\
                   if (!e.getClientRects().length || e.closest('dialog, .table-scroll')) continue;\
                   const r = e.getBoundingClientRect();\
                   if (r.left < 0 || r.right > vw + 0.5) out.push(`control ${e.id || e.textContent} at ${Math.round(r.left)}..${Math.round(r.right)}`);\
                 }\
                 for (const c of document.querySelectorAll('.card')) {\
                   const r = c.getBoundingClientRect();\
                   if (r.right > vw + 0.5 || c.scrollWidth > c.clientWidth + 1) out.push(`card ${c.id} right ${Math.round(r.right)}, scrollWidth ${c.scrollWidth} > ${c.clientWidth}`);\
                 }\
                 if (document.documentElement.scrollWidth > vw) out.push(`page scrollWidth ${document.documentElement.scrollWidth} > ${vw}`);\
                 return out;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            problems,
            serde_json::json!([]),
            "at {width} px (viewport {viewport})"
        );
        s.screenshot(&artifacts_dir().join(format!("dashboard-{width}px.png")))
            .await
            .unwrap();
    }
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// Repeated buttons name their service for a screen reader ("Restart comfyui", not a
/// fourth "Restart"); the log pane is not a live region; an external service (someone
/// else runs it) offers no Start/Stop/Restart the core would refuse, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_names_repeated_buttons_and_offers_external_services_no_controls() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let external = OllamaDouble::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[supervisor]\ndocker_host = \"unix://{sock}\"\nunavailable_recheck_ms = 200\n\
         {comfyui}\n\
         [[services]]\nname = \"ollama-ext\"\nkind = \"external\"\nhealth = {{ url = \"{url}/api/version\", interval_ms = 200 }}\n\
         [[services]]\nname = \"box\"\nkind = \"docker\"\ncontainer = \"box\"\n",
        sock = dir.path().join("no-engine.sock").display(),
        comfyui = ServiceToml::new("comfyui", port).default_backoff(),
        url = external.base_url(),
    );
    let app = start_app(&dir, &toml, &[]).await;
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("http://{}/", app.addr)).await.unwrap();
    s.wait_for(
        "return document.querySelector('article.service[data-name=\"ollama-ext\"]')?.dataset.state === 'running'",
        Duration::from_secs(30),
    )
    .await
    .expect("the external service is watched");

    let restart = s
        .find("article.service[data-name=comfyui] button[data-action=restart]")
        .await
        .unwrap();
    assert_eq!(s.computed_label(&restart).await.unwrap(), "Restart comfyui");
    let logs = s
        .find("article.service[data-name=box] .actions button:last-child")
        .await
        .unwrap();
    assert_eq!(s.computed_label(&logs).await.unwrap(), "Logs of box");
    // The Docker service's "unavailable" event carries mute buttons naming it.
    let mute = s
        .wait_for(
            "return !!document.querySelector('#events li button.mute[data-for=\"1h\"]')",
            Duration::from_secs(30),
        )
        .await;
    assert!(mute.is_ok(), "a mute button: {mute:?}");
    let mute = s
        .find("#events li button.mute[data-for=\"1h\"]")
        .await
        .unwrap();
    let label = s.computed_label(&mute).await.unwrap();
    assert!(
        label.starts_with("Mute ") && label.contains("for 1 h"),
        "{label}"
    );
    let service = s
        .execute(
            "return document.querySelector('#events li button.mute[data-for=\"1h\"]').closest('li').querySelector('strong').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        label.contains(service.as_str().unwrap()),
        "{label} names {service}"
    );

    let log_pane = s
        .execute(
            "const p = document.querySelector('#log-lines'); return (p.getAttribute('aria-live') || '') + '|' + (p.getAttribute('role') || '')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(log_pane, "|", "the log pane must not announce every line");

    let ext = s
        .execute(
            "const c = document.querySelector('article.service[data-name=\"ollama-ext\"]'); return c.querySelectorAll('button[data-action]').length + '|' + c.querySelector('.watched')?.textContent",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ext, "0|watched only: started outside Sparklio Desk");
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}
