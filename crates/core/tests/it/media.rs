//! Media Gateway against a ComfyUI double built from recorded fixtures, and in mock mode.

use serde_json::{json, Value};
use sparklio_core::media::png_size;
use sparklio_testkit::comfyui::ComfyDouble;
use sparklio_testkit::TestApp;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CHECKPOINT: &str = "sd_xl_base_1.0.safetensors";

fn live_toml(double: &ComfyDouble, extra: &str) -> String {
    format!(
        "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\ntimeout_s = 20\npoll_interval_ms = 50\ncheckpoint = \"{CHECKPOINT}\"\n{extra}",
        double.url()
    )
}

/// The harness writes `[storage]` first, so the mode comes from the environment.
async fn start_in(mode: &str, toml: &str) -> TestApp {
    TestApp::start_with(toml, &[("GENERATOR_MODE", mode)], Default::default()).await
}

async fn live(double: &ComfyDouble) -> TestApp {
    start_in("live", &live_toml(double, "")).await
}

async fn mock() -> TestApp {
    start_in("mock", "").await
}

fn diag(prompt: &str, w: u32, h: u32) -> Value {
    json!({"kind": "product_shot", "prompt": prompt, "options": {"workflow": "diagnostic", "width": w, "height": h, "seed": 7}})
}

async fn fetch(app: &TestApp, url: &str) -> (u16, Option<String>, Vec<u8>) {
    let r = app.client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, ct, r.bytes().await.unwrap().to_vec())
}

/// Poll a job until `done(view)` (bounded).
async fn wait_job(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let (s, v) = app.get_json(&format!("/api/v1/media/jobs/{id}")).await;
        assert_eq!(s, 200, "{v}");
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} never reached the expected state");
}

fn terminal(v: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or(""))
}

/// Read a job's SSE stream to its end: (event name, data) pairs.
async fn read_events(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/media/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(30), r.text())
        .await
        .expect("stream ends")
        .unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !name.is_empty() {
            out.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    out
}

/// The structure of a JSON value: keys and types, not values.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

#[tokio::test]
async fn mock_sync_generation_draws_real_pngs_of_the_team_sizes() {
    let app = mock().await;
    // The code's shape: task defaults, 630 rounded to 632 and reported.
    let (s, v) = app.post_json("/api/v1/media/generate", &json!({"prompt": "프로틴플러스 초코맛", "task": "sns_thumbnail", "media_type": "image"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["provider"], "mock");
    assert_eq!(v["model"], "sdxl_txt2img");
    assert_eq!(v["meta"]["generator_mode"], "mock");
    assert_eq!(v["meta"]["requested_height"], 630);
    let out = &v["outputs"][0];
    assert_eq!(
        (out["type"].as_str(), out["format"].as_str()),
        (Some("image"), Some("png"))
    );
    assert_eq!(
        (out["width"].as_u64(), out["height"].as_u64()),
        (Some(1200), Some(632))
    );
    let url = out["data"].as_str().unwrap();
    assert_eq!(url, v["images"][0]["url"]);
    let (st, ct, bytes) = fetch(&app, url).await;
    assert_eq!(st, 200);
    assert_eq!(ct.as_deref(), Some("image/png"));
    assert_eq!(png_size(&bytes), Some((1200, 632)));

    // The design's shape with brand_logo-like explicit size and base64 output.
    let (s, v) = app.post_json("/api/v1/media/generate", &json!({"prompt": "logo", "task": "brand_logo", "options": {"return": "base64", "seed": 42}})).await;
    assert_eq!(s, 200, "{v}");
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(v["outputs"][0]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(png_size(&png), Some((512, 512)));
    assert_eq!(v["meta"]["seed"], 42);
    assert_eq!(v["images"][0]["seed"], 42);

    // Same prompt + seed → same picture; different seed → different picture.
    let req = |seed: i64| json!({"kind": "concept", "prompt": "a cat", "options": {"width": 96, "height": 64, "seed": seed}});
    let (_, a) = app.post_json("/api/v1/media/image/generate", &req(1)).await;
    let (_, b) = app.post_json("/api/v1/media/image/generate", &req(1)).await;
    let (_, c) = app.post_json("/api/v1/media/image/generate", &req(2)).await;
    let bytes = |v: &Value| {
        let url = v["images"][0]["url"].as_str().unwrap().to_string();
        let app = &app;
        async move { fetch(app, &url).await.2 }
    };
    let (ba, bb, bc) = (bytes(&a).await, bytes(&b).await, bytes(&c).await);
    assert_eq!(png_size(&ba), Some((96, 64)));
    assert_eq!(ba, bb);
    assert_ne!(ba, bc);

    // Aspect ratio from the map.
    let (s, v) = app.post_json("/api/v1/media/image/generate", &json!({"kind": "hero", "prompt": "x", "options": {"aspect_ratio": "9:16", "count": 2}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert_eq!(
        (
            v["images"][1]["width"].as_u64(),
            v["images"][1]["height"].as_u64()
        ),
        (Some(768), Some(1344))
    );

    // One usage row per request, and the metric.
    let usage = state(&app)
        .store
        .recent_usage(Default::default())
        .await
        .unwrap();
    assert_eq!(usage.iter().filter(|u| u.kind == "media").count(), 6);
    let (_, metrics) = (
        200,
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains(
            "media_gateway_requests_total{provider=\"mock\",kind=\"hero\",status=\"success\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_standard_errors() {
    let app = mock().await;
    let (s, v) = app
        .post_json(
            "/api/v1/media/generate",
            &json!({"prompt": "x", "task": "product_image", "media_type": "video"}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "kind": "poster"}),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("kind")));
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"workflow": "nope"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("options.workflow"))
    );
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"width": 100000}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("options.width"))
    );
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &json!({"options": {}}))
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("prompt")));
    state(&app).runtime.set_paused(true);
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &json!({"prompt": "x"}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("GATEWAY_PAUSED"))
    );
    let (s, v) = app.get_json("/api/v1/media/jobs/job_nope").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    app.stop().await;
}

