//! LLM Gateway against a real server and an Ollama test double, both on 127.0.0.1.

use serde_json::{json, Value};
use sparklio_core::app::AppState;
use sparklio_core::store::UsageQuery;
use sparklio_testkit::ollama::{Behaviour, OllamaDouble};
use sparklio_testkit::TestApp;
use std::time::{Duration, Instant};

const GENERATE: &str = "/api/v1/llm/generate";

fn provider_toml(name: &str, base_url: &str, timeout_s: f64) -> String {
    format!("[llm.providers.{name}]\nkind = \"ollama\"\nbase_url = \"{base_url}\"\ntimeout_s = {timeout_s}\n")
}

async fn live_app(double: &OllamaDouble, extra: &str) -> TestApp {
    live_app_at(&double.base_url(), 5.0, extra).await
}

async fn live_app_at(base_url: &str, timeout_s: f64, extra: &str) -> TestApp {
    let toml = format!("{}{extra}", provider_toml("ollama", base_url, timeout_s));
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

async fn mock_app(double: &OllamaDouble) -> TestApp {
    let toml = provider_toml("ollama", &double.base_url(), 5.0);
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "mock")], Default::default()).await
}

fn state(app: &TestApp) -> &AppState {
    &app.app.as_ref().expect("running").state
}

fn product_payload() -> Value {
    json!({
        "product_name": "프로틴플러스 초코맛",
        "category": "단백질 보충제",
        "features": ["30g 단백질", "저당", "간편한 쉐이크"],
        "target_audience": "20–30대 직장인",
    })
}

/// Every error body names code, message, provider, model and request_id, plus `detail`.
fn assert_error_body(body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    for key in ["provider", "model", "request_id"] {
        assert!(e.get(key).is_some(), "error.{key} missing: {body}");
    }
    assert!(
        e["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["detail"]["error"], code.to_ascii_lowercase(), "{body}");
    assert_eq!(body["detail"]["message"], e["message"]);
}

/// Keys and JSON types, recursively; the model-dependent insides of `output.value`
/// and `output.parsed` count by type only.
fn shape(v: &Value, path: &str) -> Value {
    let opaque = path == ".output.value" || path == ".output.parsed";
    match v {
        Value::Object(m) if !opaque => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), shape(v, &format!("{path}.{k}"))))
                .collect(),
        ),
        Value::Object(_) => json!("object"),
        Value::Array(_) => json!("array"),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

struct SseEvent {
    event: String,
    data: Value,
}

async fn post_sse(app: &TestApp, path: &str, body: &Value) -> (u16, String, Vec<SseEvent>) {
    let r = app
        .client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("stream ends")
        .unwrap();
    let events = text
        .split("\n\n")
        .filter_map(|block| {
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            (!data.is_empty()).then(|| SseEvent {
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            })
        })
        .collect();
    (status, ct, events)
}

