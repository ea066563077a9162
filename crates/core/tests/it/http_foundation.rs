//! The server's foundations over real HTTP: access control, the standard error body,
//! request ids, body limits, status.

use serde_json::{json, Value};
use sparklio_testkit::TestApp;

const GATEWAY_KEY: &str = "gateway-key-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef00";

fn locked_down() -> String {
    format!(
        r#"
[server]
trusted_networks = ["127.0.0.1/32"]
api_keys = ["{GATEWAY_KEY}"]
admin_keys = ["{ADMIN_KEY}"]
max_body_bytes = 2048
"#
    )
}

fn assert_standard_error(body: &Value, code: &str, request_id: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["request_id"], request_id, "{body}");
    assert_eq!(body["detail"]["error"], code.to_ascii_lowercase(), "{body}");
}

#[tokio::test]
async fn healthz_and_status_on_loopback() {
    let app = TestApp::start("").await;
    let (s, body) = app.get_json("/healthz").await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));

    let (s, st) = app.get_json("/api/v1/status").await;
    assert_eq!(s, 200);
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["generator_mode"], "mock");
    assert_eq!(st["bind"], app.addr.to_string());
    assert!(st["uptime_s"].is_u64());
    let llm: Vec<&str> = st["providers"]["llm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(llm.contains(&"ollama") && llm.contains(&"mock"), "{st}");
    assert!(st["services"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn dashboard_is_served_from_the_binary() {
    let app = TestApp::start("").await;
    let r = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("Sparklio Desk"));
    let r = app.client.get(app.url("/ui/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let (s, body) = app.get_json("/ui/../../Cargo.toml").await;
    assert_eq!(s, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_created() {
    let app = TestApp::start("").await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 32, "{made}");
    // An id with control characters or spaces is replaced, not reflected.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b");
    app.stop().await;
}

#[tokio::test]
async fn unknown_route_bad_json_wrong_method_and_big_body_use_the_standard_error() {
    let app = TestApp::start(&locked_down()).await;
    let r = app
        .client
        .get(app.url("/api/v1/nope"))
        .header("x-request-id", "rid-404")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "rid-404");
    assert_standard_error(&r.json().await.unwrap(), "NOT_FOUND", "rid-404");

    let r = app
        .client
        .post(app.url("/api/v1/runtime"))
        .header("x-request-id", "rid-400")
        .header("content-type", "application/json")
        .body("{\"generator_mode\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_standard_error(&r.json().await.unwrap(), "VALIDATION_ERROR", "rid-400");

    // A wrong type names the field.
    let r = app
        .client
        .post(app.url("/api/v1/runtime"))
        .header("x-request-id", "rid-field")
        .json(&json!({"generator_mode": "turbo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_standard_error(&body, "VALIDATION_ERROR", "rid-field");
    assert_eq!(body["error"]["field"], "generator_mode", "{body}");

    let r = app
        .client
        .delete(app.url("/api/v1/runtime"))
        .header("x-request-id", "rid-405")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_standard_error(&r.json().await.unwrap(), "METHOD_NOT_ALLOWED", "rid-405");

    let big = json!({"generator_mode": "mock", "padding": "x".repeat(4096)});
    let r = app
        .client
        .post(app.url("/api/v1/runtime"))
        .header("x-request-id", "rid-413")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_standard_error(&r.json().await.unwrap(), "PAYLOAD_TOO_LARGE", "rid-413");

    let r = app
        .client
        .post(app.url("/api/v1/runtime"))
        .header("content-type", "text/xml")
        .body("<a/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    app.stop().await;
}

#[tokio::test]
async fn loopback_needs_no_key_and_lan_clients_do() {
    let app = TestApp::start(&locked_down()).await;
    // Trusted (127.0.0.1) may call gateway and control routes without a key.
    assert_eq!(app.get_json("/api/v1/status").await.0, 200);
    let (s, body) = app
        .post_json("/api/v1/runtime", &json!({"paused": false}))
        .await;
    assert_eq!(s, 200, "{body}");

    // 127.0.0.5 is outside trusted_networks: a genuinely different peer address.
    let lan = TestApp::client_from("127.0.0.5");
    let status = app.url("/api/v1/status");
    let control = app.url("/api/v1/runtime");

    let r = lan.get(&status).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    let r = lan
        .get(&status)
        .bearer_auth("wrong-key-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = lan
        .get(&status)
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = lan
        .post(&control)
        .bearer_auth(GATEWAY_KEY)
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    assert_eq!(
        app.get_json("/api/v1/runtime").await.1["paused"],
        false,
        "a refused call changes nothing"
    );

    let r = lan
        .post(&control)
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get_json("/api/v1/runtime").await.1["paused"], true);

    // An admin key also opens gateway routes; /healthz and the dashboard need nothing.
    assert_eq!(
        lan.get(&status)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        lan.get(app.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(lan.get(app.url("/")).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn runtime_switches_change_mode() {
    let app = TestApp::start("").await;
    let (s, body) = app
        .post_json("/api/v1/runtime", &json!({"generator_mode": "live"}))
        .await;
    assert_eq!((s, body["generator_mode"].as_str()), (200, Some("live")));
    assert_eq!(
        app.get_json("/api/v1/status").await.1["generator_mode"],
        "live"
    );
    app.stop().await;
}

#[tokio::test]
async fn effective_config_endpoint_redacts_keys() {
    let app = TestApp::start(&locked_down()).await;
    let (s, body) = app.get_json("/api/v1/config").await;
    assert_eq!(s, 200);
    let text = body.to_string();
    assert!(
        !text.contains(GATEWAY_KEY) && !text.contains(ADMIN_KEY),
        "{text}"
    );
    let bind = body["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == "server.bind")
        .unwrap();
    assert_eq!(bind["source"], "environment SPARKLIO_DESK_BIND");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_the_port() {
    let app = TestApp::start("").await;
    let addr = app.addr;
    assert_eq!(app.get_json("/healthz").await.0, 200);
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open after shutdown"
    );
}
