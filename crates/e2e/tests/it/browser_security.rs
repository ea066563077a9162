//! The browser rules in a real browser: a page from another origin (a second local
//! server) cannot restart a service, by fetch or by form; a page from an origin in
//! `server.cors_origins` can show a signed image and call the gateway.

use crate::dashboard_browser::{browser, chromedriver};
use serde_json::Value;
use sparklio_desk_e2e::{artifacts_dir, free_port};
use sparklio_testkit::app::start_app;
use sparklio_testkit::ServiceToml;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A second web server on 127.0.0.1 that answers every GET with `html`: the "other site".
async fn serve_page(html: String) -> (String, tokio::task::JoinHandle<()>) {
    serve_listener(TcpListener::bind("127.0.0.1:0").await.unwrap(), html)
}

async fn service(base: &str, name: &str) -> Value {
    let list: Value = reqwest::get(format!("{base}/api/v1/services"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

/// The service's recorded state changes, newest first.
async fn events_of(base: &str, name: &str) -> Value {
    let events: Value = reqwest::get(format!("{base}/api/v1/events?service={name}&limit=200"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    events["events"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_origin_cannot_restart_an_allowed_one_sees_images_and_the_gateway() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    // The allowed page's origin must be in the config before the Desk starts.
    let allowed_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed_listener.local_addr().unwrap().port();
    drop(allowed_listener);
    let dir = tempfile::tempdir().unwrap();
    // The kit's probes leave room for a loaded machine (Chromium starts meanwhile): a
    // spurious restart would read as a cross-site restart that went through.
    let svc = ServiceToml::new("svc", free_port());
    let app = start_app(
        &dir,
        &format!("[server]\ncors_origins = [\"http://127.0.0.1:{allowed_port}\"]\n{svc}"),
        &[],
    )
    .await;
    let base = format!("http://{}", app.addr);
    let mut before = service(&base, "svc").await;
    for _ in 0..100 {
        if before["state"] == "running" && before["pid"].is_u64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = service(&base, "svc").await;
    }
    assert_eq!(before["state"], "running", "{before}");

    // The attacker's page: a no-cors fetch (text/plain needs no preflight) and a form
    // post, both aimed at the restart route.
    let restart = format!("{base}/api/v1/services/svc/restart");
    let evil_html = format!(
        r#"<!doctype html><html><body>
<form id="f" method="POST" action="{restart}" target="sink"><input name="x" value="1"></form>
<iframe name="sink"></iframe>
<script>
window.tried = [];
fetch("{restart}", {{method: "POST", mode: "no-cors", headers: {{"content-type": "text/plain"}}, body: "{{}}"}})
  .then(() => window.tried.push("fetch sent"), e => window.tried.push("fetch failed: " + e));
fetch("{base}/api/v1/services/restart-all", {{method: "POST", mode: "no-cors", body: "{{}}"}})
  .then(() => window.tried.push("all sent"), e => window.tried.push("all failed: " + e));
document.getElementById("f").submit();
</script></body></html>"#
    );
    let (evil_origin, evil_server) = serve_page(evil_html).await;
    let events_before = events_of(&base, "svc").await;
    let profile = dir.path().join("profile");
    let s = browser(&driver_url, &profile).await;
    s.goto(&format!("{evil_origin}/")).await.unwrap();
    s.wait_for(
        "return window.tried && window.tried.length === 2",
        Duration::from_secs(10),
    )
    .await
    .expect("the attacker's requests went out");
    // Give a restart, had one been accepted, time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = service(&base, "svc").await;
    assert_eq!(after["pid"], before["pid"], "restarted: {after}");
    assert_eq!(after["restarts"], before["restarts"], "{after}");
    assert_eq!(
        events_of(&base, "svc").await,
        events_before,
        "the service changed state"
    );
    evil_server.abort();

    // The allowed origin: an image the Desk made, through its signed URL, and a call
    // to the gateway with fetch (CORS, JSON).
    let media: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/media/image/generate"))
        .json(&serde_json::json!({"prompt": "a red thermos on a desk", "task": "product_image", "media_type": "image", "options": {"width": 256, "height": 256}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image_url = media["outputs"][0]["url"]
        .as_str()
        .or_else(|| media["outputs"][0]["data"].as_str())
        .unwrap_or_else(|| panic!("no image URL in {media}"))
        .to_string();
    assert!(image_url.contains("sig="), "{image_url}");
    let good_html = format!(
        r#"<!doctype html><html><body>
<img id="img" src="{image_url}">
<pre id="out"></pre>
<script>
window.answer = null;
fetch("{base}/api/v1/llm/generate", {{method: "POST", headers: {{"content-type": "application/json"}},
  body: JSON.stringify({{role: "copywriter", task: "product_detail", mode: "json", payload: {{product_name: "보온 텀블러"}}}})}})
  .then(r => r.json().then(j => {{ window.answer = {{status: r.status, body: j}}; }}))
  .catch(e => {{ window.answer = {{error: String(e)}}; }});
</script></body></html>"#
    );
    let (good_origin, good_server) = serve_page_on(allowed_port, good_html).await;
    assert_eq!(good_origin, format!("http://127.0.0.1:{allowed_port}"));
    s.goto(&format!("{good_origin}/")).await.unwrap();
    let answer = s
        .wait_for("return window.answer", Duration::from_secs(15))
        .await
        .expect("the gateway answered the page");
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(
        answer["body"]["output"]["value"]["headline"].is_string(),
        "{answer}"
    );
    let width = s
        .wait_for(
            "const i = document.getElementById('img'); return i.complete && i.naturalWidth > 0 ? i.naturalWidth : null",
            Duration::from_secs(10),
        )
        .await
        .expect("the signed image shows");
    assert_eq!(width, 256);
    s.screenshot(&artifacts_dir().join("browser-security-allowed.png"))
        .await
        .unwrap();
    good_server.abort();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// [`serve_page`] on a given port (the one named in `cors_origins`).
async fn serve_page_on(port: u16, html: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    serve_listener(listener, html)
}

fn serve_listener(listener: TcpListener, html: String) -> (String, tokio::task::JoinHandle<()>) {
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        // Bounded: a test page is fetched a handful of times (page, favicon).
        for _ in 0..32 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = 0;
                while !buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") && seen < buf.len() {
                    match sock.read(&mut buf[seen..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen += n,
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    html.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(html.as_bytes()).await;
            });
        }
    });
    (origin, task)
}