#[tokio::test]
async fn async_mock_job_reports_states_and_events_in_order() {
    let app = start_in(
        "mock",
        "[media.providers.mock]\nkind = \"mock\"\nstep_delay_ms = 20\n",
    )
    .await;
    let r = app
        .client
        .post(app.url("/api/v1/media/image/generate"))
        .header("Prefer", "respond-async")
        .json(&json!({"kind": "thumbnail", "prompt": "p", "options": {"width": 64, "height": 64, "steps": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    let id = v["job_id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/media/jobs/{id}"));
    assert!(v["status_url"].as_str().unwrap().ends_with(&location));
    let events = read_events(&app, &id).await;
    check_event_order(&events);
    assert!(
        events
            .iter()
            .any(|(_, d)| d["step"].as_u64().is_some_and(|s| s > 0 && s < 10)),
        "{events:?}"
    );
    let done = wait_job(&app, &id, terminal).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(
        png_size(
            &fetch(&app, done["images"][0]["url"].as_str().unwrap())
                .await
                .2
        ),
        Some((64, 64))
    );
    app.stop().await;
}

fn check_event_order(events: &[(String, Value)]) {
    let rank = |s: &str| match s {
        "queued" => 0,
        "running" => 1,
        _ => 2,
    };
    assert!(events.len() >= 2, "{events:?}");
    let mut last_rank = 0;
    let mut last_progress = 0.0;
    for (name, data) in events {
        assert_eq!(name, data["status"].as_str().unwrap());
        let r = rank(name);
        assert!(r >= last_rank, "state went back: {events:?}");
        let p = data["progress"].as_f64().unwrap();
        assert!(p >= last_progress, "progress went back: {events:?}");
        (last_rank, last_progress) = (r, p);
    }
    assert_eq!(events.last().unwrap().0, "succeeded");
    assert!(events.iter().filter(|(n, _)| n == "succeeded").count() == 1);
}

#[tokio::test]
async fn live_sync_generation_through_comfyui_and_same_shape_as_mock() {
    let double = ComfyDouble::start().await;
    let app = live(&double).await;
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("anything", 64, 64))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["provider"], "comfyui");
    assert_eq!(v["model"], "diagnostic");
    assert_eq!(v["meta"]["generator_mode"], "live");
    let prompt_id = v["meta"]["prompt_id"].as_str().unwrap();
    assert!(
        double.history_of(prompt_id).is_some(),
        "our prompt id was used upstream"
    );
    // The recorded ComfyUI output, copied into our own store.
    let (st, ct, bytes) = fetch(&app, v["images"][0]["url"].as_str().unwrap()).await;
    assert_eq!((st, ct.as_deref()), (200, Some("image/png")));
    assert_eq!(
        bytes,
        std::fs::read(sparklio_testkit::comfyui::fixture_path("bodies/output.png")).unwrap()
    );
    // The seed went into the EmptyImage colour, the size into its inputs.
    let graph = double.received().pop().unwrap();
    assert_eq!(graph["1"]["inputs"]["color"], 7);
    assert_eq!(graph["1"]["inputs"]["width"], 64);
    // Never an Origin header toward ComfyUI.
    assert!(double.inner.origins.lock().unwrap().is_empty());

    // A checkpoint workflow, code shape, real size from the PNG.
    double.set_checkpoints(&[CHECKPOINT]);
    let req = json!({"prompt": "earbuds on a desk", "task": "sns_thumbnail", "options": {"steps": 4, "seed": 3}});
    let (s, live_body) = app.post_json("/api/v1/media/generate", &req).await;
    assert_eq!(s, 200, "{live_body}");
    assert_eq!(live_body["outputs"][0]["height"], 632);
    let (_, _, bytes) = fetch(&app, live_body["outputs"][0]["data"].as_str().unwrap()).await;
    assert_eq!(png_size(&bytes), Some((1200, 632)));

    let mock_app = mock().await;
    let (s, mock_body) = mock_app.post_json("/api/v1/media/generate", &req).await;
    assert_eq!(s, 200);
    assert_eq!(
        shape(&live_body),
        shape(&mock_body),
        "mock and live answers differ in shape"
    );
    // Job views match in shape too.
    let (_, lj) = app
        .get_json(&format!(
            "/api/v1/media/jobs/{}",
            live_body["job_id"].as_str().unwrap()
        ))
        .await;
    let (_, mj) = mock_app
        .get_json(&format!(
            "/api/v1/media/jobs/{}",
            mock_body["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shape(&lj), shape(&mj));
    mock_app.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn live_async_progress_events_arrive_in_order() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    double.node_ms(60);
    let app = live(&double).await;
    let (s, v) = app.post_json("/api/v1/media/image/generate", &json!({"kind": "concept", "prompt": "p", "async": true, "options": {"width": 64, "height": 64, "steps": 6}})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    let events = read_events(&app, &id).await;
    check_event_order(&events);
    assert!(
        events.iter().any(|(n, d)| n == "running"
            && d["step"].as_u64().is_some_and(|s| (1..6).contains(&s))
            && d["total_steps"] == 6),
        "{events:?}"
    );
    assert!(events.iter().any(|(n, d)| n == "running"
        && d["progress"].as_f64().unwrap() > 0.0
        && d["progress"].as_f64().unwrap() < 1.0));
    let last = &events.last().unwrap().1;
    assert_eq!(last["images"][0]["width"], 64);
    app.stop().await;
}

#[tokio::test]
async fn socket_drop_mid_job_falls_back_to_history() {
    let double = ComfyDouble::start().await;
    double.inner.knobs.drop_socket.store(true, Ordering::SeqCst);
    double.node_ms(40);
    let app = live(&double).await;
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        double.inner.dropped_sockets.load(Ordering::SeqCst),
        1,
        "the socket was dropped mid-job"
    );
    let polls = double
        .inner
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET /history/"))
        .count();
    assert!(polls >= 2, "history was polled ({polls})");
    // No socket at all: polling from the start.
    double
        .inner
        .knobs
        .drop_socket
        .store(false, Ordering::SeqCst);
    double.inner.knobs.refuse_ws.store(true, Ordering::SeqCst);
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("y", 64, 64))
        .await;
    assert_eq!(s, 200, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn cancel_queued_and_running_jobs() {
    let double = ComfyDouble::start().await;
    // Long enough that a is still running (and b queued) after the round trips below,
    // also on a loaded machine.
    double.node_ms(1000);
    let app = live(&double).await;
    let submit = |prompt: &str| {
        let mut body = diag(prompt, 64, 64);
        body["async"] = json!(true);
        body
    };
    let (s, a) = app
        .post_json("/api/v1/media/image/generate", &submit("a"))
        .await;
    assert_eq!(s, 202, "{a}");
    let (s, b) = app
        .post_json("/api/v1/media/image/generate", &submit("b"))
        .await;
    assert_eq!(s, 202, "{b}");
    let (a, b) = (
        a["job_id"].as_str().unwrap().to_string(),
        b["job_id"].as_str().unwrap().to_string(),
    );
    let bv = wait_job(&app, &b, |v| v["queue_position"] == 1).await;
    assert_eq!(bv["status"], "queued");
    let b_upstream = bv["upstream_id"].as_str().unwrap().to_string();
    assert!(double.pending_ids().contains(&b_upstream));

    let r = app
        .client
        .delete(app.url(&format!("/api/v1/media/jobs/{b}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["error"]["code"], "JOB_CANCELLED");
    assert!(
        !double.pending_ids().contains(&b_upstream),
        "removed from ComfyUI's queue"
    );
    assert!(double
        .inner
        .queue_deletes
        .lock()
        .unwrap()
        .contains(&b_upstream));

    let av = wait_job(&app, &a, |v| v["status"] == "running").await;
    let a_upstream = av["upstream_id"].as_str().unwrap().to_string();
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/media/jobs/{a}")))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(
        double.inner.interrupts.load(Ordering::SeqCst),
        1,
        "running job interrupted upstream"
    );
    // ComfyUI stops at the next node boundary and records the interruption.
    for _ in 0..200 {
        if double.history_of(&a_upstream).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        double.history_of(&a_upstream).unwrap()["status"]["status_str"],
        "error"
    );
    // Stored as cancelled.
    let (_, v) = app.get_json(&format!("/api/v1/media/jobs/{a}")).await;
    assert_eq!(v["status"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn restart_recovers_unfinished_jobs_or_fails_them_with_a_reason() {
    let double = ComfyDouble::start().await;
    double.node_ms(250);
    let dir = tempfile::tempdir().unwrap();
    // With resubmission off, a job ComfyUI forgot is reported lost (the resubmitting
    // path has its own test in the fault matrix).
    let toml = format!(
        "{}[media]\nresubmit_after_restart = false\n",
        live_toml(&double, "")
    );
    let start = || async {
        let input = sparklio_testkit::input_for(&dir, &toml, &[("GENERATOR_MODE", "live")]);
        let loaded = sparklio_core::load_config(&input).unwrap();
        sparklio_core::start(loaded, Default::default())
            .await
            .unwrap()
    };
    let app = start().await;
    let client = reqwest::Client::new();
    let post = |addr: std::net::SocketAddr, prompt: &str| {
        let mut body = diag(prompt, 64, 64);
        body["async"] = json!(true);
        client
            .post(format!("http://{addr}/api/v1/media/image/generate"))
            .json(&body)
            .send()
    };
    let done_id: Value = post(app.addr, "survives")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lost_id: Value = post(app.addr, "lost").await.unwrap().json().await.unwrap();
    let (done_id, lost_id) = (
        done_id["job_id"].as_str().unwrap().to_string(),
        lost_id["job_id"].as_str().unwrap().to_string(),
    );
    double.inner.knobs.hold.store(true, Ordering::SeqCst);
    app.shutdown().await.unwrap();

    // While we were down: ComfyUI finished the first and then forgot the rest.
    for _ in 0..200 {
        if double.running_id().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(double.pending_ids().len(), 1);
    double.clear_pending();
    double.inner.knobs.hold.store(false, Ordering::SeqCst);

    let app = start().await;
    let get = |id: String| {
        let url = format!("http://{}/api/v1/media/jobs/{id}", app.addr);
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut done = Value::Null;
    let mut lost = Value::Null;
    for _ in 0..200 {
        done = get(done_id.clone()).await;
        lost = get(lost_id.clone()).await;
        if terminal(&done) && terminal(&lost) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["images"][0]["url"]
        .as_str()
        .unwrap()
        .contains("/api/v1/media/files/img_"));
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["error"]["code"], "JOB_LOST");
    assert!(lost["error"]["message"]
        .as_str()
        .unwrap()
        .contains("neither queued nor in its history"));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn prompt_injection_lands_verbatim_in_its_one_input() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    let app = live(&double).await;
    let evil = r#"a "quoted" prompt\", "clip": ["99", 0]}, "10": {"class_type": "SaveImage", "inputs": {}}, {{braces}} ${x} %prompt% \u0000 ' ; DROP"#;
    let (s, v) = app.post_json("/api/v1/media/image/generate", &json!({"kind": "product_shot", "prompt": evil, "negative_prompt": "}\"{", "options": {"width": 64, "height": 64, "steps": 2}})).await;
    assert_eq!(s, 200, "{v}");
    let graph = double.received().pop().unwrap();
    let workflow: Value =
        serde_json::from_str(include_str!("../../src/media/workflows/sdxl_txt2img.json")).unwrap();
    assert_eq!(
        graph.as_object().unwrap().len(),
        workflow.as_object().unwrap().len(),
        "no node added"
    );
    assert_eq!(graph["6"]["inputs"]["text"], evil);
    assert_eq!(graph["7"]["inputs"]["text"], "}\"{");
    assert_eq!(graph["6"]["inputs"]["clip"], json!(["4", 1]));
    // Every other input is the workflow's own, or a mapped parameter.
    for (id, node) in workflow.as_object().unwrap() {
        assert_eq!(graph[id]["class_type"], node["class_type"]);
        for (input, value) in node["inputs"].as_object().unwrap() {
            let mapped = matches!(
                (id.as_str(), input.as_str()),
                ("6" | "7", "text")
                    | ("5", _)
                    | ("3", "seed" | "steps" | "cfg")
                    | ("4", "ckpt_name")
            );
            if !mapped {
                assert_eq!(
                    &graph[id]["inputs"][input], value,
                    "node {id} input {input}"
                );
            }
        }
    }
    assert_eq!(v["meta"]["prompt"], evil);
    app.stop().await;
}

/// `options.sampler`, `scheduler` and `denoise` reach KSampler (they were accepted and
/// ignored); a task's own sampler applies; a name ComfyUI does not list is the caller's
/// 400 before anything is queued; mock answers report the same.
#[tokio::test]
async fn the_sampler_scheduler_and_denoise_asked_for_are_the_ones_drawn() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    let app = live(&double).await;
    let mock_app = mock().await;
    let asked = json!({"kind": "product_shot", "prompt": "p", "options": {"width": 64, "height": 64, "steps": 2,
        "sampler_name": "dpmpp_2m_sde_gpu", "scheduler": "karras", "denoise": 0.6}});
    let (s, v) = app.post_json("/api/v1/media/image/generate", &asked).await;
    assert_eq!(s, 200, "{v}");
    let graph = double.received().pop().unwrap();
    assert_eq!(graph["3"]["inputs"]["sampler_name"], "dpmpp_2m_sde_gpu");
    assert_eq!(graph["3"]["inputs"]["scheduler"], "karras");
    assert_eq!(graph["3"]["inputs"]["denoise"], 0.6);
    let (s, m) = mock_app
        .post_json("/api/v1/media/image/generate", &asked)
        .await;
    assert_eq!(s, 200, "{m}");
    for body in [&v, &m] {
        assert_eq!(body["meta"]["sampler"], "dpmpp_2m_sde_gpu", "{body}");
        assert_eq!(body["meta"]["scheduler"], "karras");
        assert_eq!(body["meta"]["denoise"], 0.6);
    }

    // The backend's brand_logo task samples with euler_ancestral (its own default); what
    // the request left out is the graph's own value, and the answer says which.
    let logo = json!({"task": "brand_logo", "prompt": "p", "options": {"width": 64, "height": 64, "steps": 2}});
    let (s, v) = app.post_json("/api/v1/media/generate", &logo).await;
    assert_eq!(s, 200, "{v}");
    let graph = double.received().pop().unwrap();
    assert_eq!(graph["3"]["inputs"]["sampler_name"], "euler_ancestral");
    assert_eq!(graph["3"]["inputs"]["scheduler"], "normal");
    assert_eq!(
        (
            &v["meta"]["sampler"],
            &v["meta"]["scheduler"],
            &v["meta"]["denoise"]
        ),
        (&json!("euler_ancestral"), &json!("normal"), &json!(1.0))
    );

    // Refused before anything is queued: a sampler ComfyUI does not list (a 400 on the
    // option, naming what it has), a name no ComfyUI has, a denoise outside 0..=1.
    let queued = double.received().len();
    for (options, field, says) in [
        (json!({"sampler": "eular"}), "options.sampler", "dpmpp_2m"),
        (json!({"scheduler": "karas"}), "options.scheduler", "karras"),
        (
            json!({"sampler": "../x"}),
            "options.sampler",
            "like \"euler\"",
        ),
        (json!({"denoise": 1.5}), "options.denoise", "0..=1"),
    ] {
        let mut req =
            json!({"kind": "product_shot", "prompt": "p", "options": {"width": 64, "height": 64}});
        req["options"]
            .as_object_mut()
            .unwrap()
            .extend(options.as_object().unwrap().clone());
        let (s, e) = app.post_json("/api/v1/media/image/generate", &req).await;
        assert_eq!(s, 400, "{options}: {e}");
        assert_eq!(e["error"]["code"], "VALIDATION_ERROR", "{e}");
        assert_eq!(e["error"]["field"], field, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{e}"
        );
    }
    assert_eq!(double.received().len(), queued, "nothing queued");
    mock_app.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn object_info_validation_names_the_node_before_queueing() {
    let double = ComfyDouble::start().await;
    let wf_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        wf_dir.path().join("custom.json"),
        r#"{"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "NoSuchNodeXYZ", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}"#,
    )
    .unwrap();
    std::fs::write(
        wf_dir.path().join("custom.manifest.toml"),
        "[parameters]\nwidth = { node = \"1\", input = \"width\" }\n",
    )
    .unwrap();
    let app = start_in(
        "live",
        &live_toml(&double, &format!("workflow_dir = {:?}\n", wf_dir.path())),
    )
    .await;

    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"workflow": "custom"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("WORKFLOW_INVALID")),
        "{v}"
    );
    assert_eq!(v["error"]["node_id"], "2");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NoSuchNodeXYZ"));

    // No checkpoint installed: MODEL_NOT_FOUND naming the loader node.
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "kind": "product_shot"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("MODEL_NOT_FOUND")),
        "{v}"
    );
    assert_eq!(v["error"]["node_id"], "4");
    assert_eq!(v["error"]["class_type"], "CheckpointLoaderSimple");
    assert!(v["error"]["message"].as_str().unwrap().contains(CHECKPOINT));
    assert!(double.received().is_empty(), "nothing reached POST /prompt");

    // ComfyUI itself rejects the graph: its node errors come back as WORKFLOW_INVALID.
    let rejection = sparklio_testkit::comfyui::fixture("http/post_prompt_err_missing_input.json")
        ["response"]["body_json"]
        .clone();
    *double.inner.knobs.reject_next.lock().unwrap() = Some(rejection);
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("WORKFLOW_INVALID")),
        "{v}"
    );
    assert_eq!(
        v["error"]["node_errors"]["1"]["errors"][0]["type"],
        "required_input_missing"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("node 1 (EmptyImage)"));
    app.stop().await;
}

#[tokio::test]
async fn execution_error_and_timeout_fail_the_job() {
    let double = ComfyDouble::start().await;
    double.inner.knobs.fail_save.store(true, Ordering::SeqCst);
    let app = live(&double).await;
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (502, Some("GENERATION_FAILED")),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Saving image outside the output folder is not allowed"));
    assert_eq!(v["error"]["node_type"], "SaveImage");
    let (_, job) = app
        .get_json(&format!(
            "/api/v1/media/jobs/{}",
            v["error"]["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job["status"], "failed");
    app.stop().await;

    double.inner.knobs.fail_save.store(false, Ordering::SeqCst);
    double.node_ms(1500);
    let app = start_in(
        "live",
        &live_toml(&double, "").replace("timeout_s = 20", "timeout_s = 1"),
    )
    .await;
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("slow", 64, 64))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (504, Some("MEDIA_TIMEOUT")),
        "{v}"
    );
    assert_eq!(
        double.inner.interrupts.load(Ordering::SeqCst),
        1,
        "interrupted upstream on timeout"
    );
    app.stop().await;
}

#[tokio::test]
async fn comfyui_down_answers_provider_unavailable_at_once() {
    let port = sparklio_testkit::free_port();
    let app = start_in("live", &format!("[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:{port}\"\n")).await;
    let t = Instant::now();
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("PROVIDER_UNAVAILABLE")),
        "{v}"
    );
    assert_eq!(v["detail"]["provider"], "comfyui");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "far below the timeout"
    );
    let (s, h) = app.get_json("/api/v1/media/health").await;
    assert_eq!(s, 200);
    assert_eq!(h["gateway"], "unhealthy");
    // The same word as the models route for the same state (issue 12).
    assert_eq!(h["providers"]["comfyui"]["status"], "unavailable");
    let (_, m) = app.get_json("/api/v1/media/models").await;
    assert_eq!(m["providers"]["comfyui"]["status"], "unavailable");
    app.stop().await;

    // The supervisor says it is down: no call at all.
    let double = ComfyDouble::start().await;
    let app = live(&double).await;
    state(&app)
        .provider_board
        .mark_down("comfyui", "service comfyui is crashed (exit code 1)");
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("PROVIDER_UNAVAILABLE"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("crashed"));
    assert!(double.inner.requests.lock().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn health_and_models_from_comfyui() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    let app = live(&double).await;
    let (s, h) = app.get_json("/api/v1/media/health").await;
    assert_eq!(s, 200);
    assert_eq!(h["gateway"], "healthy");
    assert_eq!(h["mode"], "live");
    assert_eq!(h["providers"]["comfyui"]["version"], "0.3.64");
    let (s, m) = app.get_json("/api/v1/media/models").await;
    assert_eq!(s, 200);
    assert_eq!(
        m["models"][0],
        json!({"name": CHECKPOINT, "type": "checkpoint", "provider": "comfyui"})
    );
    let names: Vec<&str> = m["providers"]["comfyui"]["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"diagnostic") && names.contains(&"sdxl_txt2img"));
    assert_eq!(m["tasks"]["brand_logo"]["width"], 512);
    app.stop().await;
}

#[tokio::test]
async fn files_are_served_by_id_only() {
    let app = mock().await;
    let (_, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"width": 16, "height": 16}}),
        )
        .await;
    let id = v["images"][0]["id"].as_str().unwrap().to_string();
    let (s, _, _) = fetch(&app, &app.url(&format!("/api/v1/media/files/{id}"))).await;
    assert_eq!(s, 200);
    std::fs::write(app.data_dir().join("secret.txt"), "top secret").unwrap();
    for attempt in [
        "/api/v1/media/files/..%2Fsparklio-desk.db".to_string(),
        "/api/v1/media/files/..%2F..%2Fsecret.txt".to_string(),
        "/api/v1/media/files/%2E%2E%2Fsecret.txt".to_string(),
        "/api/v1/media/files/secret.txt".to_string(),
        format!("/api/v1/media/files/{id}%2F..%2F..%2Fsecret.txt"),
        format!("/api/v1/media/files/{}", &id[..id.len() - 1]),
        "/api/v1/media/files/img_20250101_..%2F..%2F..".to_string(),
        "/api/v1/media/files/%2Fetc%2Fpasswd".to_string(),
    ] {
        let r = app.client.get(app.url(&attempt)).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 404, "{attempt}: {body}");
        assert!(
            !body.contains("top secret") && !body.contains("SQLite"),
            "{attempt}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "NOT_FOUND");
    }
    // Raw traversal in the path (not normalised by the client).
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /api/v1/media/files/../../secret.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(!resp.contains("top secret"));
    app.stop().await;
}

fn state(app: &TestApp) -> &sparklio_core::app::SharedState {
    &app.app.as_ref().unwrap().state
}

#[tokio::test]
async fn the_double_answers_like_the_recordings() {
    let double = ComfyDouble::start().await;
    let client = reqwest::Client::new();
    for name in [
        "get_system_stats_foreign_origin",
        "post_prompt_err_invalid_json",
        "post_prompt_err_no_prompt_key",
        "post_prompt_err_unknown_class",
        "get_view_traversal_relative",
        "get_view_subfolder_traversal",
    ] {
        let rec = sparklio_testkit::comfyui::fixture(&format!("http/{name}.json"));
        let req = &rec["request"];
        let url = format!("{}{}", double.url(), req["path"].as_str().unwrap());
        let mut b = match req["method"].as_str().unwrap() {
            "POST" => client
                .post(&url)
                .body(req["body_text"].as_str().unwrap_or("").to_string()),
            _ => client.get(&url),
        };
        for (k, v) in req["headers"].as_object().unwrap() {
            b = b.header(k.as_str(), v.as_str().unwrap());
        }
        let r = b.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        assert_eq!(
            status as u64,
            rec["response"]["status"].as_u64().unwrap(),
            "{name}"
        );
        if let Some(body) = rec["response"].get("body_json") {
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                *body,
                "{name}"
            );
        } else if let Some(body) = rec["response"].get("body_text").and_then(Value::as_str) {
            assert_eq!(text, body, "{name}");
            if !body.is_empty() {
                assert!(ct.unwrap_or_default().starts_with("text/plain"), "{name}");
            }
        }
    }
    // Unknown history ids are 200 {} (not 404).
    let v: Value = client
        .get(format!("{}/history/nope", double.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({}));
}

#[tokio::test]
async fn refused_requests_still_leave_a_usage_row_and_a_metric() {
    let app = mock().await;
    let (s, _) = app
        .post_json(
            "/api/v1/media/generate",
            &json!({"prompt": "x", "task": "product_image", "media_type": "audio"}),
        )
        .await;
    assert_eq!(s, 400);
    let usage = state(&app)
        .store
        .recent_usage(Default::default())
        .await
        .unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].kind, "media");
    assert_eq!(usage[0].status, 400);
    assert_eq!(
        usage[0].error_code.as_deref(),
        Some("UNSUPPORTED_MEDIA_TYPE")
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("status=\"error\"} 1"), "{metrics}");
    app.stop().await;
}

