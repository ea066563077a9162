//! The APIs the dashboard reads: models, usage, the live stream, overall health.

use serde_json::{json, Value};
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::TestApp;
use std::time::Duration;

async fn app_with(double: &OllamaDouble) -> TestApp {
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n\
         [media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:9\"\n",
        double.base_url()
    );
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

#[tokio::test]
async fn models_lists_installed_loaded_and_missing_routed_models() {
    let double =
        OllamaDouble::start_with(&["qwen2.5:7b", "llama3.2:latest"], &["qwen2.5:7b"]).await;
    let app = app_with(&double).await;
    let (s, body) = app.get_json("/api/v1/models").await;
    assert_eq!(s, 200, "{body}");
    let ollama = body["llm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "ollama")
        .unwrap();
    assert_eq!(ollama["reachable"], true, "{ollama}");
    let q7 = ollama["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "qwen2.5:7b")
        .unwrap();
    assert_eq!(q7["loaded"], true);
    assert_eq!(q7["family"], "qwen2");
    assert_eq!(q7["quantization"], "Q4_K_M");
    assert!(q7["size_vram"].as_u64().unwrap() > 0);
    assert!(q7["modified_at"].is_string());
    let missing: Vec<&str> = ollama["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        missing.contains(&"qwen2.5:14b") && missing.contains(&"mistral-small"),
        "{missing:?}"
    );
    assert!(
        !missing.contains(&"qwen2.5:7b") && !missing.contains(&"llama3.2"),
        "{missing:?}"
    );
    // A media provider that is down says why instead of failing the whole answer.
    let comfy = body["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "comfyui")
        .unwrap();
    assert!(
        comfy["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{comfy}"
    );
    app.stop().await;
}

#[tokio::test]
async fn usage_lists_recent_requests_and_summarises_them() {
    let double = OllamaDouble::start().await;
    let app = app_with(&double).await;
    let ok = json!({"role": "brief", "task": "marketing_brief", "payload": {"product": "x"}, "request_id": "u-ok"});
    assert_eq!(app.post_json("/api/v1/llm/generate", &ok).await.0, 200);
    let bad = json!({"role": "brief", "task": "marketing_brief", "payload": {}, "options": {"model": "nope:1b"}, "request_id": "u-bad"});
    assert_eq!(app.post_json("/api/v1/llm/generate", &bad).await.0, 404);

    let (s, body) = app.get_json("/api/v1/usage?limit=10").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["u-bad", "u-ok"], "newest first");
    let (_, body) = app.get_json("/api/v1/usage/summary?window_s=600").await;
    let s = &body["summary"];
    assert_eq!(
        (s["requests"].as_u64(), s["errors"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(s["error_rate"], 0.5);
    assert!(s["p50_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(body["generator_mode"], "live");
    let (s, body) = app.get_json("/api/v1/usage?limit=abc").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_live_stream_sends_snapshots_and_ends_at_shutdown() {
    let double = OllamaDouble::start().await;
    let app = app_with(&double).await;
    let (_, status) = app.get_json("/api/v1/status").await;
    assert_eq!(status["health"]["level"], "ok");
    assert_eq!(status["health"]["summary"], "no services supervised");
    assert_eq!(status["pid"], std::process::id());

    let mut resp = app
        .client
        .get(app.url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: snapshot"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let snap: Value = serde_json::from_str(data).unwrap();
    for key in ["status", "services", "system", "usage", "recent"] {
        assert!(snap.get(key).is_some(), "snapshot lacks {key}: {snap}");
    }
    assert!(snap["system"]["memory_total_bytes"].as_u64().unwrap() > 0);

    // Shutdown ends the stream instead of holding the server open.
    let app_handle = app.app.as_ref().unwrap();
    app_handle.request_shutdown();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    assert!(end.is_ok(), "the stream did not end at shutdown");
    app.stop().await;
}

/// Events filtered by service, level and actor; repeats counted with first/last time;
/// each event names its notification topic, which can be muted and unmuted.
#[tokio::test]
async fn events_filter_count_and_mute_their_topics() {
    let dead = sparklio_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[supervisor]\ndocker_host = \"unix://{}\"\nunavailable_recheck_ms = 20\n\
         [[services]]\nname = \"box\"\nkind = \"docker\"\ncontainer = \"box\"\n\
         [[services]]\nname = \"idle\"\nkind = \"process\"\ncommand = \"true\"\nautostart = false\nport = {dead}\n",
        dir.path().join("none.sock").display()
    );
    let app = TestApp::start(&toml).await;
    // A person starts the idle one (actor "trusted client from 127.0.0.1": loopback);
    // docker stays unavailable.
    let (s, body) = app
        .post_json("/api/v1/services/idle/start", &json!({}))
        .await;
    assert_eq!(s, 202, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let down = loop {
        let (_, body) = app.get_json("/api/v1/events?service=box&level=down").await;
        if let Some(e) = body["events"].as_array().unwrap().first() {
            if e["count"].as_u64().unwrap() >= 5 {
                break e.clone();
            }
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(down["to"], "unavailable");
    assert_eq!(down["level"], "down");
    assert_eq!(down["topic"], "docker");
    assert!(
        down["last_ts"].as_str().unwrap() > down["ts"].as_str().unwrap(),
        "{down}"
    );

    let list = |body: &Value| -> Vec<(String, String)> {
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["service"].as_str().unwrap().to_string(),
                    e["to"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (_, only_box) = app.get_json("/api/v1/events?service=box").await;
    assert!(
        list(&only_box).iter().all(|(s, _)| s == "box"),
        "{only_box}"
    );
    let (_, degraded) = app.get_json("/api/v1/events?level=degraded").await;
    assert!(
        list(&degraded).iter().all(|(_, to)| to == "starting"),
        "{degraded}"
    );
    assert!(!list(&degraded).is_empty());
    let (_, by_person) = app.get_json("/api/v1/events?actor=trusted%20client").await;
    let by_person = by_person["events"].as_array().unwrap().clone();
    assert!(!by_person.is_empty());
    assert!(
        by_person.iter().all(|e| e["service"] == "idle"
            && e["actor"]
                .as_str()
                .unwrap()
                .starts_with("trusted client from ")),
        "{by_person:?}"
    );
    let (_, by_supervisor) = app.get_json("/api/v1/events?actor=supervisor").await;
    assert!(by_supervisor["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "supervisor"));
    let (_, by_admin) = app.get_json("/api/v1/events?actor=admin").await;
    assert_eq!(by_admin["events"], json!([]), "nobody used an admin key");
    let (s, bad) = app.get_json("/api/v1/events?level=awful").await;
    assert_eq!(s, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "VALIDATION_ERROR");

    // Mute the docker topic until it changes, list it, unmute it.
    let (s, body) = app
        .post_json(
            "/api/v1/notifications/mutes",
            &json!({"topic": "docker", "for": "until_change"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["mute"]["level"], "down");
    let (_, body) = app.get_json("/api/v1/notifications/mutes").await;
    assert_eq!(body["mutes"][0]["topic"], "docker", "{body}");
    assert_eq!(body["mutes"][0]["for"], "until_change");
    let (s, body) = app
        .post_json(
            "/api/v1/notifications/mutes",
            &json!({"topic": "gateway", "for": "forever"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    // A body declared as something else is a 415, as on every JSON route.
    let resp = app
        .client
        .post(app.url("/api/v1/notifications/mutes"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=docker&for=1h")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // What requests can store is bounded ("docker" is one of them).
    for i in 1..sparklio_core::notify::mutes::MAX_MUTES {
        let (s, body) = app
            .post_json(
                "/api/v1/notifications/mutes",
                &json!({"topic": format!("topic-{i}"), "for": "1h"}),
            )
            .await;
        assert_eq!(s, 201, "{i}: {body}");
    }
    let (s, body) = app
        .post_json(
            "/api/v1/notifications/mutes",
            &json!({"topic": "one-more", "for": "1h"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("TOO_MANY_MUTES")),
        "{body}"
    );
    // Muting a muted topic again still works.
    let (s, _) = app
        .post_json(
            "/api/v1/notifications/mutes",
            &json!({"topic": "topic-1", "for": "until_change"}),
        )
        .await;
    assert_eq!(s, 201);
    for i in 1..sparklio_core::notify::mutes::MAX_MUTES {
        let resp = app
            .client
            .delete(app.url(&format!("/api/v1/notifications/mutes/topic-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    let resp = app
        .client
        .delete(app.url("/api/v1/notifications/mutes/docker"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (_, body) = app.get_json("/api/v1/notifications/mutes").await;
    assert_eq!(body["mutes"], json!([]));
    app.stop().await;
}

/// The first snapshot of the live stream, read as `client` with `key`.
async fn first_snapshot(app: &TestApp, client: &reqwest::Client, key: &str) -> Value {
    let mut resp = client
        .get(app.url("/api/v1/stream"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    serde_json::from_str(data).unwrap()
}

/// A gateway key reads the stream but not the service list through it: the same key gets
/// 403 from `GET /api/v1/services`, so the snapshot leaves `services` out and says
/// `"access": "read-only"`; an admin key gets both.
#[tokio::test]
async fn the_live_stream_leaves_services_out_for_a_gateway_key() {
    const GATEWAY: &str = "dash-gateway-key-0123456789";
    const ADMIN: &str = "dash-admin-key-0123456789ab";
    let toml = format!(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"{GATEWAY}\"]\nadmin_keys = [\"{ADMIN}\"]\n\
         [[services]]\nname = \"idle\"\nkind = \"process\"\ncommand = \"true\"\nautostart = false\n"
    );
    let app = TestApp::start(&toml).await;
    let lan = TestApp::client_from("127.0.0.5");
    let services = lan
        .get(app.url("/api/v1/services"))
        .bearer_auth(GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(services.status(), 403);

    let snap = first_snapshot(&app, &lan, GATEWAY).await;
    assert_eq!(snap["access"], "read-only", "{snap}");
    assert!(snap.get("services").is_none(), "{snap}");
    assert!(snap["status"]["health"].is_object(), "{snap}");

    let snap = first_snapshot(&app, &lan, ADMIN).await;
    assert_eq!(snap["access"], "admin", "{snap}");
    assert_eq!(snap["services"][0]["name"], "idle", "{snap}");
    app.stop().await;
}