#[tokio::test]
async fn json_answer_has_every_contract_field_and_sends_the_routed_model() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let r = app
        .client
        .post(app.url(GENERATE))
        .json(&json!({
            "role": "copywriter", "task": "product_detail", "payload": product_payload(),
            "options": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 500, "stop_sequences": ["END"]}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let header_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();

    assert_eq!(body["provider"], "ollama");
    assert_eq!(
        body["model"], "qwen2.5:14b",
        "the routed model, not the default"
    );
    let sent = double.last_request();
    assert_eq!(sent["model"], "qwen2.5:14b");
    assert_eq!(sent["format"], "json");
    // Ollama is always asked to stream, even for a one-piece answer: that is what lets a
    // first-token timeout and an idle timeout bound the call (issue 12).
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["keep_alive"], "10m");
    assert_eq!(sent["options"]["temperature"], 0.8);
    assert_eq!(sent["options"]["top_p"], 0.95);
    assert_eq!(sent["options"]["num_predict"], 500);
    assert_eq!(sent["options"]["stop"], json!(["END"]));
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(sent["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("copywriter"));
    let user = sent["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("프로틴플러스 초코맛") && user.contains("30g 단백질"),
        "{user}"
    );
    assert!(
        user.contains("\"headline\""),
        "json mode asks for the task's shape: {user}"
    );

    let u = &body["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 10 && c > 0);
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);

    let out = &body["output"];
    assert_eq!(out["type"], "json");
    assert!(out["parsed"].is_object());
    assert_eq!(out["value"], out["parsed"]);
    let content: Value = serde_json::from_str(out["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, out["parsed"]);
    // The double follows the shape the prompt asked for: the contract's keys.
    for key in ["headline", "body", "features"] {
        assert!(out["parsed"].get(key).is_some(), "{key}: {out}");
    }
    assert_eq!(body["meta"]["schema_repaired"], false);

    let m = &body["meta"];
    assert_eq!(m["role"], "copywriter");
    assert_eq!(m["task"], "product_detail");
    assert_eq!(m["mode"], "json");
    assert_eq!(m["generator_mode"], "live");
    assert_eq!(m["request_id"], header_id.as_str());
    assert!(m["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(m["model_info"]["total_duration"], 5_321_400_000u64);
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    app.stop().await;
}

#[tokio::test]
async fn calls_reuse_their_upstream_connections() {
    // Opening a connection per call costs a handshake, a TIME_WAIT socket and, at c=64,
    // a third of the gateway's throughput (issue 18). Streamed and whole answers
    // alike hand their connection back once read to the end.
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let whole =
        json!({"role": "copywriter", "task": "product_detail", "payload": product_payload()});
    let streamed = json!({"role": "copywriter", "task": "sns", "mode": "chat", "payload": product_payload(), "options": {"stream": true}});
    assert_eq!(app.post_json(GENERATE, &whole).await.0, 200);
    let before = double.faults().connections_accepted();
    for _ in 0..10 {
        let (status, body) = app.post_json(GENERATE, &whole).await;
        assert_eq!(status, 200, "{body}");
        let (status, _, events) = post_sse(&app, GENERATE, &streamed).await;
        assert_eq!(status, 200);
        assert_eq!(events.last().unwrap().event, "done");
    }
    let opened = double.faults().connections_accepted() - before;
    // The probe's own requests may open one more.
    assert!(opened <= 1, "20 calls opened {opened} connections");
    app.stop().await;
}

#[tokio::test]
async fn design_shape_text_mode_aliases_and_doubled_prefix() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let (status, body) = app
        .post_json(
            "/api/v1/llm/llm/generate",
            &json!({
                "role": "brief_agent", "task": "marketing_brief", "mode": "chat",
                "input": {"brand": {"name": "프로틴플러스"}, "payload": {"product_name": "초코맛"}},
                "options": {"model": "llama3.2", "tone": "friendly"}, "request_id": "req-123"
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "llama3.2");
    assert_eq!(body["output"]["type"], "text");
    assert!(body["output"]["parsed"].is_null());
    assert_eq!(body["output"]["value"], body["output"]["content"]);
    assert!(body["output"]["value"]
        .as_str()
        .unwrap()
        .starts_with("Double answer from llama3.2"));
    assert_eq!(body["meta"]["request_id"], "req-123");
    assert_eq!(body["meta"]["role"], "brief");
    assert_eq!(body["meta"]["requested_role"], "brief_agent");
    assert_eq!(body["meta"]["mode"], "chat");
    let sent = double.last_request();
    assert!(sent.get("format").is_none(), "no JSON mode in chat: {sent}");
    let user = sent["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("초코맛") && user.contains("tone=friendly"),
        "{user}"
    );
    assert!(sent["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("marketing planner"));

    // The code's names: payload, mode text, override_model.
    let (status, body) = app
        .post_json(GENERATE, &json!({"role": "reviewer", "task": "review", "mode": "text", "payload": {"text": "hi"}, "override_model": "qwen2.5:14b"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["mode"], "text");
    assert_eq!(double.last_request()["model"], "qwen2.5:14b");

    for path in ["health", "models", "router/info"] {
        let (a, single) = app.get_json(&format!("/api/v1/llm/{path}")).await;
        let (b, doubled) = app.get_json(&format!("/api/v1/llm/llm/{path}")).await;
        assert_eq!((a, b), (200, 200), "{path}");
        assert_eq!(shape(&single, ""), shape(&doubled, ""), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let cases = [
        (json!({"task": "sns", "payload": {}}), "role"),
        (
            json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"temperature": "hot"}}),
            "options.temperature",
        ),
        (
            json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"max_tokens": 0}}),
            "options.max_tokens",
        ),
        (json!({"role": "copywriter", "task": "sns"}), "payload"),
        (
            json!({"role": "copywriter", "task": "sns", "payload": {}, "mode": "tools"}),
            "mode",
        ),
        (
            json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"provider": "openai"}}),
            "options.provider",
        ),
    ];
    for (req, field) in cases {
        let (status, body) = app.post_json(GENERATE, &req).await;
        assert_eq!(status, 400, "{req}: {body}");
        assert_error_body(&body, "VALIDATION_ERROR");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let r = app
        .client
        .post(app.url(GENERATE))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error_body(&r.json().await.unwrap(), "VALIDATION_ERROR");
    assert!(
        double.requests().is_empty(),
        "nothing invalid reaches the provider"
    );
    app.stop().await;
}

#[tokio::test]
async fn routing_precedence_decides_what_the_provider_receives() {
    let double = OllamaDouble::start().await;
    let lab = OllamaDouble::start_with(&["phi4:latest"], &[]).await;
    let extra = format!(
        "{}\n[[llm.routes]]\nname = \"chat copy\"\npriority = 1\nroles = [\"copywriter\"]\nmodes = [\"text\"]\nprovider = \"ollama\"\nmodel = \"qwen2.5:7b\"\n\
         [[llm.routes]]\nname = \"lab\"\npriority = 2\ntasks = [\"experiment\"]\nprovider = \"lab\"\n\
         [[llm.routes]]\nname = \"heavy\"\npriority = 10\ntasks = [\"heavy_reasoning\"]\nprovider = \"ollama\"\nmodel = \"mistral-small\"\n\
         [[llm.routes]]\nname = \"writers\"\npriority = 30\nroles = [\"strategist\", \"copywriter\"]\nprovider = \"ollama\"\nmodel = \"qwen2.5:14b\"\n",
        provider_toml("lab", &lab.base_url(), 5.0).replace("timeout_s = 5\n", "timeout_s = 5\ndefault_model = \"phi4\"\n")
    );
    let app = live_app(&double, &extra).await;
    let cases = [
        (
            json!({"role": "strategist", "task": "heavy_reasoning", "payload": {}}),
            "mistral-small",
            "heavy",
        ),
        (
            json!({"role": "copywriter", "task": "sns", "payload": {}}),
            "qwen2.5:14b",
            "writers",
        ),
        (
            json!({"role": "copywriter", "task": "sns", "mode": "chat", "payload": {}}),
            "qwen2.5:7b",
            "chat copy",
        ),
        (
            json!({"role": "nobody", "task": "whatever", "payload": {}}),
            "qwen2.5:7b",
            "default_route",
        ),
        (
            json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"model": "llama3.2"}}),
            "llama3.2",
            "request",
        ),
    ];
    for (req, model, route) in cases {
        let (status, body) = app.post_json(GENERATE, &req).await;
        assert_eq!(status, 200, "{req}: {body}");
        assert_eq!(double.last_request()["model"], model, "{req}");
        assert_eq!(body["model"], model);
        assert!(
            body["meta"]["route"].as_str().unwrap().contains(route),
            "{req}: {}",
            body["meta"]["route"]
        );
    }
    // A second Ollama container as its own provider; its default model.
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "x", "task": "experiment", "payload": {}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "lab");
    assert_eq!(lab.last_request()["model"], "phi4");
    // options.provider wins over every rule; the mock provider by route is explicit, not a fallback.
    let before = double.requests().len();
    let (status, body) = app
        .post_json(GENERATE, &json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"provider": "mock"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "mock");
    assert_eq!(body["meta"]["generator_mode"], "mock");
    assert_eq!(double.requests().len(), before);
    app.stop().await;
}

#[tokio::test]
async fn prompt_dir_files_override_the_built_in_templates() {
    let double = OllamaDouble::start().await;
    let prompts = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(prompts.path().join("task")).unwrap();
    std::fs::create_dir_all(prompts.path().join("system")).unwrap();
    std::fs::write(
        prompts.path().join("task/product_detail.j2"),
        "OVERRIDE {{ input.product_name }} {% if json %}as JSON{% endif %} features={{ input.features | length }}",
    )
    .unwrap();
    std::fs::write(
        prompts.path().join("system/copywriter.j2"),
        "SYS {{ role }}/{{ task }}",
    )
    .unwrap();
    let extra = format!("[llm]\nprompt_dir = {:?}\n", prompts.path());
    let app = live_app(&double, &extra).await;
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "copywriter", "task": "product_detail", "payload": product_payload()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = double.last_request();
    assert_eq!(
        sent["messages"][0]["content"],
        "SYS copywriter/product_detail"
    );
    assert_eq!(
        sent["messages"][1]["content"],
        "OVERRIDE 프로틴플러스 초코맛 as JSON features=3"
    );
    // Other templates stay built in.
    app.post_json(
        GENERATE,
        &json!({"role": "reviewer", "task": "sns", "payload": product_payload()}),
    )
    .await;
    let sent = double.last_request();
    assert!(sent["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("\"hashtags\""));
    let (_, info) = app.get_json("/api/v1/llm/router/info").await;
    let overridden = info["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "task/product_detail")
        .unwrap();
    assert!(overridden["source"]
        .as_str()
        .unwrap()
        .ends_with("product_detail.j2"));
    app.stop().await;
}

#[tokio::test]
async fn json_is_repaired_once_then_llm_invalid_json_carries_the_raw_text() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let req = json!({"role": "copywriter", "task": "product_detail", "payload": product_payload()});
    double.set(Behaviour::Content(
        "```json\n{\"headline\": \"초코맛\", \"body\": \"b\", \"features\": [\"a\",], \"cta\": \"구매\",}\n```".into(),
    ));
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"]["parsed"],
        json!({"headline": "초코맛", "body": "b", "features": ["a"], "cta": "구매"})
    );
    assert_eq!(body["meta"]["json_repaired"], true);
    assert!(body["output"]["content"]
        .as_str()
        .unwrap()
        .starts_with("```json"));

    let raw = "Sorry, I can only answer in prose today.";
    double.set(Behaviour::Content(raw.into()));
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 502, "{body}");
    assert_error_body(&body, "LLM_INVALID_JSON");
    assert_eq!(body["error"]["raw"], raw);
    assert_eq!(body["error"]["provider"], "ollama");
    assert_eq!(body["error"]["model"], "qwen2.5:14b");

    // Valid JSON that is not an object has no fields for the callers to read.
    double.set(Behaviour::Content("[\"headline\", \"body\"]".into()));
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 502, "{body}");
    assert_error_body(&body, "LLM_SCHEMA_MISMATCH");
    assert_eq!(body["error"]["raw"], "[\"headline\", \"body\"]");
    app.stop().await;
}