#[test]
fn media_config_problems_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let input = sparklio_testkit::input_for(
        &dir,
        "[media]\ndefault_provider = \"nope\"\n[media.tasks.banner]\nkind = \"poster\"\n[media.providers.x]\nkind = \"dalle\"\n",
        &[],
    );
    let problems = sparklio_core::load_config(&input).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "media.default_provider",
        "media.tasks.banner.kind",
        "media.providers.x.kind",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}

/// The design's own request (`workflow: "product_shot_v1"`, the VisionGenerator's) is
/// drawn, by the workflow its alias names; a name neither aliased nor loaded is still a 400.
#[tokio::test]
async fn the_designs_workflow_name_is_drawn_by_its_alias() {
    let app = mock().await;
    let design = json!({"provider": "auto", "kind": "product_shot", "prompt": "a protein shake",
                        "options": {"aspect_ratio": "16:9", "workflow": "product_shot_v1",
                                    "negative_prompt": "blurry", "seed": 3}});
    let (s, v) = app.post_json("/api/v1/media/image/generate", &design).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["model"], "sdxl_txt2img", "{v}");
    assert_eq!(
        (
            v["outputs"][0]["width"].as_u64(),
            v["outputs"][0]["height"].as_u64()
        ),
        (Some(1344), Some(768))
    );
    let (s, v) = app.get_json("/api/v1/media/models").await;
    assert_eq!(s, 200);
    assert_eq!(
        v["workflow_aliases"]["product_shot_v1"], "sdxl_txt2img",
        "{v}"
    );
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"workflow": "product_shot_v2"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("options.workflow")),
        "{v}"
    );
    app.stop().await;
}

