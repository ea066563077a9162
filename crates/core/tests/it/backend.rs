//! What the team's backend and tooling call (issue 13): `/health`, `/api/v1/debug/settings`,
//! `/api/v1/llm/chat` and a prompt-only generate body.

use serde_json::{json, Value};
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::TestApp;

async fn live(double: &OllamaDouble) -> TestApp {
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 5\ndefault_model = \"qwen2.5:7b\"\n\
         [media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"http://desk:s3cret@127.0.0.1:9/?token=abc\"\n",
        double.base_url()
    );
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

#[tokio::test]
async fn health_is_public_and_says_the_overall_level() {
    let app = TestApp::start("").await;
    let (status, body) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["level"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    // Public: a LAN client without a key gets it, as it gets /healthz.
    let locked = TestApp::start(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"sk-backend-0123456789abcdef\"]\n",
    )
    .await;
    let stranger = TestApp::client_from("127.0.0.5");
    let r = stranger.get(locked.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = stranger
        .get(locked.url("/api/v1/debug/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "settings are for key holders");
    app.stop().await;
    locked.stop().await;
}

#[tokio::test]
async fn health_turns_degraded_when_a_supervised_service_is_down() {
    let svc = sparklio_testkit::ServiceToml::new("ollama-main", sparklio_testkit::free_port())
        .args(&["--exit-after-ms", "100", "--exit-code", "3"])
        .backoff(60_000, 60_000);
    let app = TestApp::start(&svc.to_string()).await;
    let mut body = Value::Null;
    for _ in 0..100 {
        body = app.get_json("/health").await.1;
        if body["status"] != "healthy" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_ne!(body["status"], "healthy", "{body}");
    assert!(
        body["summary"].as_str().unwrap().contains("ollama-main"),
        "{body}"
    );
    app.stop().await;
}

/// A service crashing every few hundred milliseconds and restarted at once is never
/// "healthy" between its crashes (it read "all services up" much of the time).
#[tokio::test]
async fn health_stays_degraded_while_a_service_keeps_crashing() {
    let svc = sparklio_testkit::ServiceToml::new("flaky", sparklio_testkit::free_port())
        .args(&["--exit-after-ms", "700", "--exit-code", "3"])
        .backoff(100, 100)
        .line("crash_loop = { restarts = 1000, within_s = 10 }");
    let app = TestApp::start(&svc.to_string()).await;
    // Wait for the first crash, then sample for 3 s: every sample is degraded or worse.
    let mut crashed = false;
    for _ in 0..100 {
        let (_, s) = app.get_json("/api/v1/services").await;
        if s["services"][0]["restarts"].as_u64().unwrap_or(0) > 0 {
            crashed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(crashed, "the service never crashed");
    let mut healthy = 0;
    for _ in 0..60 {
        if app.get_json("/health").await.1["status"] == "healthy" {
            healthy += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(healthy, 0, "read healthy between crashes");
    app.stop().await;
}

/// In live mode the providers' reach counts: with no service supervised, an Ollama
/// refusing connections left `/health` saying "healthy" (what the team's checks read).
#[tokio::test]
async fn health_counts_a_live_provider_out_of_reach() {
    use sparklio_testkit::fault::Fault;
    let ollama = OllamaDouble::start().await;
    let comfy = sparklio_testkit::comfyui::ComfyDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n\
         [llm.providers.ollama.resilience]\nprobe_interval_ms = 100\n\
         [media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\n",
        ollama.base_url(),
        comfy.url()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let health_until = |want: &'static str| {
        let app = &app;
        async move {
            let mut body = Value::Null;
            for _ in 0..100 {
                body = app.get_json("/health").await.1;
                if body["status"] == want {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            body
        }
    };
    let body = health_until("healthy").await;
    assert_eq!(body["status"], "healthy", "{body}");

    ollama.set_fault(Fault::Refuse).await;
    let body = health_until("unhealthy").await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .starts_with("ollama (LLM) unreachable"),
        "{body}"
    );
    // Public: no address or error text in it (those are the gateway-scope llm health's).
    assert!(
        !body["summary"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    let (_, status) = app.get_json("/api/v1/status").await;
    assert_eq!(status["health"]["level"], "down", "{status}");

    ollama.clear_fault().await;
    let body = health_until("healthy").await;
    assert_eq!(body["status"], "healthy", "{body}");
    // Mock mode needs no provider: the same outage is no fault there.
    ollama.set_fault(Fault::Refuse).await;
    let mock = TestApp::start_with(&toml, &[("GENERATOR_MODE", "mock")], Default::default()).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(mock.get_json("/health").await.1["status"], "healthy");
    ollama.clear_fault().await;
    mock.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn debug_settings_show_the_effective_mode_and_redacted_urls() {
    let app = TestApp::start("").await;
    let (status, body) = app.get_json("/api/v1/debug/settings").await;
    assert_eq!(status, 200);
    assert_eq!(body["generator_mode"], "mock", "{body}");

    let double = OllamaDouble::start().await;
    let app2 = live(&double).await;
    let (_, body) = app2.get_json("/api/v1/debug/settings").await;
    assert_eq!(body["generator_mode"], "live");
    assert_eq!(
        body["ollama_base_url"],
        double.base_url().trim_end_matches('/')
    );
    assert_eq!(body["ollama_default_model"], "qwen2.5:7b");
    assert_eq!(body["ollama_timeout"], 5.0);
    assert_eq!(
        body["comfyui_base_url"],
        "http://desk:redacted@127.0.0.1:9/?redacted"
    );
    assert!(!body.to_string().contains("s3cret"), "{body}");
    assert!(!body.to_string().contains("abc"), "{body}");
    app.stop().await;
    app2.stop().await;
}

#[tokio::test]
async fn chat_takes_messages_and_answers_like_generate() {
    let app = TestApp::start("").await;
    let r = app
        .client
        .post(app.url("/api/v1/llm/chat"))
        .json(&json!({"messages": [{"role": "user", "content": "무선 이어폰 광고 문구 하나"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["output"]["type"], "text", "{body}");
    assert!(!body["output"]["value"].as_str().unwrap().is_empty());
    assert_eq!(body["meta"]["role"], "assistant");
    assert_eq!(body["meta"]["task"], "chat");

    // Live: the conversation reaches the model in order, after the Desk's system prompt.
    let double = OllamaDouble::start().await;
    let live_app = live(&double).await;
    let r = live_app
        .client
        .post(live_app.url("/api/v1/llm/chat"))
        .json(&json!({"model": "llama3.2", "messages": [
            {"role": "system", "content": "짧게 답하세요"},
            {"role": "user", "content": "안녕"},
            {"role": "assistant", "content": "안녕하세요"},
            {"role": "user", "content": "이어폰 추천"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "llama3.2");
    let sent = double.last_request();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "system", "user", "assistant", "user"],
        "{sent}"
    );
    assert_eq!(sent["messages"][4]["content"], "이어폰 추천");

    // Bad input: the standard error, naming the field.
    for (bad, field) in [
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
    ] {
        let r = app
            .client
            .post(app.url("/api/v1/llm/chat"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "VALIDATION_ERROR", "{e}");
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    app.stop().await;
    live_app.stop().await;
}

#[tokio::test]
async fn a_prompt_alone_is_a_chat_with_the_assistant() {
    let app = TestApp::start("").await;
    let r = app
        .client
        .post(app.url("/api/v1/llm/generate"))
        .json(&json!({"prompt": "텀블러 홍보 문구를 써 줘"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["meta"]["role"], "assistant", "{body}");
    assert_eq!(body["meta"]["task"], "chat");
    assert_eq!(body["output"]["type"], "text");

    let double = OllamaDouble::start().await;
    let live_app = live(&double).await;
    let r = live_app
        .client
        .post(live_app.url("/api/v1/llm/generate"))
        .json(&json!({"prompt": "텀블러 홍보 문구를 써 줘"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = double.last_request();
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"], "텀블러 홍보 문구를 써 줘", "{sent}");
    // Still a 400 when there is nothing at all to answer.
    let r = app
        .client
        .post(app.url("/api/v1/llm/generate"))
        .json(&json!({"role": "copywriter"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
    live_app.stop().await;
}

#[tokio::test]
async fn media_health_says_available_beside_status() {
    let app = TestApp::start("").await;
    let (_, body) = app.get_json("/api/v1/media/health").await;
    assert_eq!(body["providers"]["mock"]["status"], "healthy", "{body}");
    assert_eq!(body["providers"]["mock"]["available"], true);
    // Live, with ComfyUI refusing connections: not available, and said at once.
    let dead = sparklio_testkit::free_port();
    let live = TestApp::start_with(
        &format!("[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:{dead}\"\n"),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await;
    let (_, body) = live.get_json("/api/v1/media/health").await;
    assert_ne!(body["providers"]["comfyui"]["status"], "healthy", "{body}");
    assert_eq!(body["providers"]["comfyui"]["available"], false, "{body}");
    app.stop().await;
    live.stop().await;
}

const BACKEND_KEY: &str = "sk-backend-0123456789abcdef";
const VIEWER_KEY: &str = "sk-viewer-0123456789abcdef0";

#[tokio::test]
async fn media_data_is_a_url_or_base64_by_config_key_and_request() {
    let toml = format!(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\n\
         [[server.keys]]\nname = \"backend\"\nkey = \"{BACKEND_KEY}\"\nmedia_return = \"base64\"\n\
         [[server.keys]]\nname = \"viewer\"\nkey = \"{VIEWER_KEY}\"\n\
         [media]\ndefault_return = \"url\"\n"
    );
    let app = TestApp::start(&toml).await;
    let lan = TestApp::client_from("127.0.0.5");
    let image = |key: &'static str, options: Value| {
        let req = lan
            .post(app.url("/api/v1/media/image/generate"))
            .bearer_auth(key)
            .json(
                &json!({"prompt": "a thermos", "task": "product_image", "media_type": "image",
                          "options": options}),
            );
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            body["outputs"][0].clone()
        }
    };
    let is_png_base64 = |out: &Value| out["data"].as_str().unwrap().starts_with("iVBOR");
    let backend = image(BACKEND_KEY, json!({"width": 64, "height": 64})).await;
    assert!(is_png_base64(&backend), "the key says base64: {backend}");
    assert_eq!(backend["encoding"], "base64");
    let viewer = image(VIEWER_KEY, json!({"width": 64, "height": 64})).await;
    assert!(
        viewer["data"]
            .as_str()
            .unwrap()
            .contains("/api/v1/media/files/"),
        "the config says url: {viewer}"
    );
    // The request's own options.return wins over the key.
    let asked = image(
        BACKEND_KEY,
        json!({"width": 64, "height": 64, "return": "url"}),
    )
    .await;
    assert_eq!(asked["encoding"], "url", "{asked}");
    app.stop().await;

    // The config default alone.
    let app = TestApp::start("[media]\ndefault_return = \"base64\"\n").await;
    let r: Value = app
        .client
        .post(app.url("/api/v1/media/image/generate"))
        .json(&json!({"prompt": "a thermos", "options": {"width": 64, "height": 64}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(is_png_base64(&r["outputs"][0]), "{r}");
    app.stop().await;
    // And a wrong value is a config problem naming the key.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[media]\ndefault_return = \"png\"\n").unwrap();
    let problems = sparklio_core::load_config(&sparklio_core::config::ConfigInput {
        config_flag: Some(file),
        ..Default::default()
    });
    let Err(problems) = problems else {
        panic!("a bad media.default_return was accepted")
    };
    let text = format!("{problems:?}");
    assert!(text.contains("media.default_return"), "{text}");
}