#[tokio::test]
async fn upstream_failures_map_to_codes_and_statuses() {
    let double = OllamaDouble::start().await;
    let app = live_app_at(&double.base_url(), 1.0, "").await;
    let req = |model: &str| json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"model": model}});

    let (status, body) = app.post_json(GENERATE, &req("nope:1b")).await;
    assert_eq!(status, 404, "{body}");
    assert_error_body(&body, "MODEL_NOT_FOUND");
    assert_eq!(body["error"]["model"], "nope:1b");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("try pulling it first"));

    double.set(Behaviour::Fail(500, "CUDA error: out of memory".into()));
    let (status, body) = app.post_json(GENERATE, &req("qwen2.5:7b")).await;
    assert_eq!(status, 502, "{body}");
    assert_error_body(&body, "PROVIDER_ERROR");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("CUDA error: out of memory"));
    assert_eq!(body["error"]["upstream_status"], 500);
    assert_eq!(body["error"]["provider"], "ollama");

    double.set(Behaviour::DropConnection);
    let (status, body) = app.post_json(GENERATE, &req("qwen2.5:7b")).await;
    assert_eq!(status, 502, "{body}");
    assert_error_body(&body, "PROVIDER_ERROR");

    double.set(Behaviour::Hang);
    let started = Instant::now();
    let (status, body) = app.post_json(GENERATE, &req("qwen2.5:7b")).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_error_body(&body, "LLM_TIMEOUT");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn closed_port_fails_fast_far_below_the_timeout() {
    let port = sparklio_testkit::free_port();
    let app = live_app_at(&format!("http://127.0.0.1:{port}"), 60.0, "").await;
    let started = Instant::now();
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "brief", "task": "marketing_brief", "payload": {}}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, "PROVIDER_UNAVAILABLE");
    assert_eq!(body["error"]["provider"], "ollama");
    assert_eq!(body["error"]["model"], "qwen2.5:7b");
    assert!(
        took < Duration::from_secs(3),
        "timeout is 60 s, took {took:?}"
    );
    // Streaming fails the same way, before any event.
    let (status, body) = app
        .post_json(GENERATE, &json!({"role": "brief", "task": "x", "mode": "chat", "payload": {}, "options": {"stream": true}}))
        .await;
    assert_eq!(status, 503, "{body}");
    let (_, health) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(health["gateway"], "unhealthy");
    assert_eq!(health["providers"]["ollama"]["reachable"], false);
    assert!(health["providers"]["ollama"]["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot connect"));
    app.stop().await;
}