/// Mock mode judges a request as live mode would: the provider's name and the
/// workflows of its folder. Before, mock mode answered 200 for a provider live mode
/// refuses, and 400 for a workflow live mode draws.
#[tokio::test]
async fn mock_mode_accepts_and_refuses_what_live_mode_does() {
    let double = ComfyDouble::start().await;
    let wf_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/media/workflows/diagnostic.json"
        ),
        wf_dir.path().join("house_style.json"),
    )
    .unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/media/workflows/diagnostic.manifest.toml"
        ),
        wf_dir.path().join("house_style.manifest.toml"),
    )
    .unwrap();
    let toml = live_toml(&double, &format!("workflow_dir = {:?}\n", wf_dir.path()));
    let mut answers = Vec::new();
    for mode in ["live", "mock"] {
        let app = start_in(mode, &toml).await;
        let (s, v) = app
            .post_json(
                "/api/v1/media/image/generate",
                &json!({"prompt": "x", "options": {"workflow": "house_style", "width": 64, "height": 64}}),
            )
            .await;
        assert_eq!(s, 200, "{mode}: {v}");
        assert_eq!(v["model"], "house_style", "{mode}: {v}");
        assert_eq!(v["meta"]["generator_mode"], mode, "{v}");
        let (s, v) = app
            .post_json(
                "/api/v1/media/image/generate",
                &json!({"prompt": "x", "provider": "nanobanana"}),
            )
            .await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (400, Some("provider")),
            "{mode}: {v}"
        );
        answers.push(v["error"]["message"].clone());
        app.stop().await;
    }
    assert_eq!(answers[0], answers[1]);
}

