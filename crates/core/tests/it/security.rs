//! Each attack found by probing the Desk as an attacker would, as a test: cross-site
//! requests, DNS rebinding, slowloris, oversized bodies, memory amplification through
//! big images, unbounded metric labels and log lines, a multibyte file id.

use serde_json::{json, Value};
use sparklio_testkit::{free_port, TestApp};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-key-0123456789abcdef";
const GATEWAY: &str = "gateway-key-0123456789abcd";

/// Loopback trusted only as 127.0.0.1, so 127.0.0.5 is an outside client; keys set.
fn locked_down(extra: &str) -> String {
    format!(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"{GATEWAY}\"]\nadmin_keys = [\"{ADMIN}\"]\n{extra}"
    )
}

/// One raw HTTP/1.1 exchange; returns the status line and the whole answer.
async fn raw(app: &TestApp, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    (text.lines().next().unwrap_or("").to_string(), text)
}

fn host(app: &TestApp) -> String {
    app.addr.to_string()
}

#[tokio::test]
async fn cross_site_posts_are_refused_same_origin_and_keyed_ones_pass() {
    let app = TestApp::start("").await;
    let h = host(&app);
    // A page elsewhere posting text/plain or a form (no preflight needed): refused.
    for (ct, body) in [
        ("text/plain", r#"{"paused": true}"#),
        ("application/x-www-form-urlencoded", "paused=true"),
        ("multipart/form-data; boundary=x", "--x--"),
    ] {
        let (status, text) = raw(
            &app,
            &format!(
                "POST /api/v1/runtime HTTP/1.1\r\nHost: {h}\r\nOrigin: http://evil.example\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert!(status.contains(" 403 "), "{ct}: {text}");
        assert!(text.contains("CROSS_SITE_REFUSED"), "{text}");
    }
    for path in [
        "/api/v1/services/restart-all",
        "/api/v1/flows/product-detail",
        "/api/v1/llm/generate",
    ] {
        let (status, text) = raw(
            &app,
            &format!("POST {path} HTTP/1.1\r\nHost: {h}\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(status.contains(" 403 "), "{path}: {text}");
    }
    // Nothing was changed by the refused requests.
    let (_, rt) = app.get_json("/api/v1/runtime").await;
    assert_eq!(rt["paused"], false);
    // The dashboard itself (same origin, JSON) and tools without Origin pass.
    let (status, text) = raw(
        &app,
        &format!(
            "POST /api/v1/runtime HTTP/1.1\r\nHost: {h}\r\nOrigin: http://{h}\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{{\"paused\": false}}"
        ),
    )
    .await;
    assert!(status.contains(" 200 "), "{text}");
    let r = app
        .client
        .post(app.url("/api/v1/runtime"))
        .header("content-type", "text/plain")
        .body(r#"{"paused": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "curl-like clients are not browsers");
    // A key is judged by the key, whatever the Origin.
    let app2 = TestApp::start(&locked_down("")).await;
    let r = TestApp::client_from("127.0.0.5")
        .post(app2.url("/api/v1/runtime"))
        .header("origin", "http://evil.example")
        .bearer_auth(ADMIN)
        .json(&json!({"paused": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
    app2.stop().await;
}

#[tokio::test]
async fn a_rebinding_host_is_refused_configured_names_and_keys_pass() {
    let app = TestApp::start("[server]\nallowed_hosts = [\"gpu-desktop.tailnet.ts.net\"]\n").await;
    for path in [
        "/api/v1/config",
        "/api/v1/services",
        "/api/v1/usage",
        "/api/v1/llm/health",
    ] {
        let r = app
            .client
            .get(app.url(path))
            .header("host", format!("evil.example:{}", app.addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 421, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "HOST_NOT_ALLOWED");
    }
    let r = app
        .client
        .get(app.url("/api/v1/config"))
        .header("host", "gpu-desktop.tailnet.ts.net:11500")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn dripped_headers_and_idle_connections_are_closed_after_the_timeout() {
    let app = TestApp::start("[server.limits]\nheader_timeout_s = 1\n").await;
    // Idle: connect, send nothing.
    let started = Instant::now();
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("the server closes an idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let idle_closed = started.elapsed();
    // Dripped: a byte of the head every 300 ms, never the end.
    let started = Instant::now();
    let mut drip = TcpStream::connect(app.addr).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut closed = false;
    for byte in head
        .iter()
        .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
    {
        if drip.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    if !closed {
        // The close may only show on a read.
        let n = tokio::time::timeout(Duration::from_secs(5), drip.read(&mut buf))
            .await
            .map_or(usize::MAX, |r| r.unwrap_or(0));
        closed = n != usize::MAX && !String::from_utf8_lossy(&buf[..n]).contains("200 OK");
    }
    assert!(closed, "a dripping client was kept open");
    assert!(
        idle_closed < Duration::from_secs(5),
        "idle connection lived {idle_closed:?} with a 1 s timeout"
    );
    // A normal request still works.
    assert_eq!(app.get_json("/healthz").await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let app = TestApp::start("").await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/v1/llm/generate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n",
            host(&app)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Not a byte of the 100 MB is sent: the answer must come anyway.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    app.stop().await;
}

/// A non-loopback address of this machine, if it has one.
fn lan_address() -> Option<std::net::IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Any routable address picks the interface; nothing is sent.
    sock.connect("192.0.2.200:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn the_connection_cap_keeps_a_reserve_for_loopback() {
    let Some(lan) = lan_address() else {
        eprintln!("SKIPPED: this machine has no non-loopback address to play the LAN client");
        return;
    };
    let port = free_port();
    let app = TestApp::start_with(
        &format!(
            "[server]\nbind = [\"127.0.0.1:{port}\", \"{lan}:{port}\"]\napi_keys = [\"{GATEWAY}\"]\n\
             [server.limits]\nmax_connections = 10\nloopback_reserve = 3\n"
        ),
        &[("SPARKLIO_DESK_BIND", &format!("127.0.0.1:{port},{lan}:{port}"))],
        Default::default(),
    )
    .await;
    // A LAN client holds every shared slot with half-open connections.
    let mut held = Vec::new();
    for _ in 0..7 {
        let s = TcpStream::connect((lan, port)).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next LAN connection is closed at once…
    let mut extra = TcpStream::connect((lan, port)).await.unwrap();
    let mut buf = [0u8; 64];
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "a LAN client beyond the cap got an answer");
    // …while the owner's dashboard on loopback still gets in.
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    let (_, metrics) = raw(
        &app,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            host(&app)
        ),
    )
    .await;
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("desk_connections_refused_total "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(refused >= 1, "{metrics}");
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn big_mock_images_are_bounded_and_stop_on_timeout() {
    let app = TestApp::start(
        "[media]\nmax_concurrent = 2\nmax_queue = 4\n\
         [media.providers.mock]\nkind = \"mock\"\ntimeout_s = 1\n",
    )
    .await;
    let body = json!({"kind": "product_shot", "prompt": "huge",
        "options": {"width": 2048, "height": 2048, "count": 4, "seed": 1}});
    let mut calls = Vec::new();
    for _ in 0..32 {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/api/v1/media/image/generate"),
            body.clone(),
        );
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (
                status,
                v["error"]["code"].as_str().unwrap_or("").to_string(),
                retry,
                started.elapsed(),
            )
        }));
    }
    let mut shed = 0;
    let mut timed_out = 0;
    for c in calls {
        let (status, code, retry, took) = c.await.unwrap();
        match (status, code.as_str()) {
            (503, "OVERLOADED") => {
                assert!(retry, "OVERLOADED carries Retry-After");
                assert!(took < Duration::from_secs(5), "shed at once, took {took:?}");
                shed += 1;
            }
            (504, "MEDIA_TIMEOUT") => timed_out += 1,
            (200, _) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // At most 2 drawing + 4 waiting were admitted; the rest was shed.
    assert!(shed >= 32 - 6, "shed {shed}");
    assert!(timed_out >= 1, "the slow drawings timed out");
    // The drawing stops with the timeout: nothing runs shortly after the last answer.
    let mut work = Value::Null;
    for _ in 0..100 {
        let (_, v) = app.get_json("/api/v1/storage").await;
        work = v["work"]["media"].clone();
        if work["running"] == 0 && work["waiting"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(work["running"], 0, "{work}");
    assert!(work["peak_running"].as_u64().unwrap() <= 2, "{work}");
    assert!(work["stopped"].as_u64().unwrap() >= 1, "{work}");
    assert_eq!(work["rejected"].as_u64().unwrap(), shed, "{work}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_over_the_pixel_budget_is_refused() {
    let app = TestApp::start("").await;
    let (status, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"width": 4096, "height": 4096, "count": 2}}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_pixels"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn thousands_of_task_names_leave_metrics_small() {
    let app = TestApp::start("").await;
    let before = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/llm/generate"));
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let body = json!({"role": "brief", "task": format!("made_up_task_{worker}_{i}"),
                    "mode": "text", "payload": {"x": 1}, "options": {"model": format!("m{worker}-{i}")}});
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !after.contains("made_up_task_"),
        "request values became labels"
    );
    assert!(after.contains(r#"task="other""#));
    // 2,000 distinct names added a handful of series, not thousands.
    assert!(
        after.len() < before.len() + 8 * 1024,
        "metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_huge_line_without_newline_stays_within_the_log_caps() {
    let port = free_port();
    let toml = format!(
        "[supervisor]\nlog_file_max_bytes = 1048576\nlog_files_kept = 2\nlog_line_max_bytes = 8192\nlog_memory_max_bytes = 65536\n\
         [[services]]\nname = \"blob\"\nkind = \"process\"\ncommand = {cmd}\nargs = [\"--port\", \"{port}\"]\nport = {port}\n\
         health = {{ url = \"http://127.0.0.1:{port}/health\", interval_ms = 200, failures = 100 }}\n",
        cmd = serde_json::to_string(&sparklio_testkit::test_service().display().to_string()).unwrap()
    );
    // The service prints from its request handler and answers no probe meanwhile: on a
    // loaded machine three missed probes restarted it mid-print (a dropped request).
    let app = TestApp::start(&toml).await;
    for _ in 0..200 {
        if app.get_json("/api/v1/services/blob").await.1["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app
        .client
        .post(format!(
            "http://127.0.0.1:{port}/print-raw/{}",
            100 * 1024 * 1024
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The pipe is read in bounded pieces; the file rotates at its cap.
    let log = app.data_dir().join("logs").join("blob.log");
    let mut written = 0u64;
    for _ in 0..200 {
        written = ["", ".1", ".2"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", log.display())).ok())
            .map(|m| m.len())
            .sum();
        if written >= 2 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written > 0);
    for suffix in ["", ".1", ".2"] {
        if let Ok(m) = std::fs::metadata(format!("{}{suffix}", log.display())) {
            assert!(m.len() <= 1_048_576, "{suffix}: {} bytes", m.len());
        }
    }
    let (_, logs) = app.get_json("/api/v1/services/blob/logs?tail=10000").await;
    let lines = logs["lines"].as_array().unwrap();
    let kept: usize = lines
        .iter()
        .map(|l| l["line"].as_str().unwrap_or("").len())
        .sum();
    assert!(
        kept <= 65536 + 8192,
        "{kept} bytes of output held in memory"
    );
    assert!(lines
        .iter()
        .all(|l| l["line"].as_str().unwrap_or("").len() <= 8192));
    app.stop().await;
}

#[tokio::test]
async fn a_multibyte_file_id_is_a_json_404() {
    let app = TestApp::start("").await;
    for id in [
        "img_2025111%C3%A9_0a1b2c3d4e5",
        "img_%ED%95%9C%EA%B5%AD%EC%96%B4%ED%95%9C",
        "%F0%9F%98%80",
    ] {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/media/files/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "NOT_FOUND");
    }
    app.stop().await;
}

#[tokio::test]
async fn signed_image_urls_open_without_a_key_and_only_with_a_valid_signature() {
    let app = TestApp::start(&locked_down("")).await;
    let lan = TestApp::client_from("127.0.0.5");
    let r = lan
        .post(app.url("/api/v1/media/image/generate"))
        .bearer_auth(GATEWAY)
        .json(&json!({"prompt": "shake", "options": {"width": 64, "height": 64, "seed": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let url = v["images"][0]["url"].as_str().unwrap().to_string();
    assert!(url.contains("?exp=") && url.contains("&sig="), "{url}");
    assert_eq!(v["outputs"][0]["data"], v["images"][0]["url"]);
    // An <img src> from another machine: no key, signed URL → the image.
    let r = lan.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    // Tampered or missing signature: back to needing a key.
    // (A different last digit: the same one would be no tampering at all.)
    let other = if url.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{other}", &url[..url.len() - 1]);
    for u in [tampered, url.split('?').next().unwrap().to_string()] {
        let r = lan.get(&u).send().await.unwrap();
        assert_eq!(r.status(), 401, "{u}");
    }
    let r = lan
        .get(url.split('?').next().unwrap())
        .bearer_auth(GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn cors_is_answered_for_configured_origins_only() {
    let app = TestApp::start("[server]\ncors_origins = [\"http://100.64.0.9:3000\"]\n").await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/llm/generate"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let ok = preflight("http://100.64.0.9:3000").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://100.64.0.9:3000"
    );
    assert!(ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let no = preflight("http://evil.example").await.unwrap();
    assert_eq!(no.status(), 403);
    assert!(no.headers().get("access-control-allow-origin").is_none());
    // The allowed origin's real request passes and can read the answer.
    let r = app
        .client
        .post(app.url("/api/v1/llm/generate"))
        .header("origin", "http://100.64.0.9:3000")
        .json(&json!({"role": "brief", "task": "marketing_brief", "payload": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://100.64.0.9:3000"
    );
    app.stop().await;
}

#[tokio::test]
async fn named_key_limits_answer_429_with_retry_after() {
    let app = TestApp::start(&locked_down(
        "[[server.keys]]\nname = \"script\"\nkey = \"script-key-0123456789abcd\"\nrate_per_min = 2\n",
    ))
    .await;
    let lan = TestApp::client_from("127.0.0.5");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = lan
            .get(app.url("/api/v1/status"))
            .bearer_auth("script-key-0123456789abcd")
            .send()
            .await
            .unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").cloned()));
    }
    assert_eq!(statuses[0].0, 200);
    assert_eq!(statuses[1].0, 200);
    assert_eq!(statuses[2].0, 429);
    assert!(statuses[2].1.is_some());
    // Another key is not affected.
    let r = lan
        .get(app.url("/api/v1/status"))
        .bearer_auth(GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_answer_forbids_framing_and_sniffing() {
    let app = TestApp::start("").await;
    for path in ["/", "/api/v1/status", "/nope"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    app.stop().await;
}

#[tokio::test]
async fn several_bind_addresses_are_served() {
    let (a, b) = (free_port(), free_port());
    let binds = format!("127.0.0.1:{a},127.0.0.2:{b}");
    let app = TestApp::start_with("", &[("SPARKLIO_DESK_BIND", &binds)], Default::default()).await;
    for url in [
        format!("http://127.0.0.1:{a}/healthz"),
        format!("http://127.0.0.2:{b}/healthz"),
    ] {
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    assert_eq!(app.app.as_ref().unwrap().state.bound_all.len(), 2);
    app.stop().await;
}