#[tokio::test]
async fn supervisor_down_and_pause_answer_at_once() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let req = json!({"role": "brief", "task": "marketing_brief", "payload": {}});
    state(&app)
        .provider_board
        .mark_down("ollama", "service ollama-sparklio is stopped");
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, "PROVIDER_UNAVAILABLE");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ollama-sparklio is stopped"));
    let (_, health) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(
        health["providers"]["ollama"]["service_down"],
        "service ollama-sparklio is stopped"
    );
    assert!(
        double.requests().is_empty(),
        "a provider known down is not called"
    );

    state(&app).provider_board.mark_up("ollama");
    assert_eq!(app.post_json(GENERATE, &req).await.0, 200);

    state(&app).runtime.set_paused(true);
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 503);
    assert_error_body(&body, "GATEWAY_PAUSED");
    state(&app).runtime.set_paused(false);
    assert_eq!(app.post_json(GENERATE, &req).await.0, 200);
    assert_eq!(double.requests().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn streaming_sends_chunks_then_a_final_event_with_usage_and_meta() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let req = json!({"role": "copywriter", "task": "sns", "mode": "chat", "payload": product_payload(), "options": {"stream": true}});
    let (status, ct, events) = post_sse(&app, GENERATE, &req).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let chunks: Vec<&SseEvent> = events.iter().filter(|e| e.event == "chunk").collect();
    assert!(chunks.len() >= 3, "one event per upstream chunk");
    let joined: String = chunks
        .iter()
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["output"]["content"], joined.as_str());
    assert!(
        joined.starts_with("Double answer from qwen2.5:14b: "),
        "{joined}"
    );
    assert_eq!(double.last_request()["stream"], true);
    let u = &done.data["usage"];
    assert!(
        u["prompt_tokens"].as_u64().unwrap() > 0 && u["completion_tokens"].as_u64().unwrap() > 0
    );
    assert_eq!(done.data["meta"]["generator_mode"], "live");

    // The final event has exactly the non-streaming answer's shape.
    let mut plain = req.clone();
    plain["options"]["stream"] = json!(false);
    let (_, answer) = app.post_json(GENERATE, &plain).await;
    assert_eq!(shape(&done.data, ""), shape(&answer, ""));

    // Failures before the first byte keep their HTTP status; mid-stream ones become an error event.
    let mut unknown = req.clone();
    unknown["options"]["model"] = json!("nope:1b");
    let (status, body) = app.post_json(GENERATE, &unknown).await;
    assert_eq!(status, 404);
    assert_error_body(&body, "MODEL_NOT_FOUND");
    double.set(Behaviour::DropConnection);
    let (_, _, events) = post_sse(&app, GENERATE, &req).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_error_body(&last.data, "PROVIDER_ERROR");
    // json mode does not stream.
    let (status, body) = app
        .post_json(GENERATE, &json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"stream": true}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "options.stream");

    // Streams are logged like any request: the finished one with its tokens, the cut one as an error.
    let rows = state(&app)
        .store
        .recent_usage(UsageQuery {
            limit: Some(50),
            kind: Some("llm".into()),
        })
        .await
        .unwrap();
    let done_id = done.data["meta"]["request_id"].as_str().unwrap();
    let streamed = rows
        .iter()
        .find(|r| r.request_id == done_id)
        .expect("row for the stream");
    assert_eq!(
        (streamed.status, streamed.mode.as_deref()),
        (200, Some("chat"))
    );
    assert_eq!(
        streamed.total_tokens,
        done.data["usage"]["total_tokens"].as_i64()
    );
    let cut_id = last.data["error"]["request_id"].as_str().unwrap();
    let cut = rows
        .iter()
        .find(|r| r.request_id == cut_id)
        .expect("row for the cut stream");
    assert_eq!(
        (cut.status, cut.error_code.as_deref()),
        (502, Some("PROVIDER_ERROR"))
    );
    app.stop().await;
}