/// A mock provider named in live mode answers mock data and says so.
#[tokio::test]
async fn a_mock_provider_named_in_live_mode_says_mock() {
    let double = ComfyDouble::start().await;
    let app = live(&double).await;
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "provider": "mock", "options": {"width": 64, "height": 64}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["provider"], "mock");
    assert_eq!(v["meta"]["generator_mode"], "mock", "{v}");
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["meta"]["generator_mode"], "live", "{v}");
    app.stop().await;
}

/// Media errors carry the contract's fields: `provider` and `model` (null before either
/// is known) and the request's own `request_id`, as the LLM side's do.
#[tokio::test]
async fn media_errors_name_provider_model_and_the_callers_request_id() {
    let app = mock().await;
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "kind": "nope", "request_id": "r-1"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let error = v["error"].as_object().unwrap();
    assert_eq!(error["request_id"], "r-1", "{v}");
    assert!(
        error.contains_key("provider") && error.contains_key("model"),
        "{v}"
    );

    // Past the spec: both named.
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "options": {"workflow": "nope"}, "request_id": "r-2"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["request_id"], "r-2");
    assert_eq!(v["error"]["provider"], "mock", "{v}");
    assert_eq!(v["error"]["model"], "nope", "{v}");
    assert_eq!(v["detail"]["provider"], "mock", "{v}");

    // An id too long for the usage log is refused, not stored.
    let (s, v) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "x", "request_id": "r".repeat(129)}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("request_id")),
        "{v}"
    );
    app.stop().await;
}