#[tokio::test]
async fn mock_mode_is_offline_deterministic_and_realistic() {
    let double = OllamaDouble::start().await;
    let app = mock_app(&double).await;
    let pairs: [(&str, &str, &[&str]); 11] = [
        ("brand", "brand_summary", &["brand_summary", "brand_voice"]),
        (
            "brand_agent",
            "brand_kit",
            &["brand_identity", "positioning"],
        ),
        (
            "brief",
            "marketing_brief",
            &["target", "positioning", "key_messages"],
        ),
        ("strategist", "content_plan", &["sections"]),
        (
            "copywriter",
            "product_detail",
            &["headline", "body", "features"],
        ),
        (
            "copywriter",
            "sns",
            &["platform", "caption", "hashtags", "call_to_action"],
        ),
        (
            "strategist",
            "campaign",
            &[
                "campaign_name",
                "objective",
                "duration",
                "budget_allocation",
            ],
        ),
        (
            "vision_generator",
            "image_prompt",
            &["prompt", "negative_prompt"],
        ),
        (
            "reviewer",
            "style_check",
            &["overall_score", "tone_match", "warnings"],
        ),
        (
            "reviewer",
            "content_review",
            &[
                "overall_score",
                "strengths",
                "weaknesses",
                "improvements",
                "detailed_feedback",
            ],
        ),
        (
            "editor",
            "unheard_of_task",
            &["role", "task", "result", "status"],
        ),
    ];
    for (role, task, keys) in pairs {
        let req = json!({"role": role, "task": task, "payload": product_payload()});
        let (status, a) = app.post_json(GENERATE, &req).await;
        assert_eq!(status, 200, "{role}/{task}: {a}");
        assert_eq!(a["provider"], "mock");
        assert_eq!(a["meta"]["generator_mode"], "mock");
        let parsed = &a["output"]["parsed"];
        for k in keys {
            assert!(
                parsed.get(*k).is_some(),
                "{role}/{task} lacks {k}: {parsed}"
            );
        }
        let u = &a["usage"];
        assert!(
            u["prompt_tokens"].as_u64().unwrap() >= 20,
            "{role}/{task}: {u}"
        );
        assert!(u["completion_tokens"].as_u64().unwrap() >= 5);
        let (_, b) = app.post_json(GENERATE, &req).await;
        assert_eq!(a["output"], b["output"], "{role}/{task} deterministic");
        assert_eq!(a["usage"], b["usage"]);
    }
    let (_, detail) = app
        .post_json(
            GENERATE,
            &json!({"role": "copywriter", "task": "product_detail", "payload": product_payload()}),
        )
        .await;
    let parsed = &detail["output"]["parsed"];
    assert!(
        parsed["headline"]
            .as_str()
            .unwrap()
            .contains("프로틴플러스 초코맛"),
        "{parsed}"
    );
    assert_eq!(
        parsed["features"],
        json!(["30g 단백질", "저당", "간편한 쉐이크"])
    );
    assert_eq!(
        detail["model"], "qwen2.5:14b",
        "mock reports the routed model"
    );
    let (_, sections) = app
        .post_json(
            GENERATE,
            &json!({"role": "strategist", "task": "content_plan", "payload": product_payload()}),
        )
        .await;
    let first = &sections["output"]["parsed"]["sections"][0];
    assert!(first["id"].is_string() && first["type"] == "hero" && first["title"].is_string());
    let (_, other) = app
        .post_json(GENERATE, &json!({"role": "copywriter", "task": "product_detail", "payload": {"product_name": "진정 토너"}}))
        .await;
    assert!(other["output"]["parsed"]["headline"]
        .as_str()
        .unwrap()
        .contains("진정 토너"));
    let (_, text) = app
        .post_json(GENERATE, &json!({"role": "copywriter", "task": "sns", "mode": "text", "payload": {"prompt": "지성 피부용 진정 토너"}}))
        .await;
    assert!(text["output"]["value"]
        .as_str()
        .unwrap()
        .contains("지성 피부용 진정 토너"));
    // Mock streaming works and ends with the same final shape.
    let (status, _, events) = post_sse(
        &app,
        GENERATE,
        &json!({"role": "copywriter", "task": "sns", "mode": "chat", "payload": product_payload(), "options": {"stream": true}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap().event, "done");
    assert!(
        double.requests().is_empty(),
        "mock mode never touches the network"
    );
    let (_, models) = app.get_json("/api/v1/llm/models").await;
    assert!(models["models"][0]["installed"].is_null(), "{models}");
    assert!(double.requests().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn mock_answers_have_the_live_shape() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    for mode in ["json", "text", "chat"] {
        let req = json!({"role": "copywriter", "task": "product_detail", "mode": mode, "payload": product_payload()});
        let (s1, live) = app.post_json(GENERATE, &req).await;
        let mut mock_req = req.clone();
        mock_req["options"] = json!({"mock": true});
        let before = double.requests().len();
        let (s2, mock) = app.post_json(GENERATE, &mock_req).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(
            double.requests().len(),
            before,
            "options.mock stays offline"
        );
        assert_eq!(live["meta"]["generator_mode"], "live");
        assert_eq!(mock["meta"]["generator_mode"], "mock");
        assert_eq!(
            shape(&live, ""),
            shape(&mock, ""),
            "{mode}\nlive {live}\nmock {mock}"
        );
        // Keys that only a live answer's accidents fill (a repair, a fallback) are there
        // in every answer, empty.
        for key in ["contract", "normalised", "fallback_from", "attempts"] {
            assert!(mock["meta"].get(key).is_some(), "{mode}: {key} in {mock}");
        }
        assert_eq!(mock["meta"]["attempts"], json!([]));
    }
    app.stop().await;
}

#[tokio::test]
async fn usage_rows_and_metrics_after_a_mix_of_requests() {
    let double = OllamaDouble::start().await;
    let key = "gateway-key-0123456789abcdef";
    let extra = format!("[server]\napi_keys = [\"{key}\"]\n");
    let app = live_app(&double, &extra).await;
    let ok = json!({"role": "copywriter", "task": "product_detail", "payload": product_payload(), "request_id": "mix-ok-1"});
    assert_eq!(app.post_json(GENERATE, &ok).await.0, 200);
    let lan = TestApp::client_from("127.0.0.5");
    let r = lan
        .post(app.url(GENERATE))
        .bearer_auth(key)
        .json(&json!({"role": "copywriter", "task": "product_detail", "payload": {}, "request_id": "mix-ok-lan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = app.post_json(GENERATE, &json!({"role": "copywriter", "task": "product_detail", "payload": {}, "options": {"model": "nope:1b"}, "request_id": "mix-404"})).await;
    assert_eq!(s, 404);
    let (s, bad) = app
        .post_json(GENERATE, &json!({"task": "x", "payload": {}}))
        .await;
    assert_eq!(s, 400);
    let (s, _) = app.post_json(GENERATE, &json!({"role": "brief", "task": "marketing_brief", "payload": {}, "options": {"mock": true}, "request_id": "mix-mock"})).await;
    assert_eq!(s, 200);

    let rows = state(&app)
        .store
        .recent_usage(UsageQuery {
            limit: Some(50),
            kind: Some("llm".into()),
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 5, "{rows:#?}");
    let find = |id: &str| {
        rows.iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("row {id}"))
    };
    let r = find("mix-ok-1");
    assert_eq!((r.status, r.error_code.as_deref()), (200, None));
    assert_eq!(r.client, "127.0.0.1");
    assert_eq!(r.key_id, None);
    assert_eq!(
        (r.role.as_deref(), r.task.as_deref(), r.mode.as_deref()),
        (Some("copywriter"), Some("product_detail"), Some("json"))
    );
    assert_eq!(
        (r.provider.as_deref(), r.model.as_deref()),
        (Some("ollama"), Some("qwen2.5:14b"))
    );
    assert!(
        r.total_tokens.unwrap() > 0
            && r.total_tokens == Some(r.prompt_tokens.unwrap() + r.completion_tokens.unwrap())
    );
    let r = find("mix-ok-lan");
    assert_eq!(r.client, "127.0.0.5");
    let key_id = r.key_id.clone().expect("key id");
    assert_eq!(key_id.len(), 12);
    assert!(!key.contains(&key_id), "never the key itself");
    let r = find("mix-404");
    assert_eq!(
        (r.status, r.error_code.as_deref(), r.model.as_deref()),
        (404, Some("MODEL_NOT_FOUND"), Some("nope:1b"))
    );
    assert_eq!(r.total_tokens, None);
    let r = find(bad["error"]["request_id"].as_str().unwrap());
    assert_eq!(
        (r.status, r.error_code.as_deref(), r.role.as_deref()),
        (400, Some("VALIDATION_ERROR"), None)
    );
    let r = find("mix-mock");
    assert_eq!(
        (r.provider.as_deref(), r.model.as_deref()),
        (Some("mock"), Some("qwen2.5:7b"))
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
    for line in [
        r#"llm_gateway_requests_total{provider="ollama",model="qwen2.5:14b",role="copywriter",task="product_detail",status="success"} 2"#,
        // A model name no configuration or provider knows is not a label value (issue 11).
        r#"llm_gateway_requests_total{provider="ollama",model="other",role="copywriter",task="product_detail",status="error"} 1"#,
        r#"llm_gateway_requests_total{provider="mock",model="qwen2.5:7b",role="brief",task="marketing_brief",status="success"} 1"#,
        r#"llm_gateway_errors_total{provider="ollama",code="MODEL_NOT_FOUND"} 1"#,
        r#"llm_gateway_errors_total{provider="none",code="VALIDATION_ERROR"} 1"#,
        r#"llm_gateway_latency_ms_count{provider="ollama",model="qwen2.5:14b"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}\n{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn health_models_and_router_info_report_the_real_state() {
    let double = OllamaDouble::start().await;
    let extra = "[[llm.routes]]\nname = \"big\"\npriority = 5\ntasks = [\"campaign\"]\nprovider = \"ollama\"\nmodel = \"qwen2.5:32b\"\n\
                 [[llm.routes]]\nname = \"writers\"\npriority = 30\nroles = [\"copywriter\"]\nprovider = \"ollama\"\nmodel = \"qwen2.5:14b\"\n\
                 [[llm.routes]]\nname = \"light\"\npriority = 20\ntasks = [\"tagging\"]\nprovider = \"ollama\"\nmodel = \"llama3.2\"\n";
    let app = live_app(&double, extra).await;
    let (status, h) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(status, 200);
    assert_eq!(h["gateway"], "healthy");
    assert_eq!(h["mode"], "live");
    let o = &h["providers"]["ollama"];
    assert_eq!(o["status"], "healthy");
    assert_eq!(o["reachable"], true);
    assert_eq!(o["version"], "0.5.7");
    assert_eq!(o["default_model"], "qwen2.5:7b");
    assert!(o["latency_ms"].as_f64().is_some());
    assert!(o["last_error"].is_null());
    assert_eq!(h["providers"]["mock"]["status"], "healthy");
    assert!(double.requests().is_empty(), "health never generates");

    let (_, m) = app.get_json("/api/v1/llm/models").await;
    let entry = |name: &str| {
        m["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["model"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {m}"))
    };
    assert_eq!(
        entry("qwen2.5:32b")["installed"],
        false,
        "a routed model that is not pulled"
    );
    assert_eq!(entry("qwen2.5:14b")["installed"], true);
    assert_eq!(
        entry("llama3.2")["installed"],
        true,
        "llama3.2 is llama3.2:latest"
    );
    assert_eq!(entry("qwen2.5:7b")["loaded"], true);
    assert_eq!(entry("qwen2.5:14b")["loaded"], false);
    assert_eq!(entry("mistral-small:latest")["routed"], false);
    assert_eq!(m["default_provider"], "ollama");
    assert_eq!(m["total"], m["models"].as_array().unwrap().len());

    let (_, info) = app.get_json("/api/v1/llm/router/info").await;
    let names: Vec<&str> = info["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big", "light", "writers"], "sorted by priority");
    assert_eq!(info["default_route"]["model"], "qwen2.5:7b");
    assert_eq!(info["role_aliases"]["brief_agent"], "brief");
    assert_eq!(info["providers"]["ollama"]["kind"], "ollama");
    app.stop().await;
}

#[tokio::test]
async fn every_mock_answer_satisfies_its_role_contract() {
    let double = OllamaDouble::start().await;
    let app = mock_app(&double).await;
    let mut checked = 0;
    for c in sparklio_core::contracts::contracts() {
        let role = if c.role == "*" { "editor" } else { &c.role };
        let req = json!({"role": role, "task": c.task, "payload": product_payload()});
        let (status, a) = app.post_json(GENERATE, &req).await;
        assert_eq!(status, 200, "{role}/{}: {a}", c.task);
        let v = c.violations(&a["output"]["parsed"]);
        assert!(
            v.is_empty(),
            "{role}/{}: {v:?} in {}",
            c.task,
            a["output"]["parsed"]
        );
        assert_eq!(a["meta"]["schema_repaired"], false);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} contracts");
    assert!(
        double.requests().is_empty(),
        "mock mode touched the network"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_contract_violation_gets_one_repair_round_trip_then_llm_schema_mismatch() {
    let double = OllamaDouble::start().await;
    let app = live_app(&double, "").await;
    let req = json!({"role": "strategist", "task": "content_plan", "payload": product_payload()});
    let bad = r#"{"sections": [{"id": "hero", "type": "hero"}]}"#;
    let good = r#"{"sections": [{"id": "hero", "type": "hero", "title": "초코맛"}]}"#;

    // Bad, then good: repaired, and the model was told what was wrong.
    double.set(Behaviour::Sequence(vec![bad.into(), good.into()]));
    let before = double.requests().len();
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["schema_repaired"], true);
    assert_eq!(body["output"]["parsed"]["sections"][0]["title"], "초코맛");
    let sent = &double.requests()[before + 1];
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs[msgs.len() - 2]["role"], "assistant");
    assert_eq!(msgs[msgs.len() - 2]["content"], bad);
    let told = msgs[msgs.len() - 1]["content"].as_str().unwrap();
    assert!(
        told.contains("/sections/0") && told.contains("title"),
        "{told}"
    );
    // Both round-trips count in the usage.
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 20);

    // Bad twice: LLM_SCHEMA_MISMATCH listing the violations, with the raw answer.
    double.set(Behaviour::Sequence(vec![bad.into(), bad.into()]));
    let before = double.requests().len();
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 502, "{body}");
    assert_error_body(&body, "LLM_SCHEMA_MISMATCH");
    assert_eq!(body["error"]["raw"], bad);
    let violations = body["error"]["violations"].as_array().unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.as_str().unwrap().contains("title")),
        "{body}"
    );
    assert_eq!(
        double.requests().len(),
        before + 2,
        "exactly one repair round-trip"
    );
    app.stop().await;
}

#[tokio::test]
async fn schemas_are_published() {
    let double = OllamaDouble::start().await;
    let app = mock_app(&double).await;
    for path in ["/api/v1/llm/schemas", "/api/v1/llm/llm/schemas"] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 200);
        let list = body["schemas"].as_array().unwrap();
        let plan = list
            .iter()
            .find(|s| s["role"] == "strategist" && s["task"] == "content_plan")
            .unwrap();
        assert_eq!(plan["schema"]["required"], json!(["sections"]));
        assert!(plan["shape"].as_str().unwrap().contains("\"sections\""));
        assert_eq!(body["total"].as_u64().unwrap() as usize, list.len());
    }
    app.stop().await;
}

#[tokio::test]
async fn usage_rows_carry_the_estimated_cost_from_the_provider_prices() {
    let double = OllamaDouble::start().await;
    // Appended right after [llm.providers.ollama]: these keys belong to it.
    let prices = "cost_per_1k_prompt_tokens = 0.5\ncost_per_1k_completion_tokens = 1.5\n";
    let app = live_app(&double, prices).await;
    let req = json!({"role": "copywriter", "task": "product_detail", "payload": product_payload(), "request_id": "priced"});
    let (s, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(s, 200, "{body}");
    let mock = json!({"role": "brief", "task": "marketing_brief", "payload": {}, "options": {"mock": true}, "request_id": "free"});
    assert_eq!(app.post_json(GENERATE, &mock).await.0, 200);

    let rows = state(&app)
        .store
        .recent_usage(UsageQuery {
            limit: Some(10),
            kind: None,
        })
        .await
        .unwrap();
    let priced = rows.iter().find(|r| r.request_id == "priced").unwrap();
    let (p, c) = (
        priced.prompt_tokens.unwrap() as f64,
        priced.completion_tokens.unwrap() as f64,
    );
    let expected = (p * 0.5 + c * 1.5) / 1000.0;
    assert!(
        (priced.estimated_cost_usd.unwrap() - expected).abs() < 1e-12,
        "{priced:?}"
    );
    let free = rows.iter().find(|r| r.request_id == "free").unwrap();
    assert_eq!(
        free.estimated_cost_usd,
        Some(0.0),
        "mock answers cost nothing"
    );

    let (_, summary) = app.get_json("/api/v1/usage/summary").await;
    let total = summary["summary"]["estimated_cost_usd"].as_f64().unwrap();
    assert!((total - expected).abs() < 1e-12, "{summary}");
    app.stop().await;
}