/// A job is cancelled only by its own caller (same key) or an admin: its id shows in
/// the health's queue, and another gateway key must not stop someone else's image.
#[tokio::test]
async fn only_the_jobs_own_caller_or_an_admin_reads_follows_or_cancels_it() {
    let (alice, bob, admin) = (
        "gateway-key-alice-0123456789",
        "gateway-key-bob-0123456789ab",
        "admin-key-0123456789abcdef01",
    );
    let toml = format!(
        "[server]\napi_keys = [\"{alice}\", \"{bob}\"]\nadmin_keys = [\"{admin}\"]\n\
         [media.providers.mock]\nkind = \"mock\"\nstep_delay_ms = 200\n"
    );
    let app = start_in("mock", &toml).await;
    let lan = TestApp::client_from("127.0.0.5");
    let submit = |key: &str| {
        lan.post(app.url("/api/v1/media/image/generate"))
            .bearer_auth(key)
            .json(&json!({"prompt": "x", "async": true, "options": {"width": 64, "height": 64, "steps": 50}}))
            .send()
    };
    let r = submit(alice).await.unwrap();
    assert_eq!(r.status(), 202);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel = |key: &'static str| {
        lan.delete(app.url(&format!("/api/v1/media/jobs/{job}")))
            .bearer_auth(key)
            .send()
    };
    let read = |key: &'static str, tail: &'static str| {
        lan.get(app.url(&format!("/api/v1/media/jobs/{job}{tail}")))
            .bearer_auth(key)
            .send()
    };
    // Another gateway key may neither stop it, nor read or follow it (its prompt, its
    // images' URLs).
    for r in [
        cancel(bob).await.unwrap(),
        read(bob, "").await.unwrap(),
        read(bob, "/events").await.unwrap(),
    ] {
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    }
    for key in [alice, admin] {
        let r = read(key, "").await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(
            ["queued", "running"].contains(&v["status"].as_str().unwrap()),
            "{v}"
        );
    }
    let r = read(alice, "/events").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(r);

    let r = cancel(alice).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");

    // An admin may cancel anyone's.
    let r = submit(bob).await.unwrap();
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = lan
        .delete(app.url(&format!("/api/v1/media/jobs/{job}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// A ComfyUI that queues a prompt under an id of its own (older than the recorded one,
/// which takes the caller's): the job follows the id ComfyUI answered. Before, it
/// followed its own id, found it nowhere, and ended JOB_LOST.
#[tokio::test]
async fn a_comfyui_that_picks_its_own_prompt_id_is_followed_by_that_id() {
    let double = ComfyDouble::start().await;
    double
        .inner
        .knobs
        .ignore_prompt_id
        .store(true, Ordering::SeqCst);
    let app = live(&double).await;
    let (s, v) = app
        .post_json("/api/v1/media/image/generate", &diag("x", 64, 64))
        .await;
    assert_eq!(s, 200, "{v}");
    let job = v["job_id"].as_str().unwrap();
    let (_, j) = app.get_json(&format!("/api/v1/media/jobs/{job}")).await;
    let upstream = j["upstream_id"].as_str().unwrap().to_string();
    assert!(double.history_of(&upstream).is_some(), "{j}");
    app.stop().await;
}
