//! The OpenAI-compatible front (`/v1/*`) against a real server: mock mode answers with
//! the live shape, aliases route, usage rows name the front, errors take OpenAI's shape.
//! The official `openai` package drives it against the doubles in
//! `clients/python/tests/test_sdk_fronts.py`.

use serde_json::{json, Value};
use sparklio_core::store::UsageQuery;
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::TestApp;

#[tokio::test]
async fn mock_mode_answers_chat_models_and_embeddings_in_openais_shape() {
    let app = TestApp::start_with(
        "[fronts.openai.models]\n\"gpt-4o-mini\" = { provider = \"ollama\", model = \"qwen2.5:7b\" }\n",
        &[("GENERATOR_MODE", "mock")],
        Default::default(),
    )
    .await;
    let (status, models) = app.get_json("/v1/models").await;
    assert_eq!(status, 200, "{models}");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt-4o-mini"), "{models}");
    assert_eq!(models["object"], "list");

    let (status, done) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "루미 이어폰 소개"}]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["object"], "chat.completion");
    assert_eq!(done["model"], "gpt-4o-mini");
    let content = done["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty());
    let usage = &done["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    // Streamed: SSE chunks, a finish reason, the usage chunk, [DONE].
    let text = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "스트림"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*data.last().unwrap(), "[DONE]", "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (status, e) = app
        .post_json(
            "/v1/embeddings",
            &json!({"model": "gpt-4o-mini", "input": ["a", "a", "b"], "encoding_format": "float"}),
        )
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(
        e["data"][0]["embedding"], e["data"][1]["embedding"],
        "same text, same vector"
    );
    assert_ne!(e["data"][0]["embedding"], e["data"][2]["embedding"]);

    // Errors: OpenAI's shape, the offending parameter named.
    let (status, err) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [], "n": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["param"], "messages");
    let (status, err) = app.get_json("/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["type"], "not_found_error", "{err}");

    let rows = app
        .app
        .as_ref()
        .unwrap()
        .state
        .store
        .recent_usage(UsageQuery {
            limit: Some(20),
            kind: Some("llm".into()),
        })
        .await
        .unwrap();
    assert!(rows
        .iter()
        .any(|r| r.role.as_deref() == Some("front:openai")
            && r.task.as_deref() == Some("chat_completions")
            && r.status == 200
            && r.total_tokens.unwrap_or(0) > 0));
    app.stop().await;
}

#[tokio::test]
async fn live_chat_goes_to_the_aliased_model_with_the_requests_sampling() {
    let double = OllamaDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n[fronts.openai.models]\n\"gpt-4o-mini\" = {{ provider = \"ollama\", model = \"qwen2.5:14b\" }}\n",
        double.base_url()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let (status, done) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 64, "stop": "END",
                    "response_format": {"type": "json_object"},
                    "messages": [{"role": "developer", "content": "JSON only"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let sent = double.last_request();
    assert_eq!(sent["model"], "qwen2.5:14b");
    assert_eq!(sent["format"], "json");
    assert_eq!(sent["options"]["temperature"], 0.2);
    assert_eq!(sent["options"]["num_predict"], 64);
    assert_eq!(sent["options"]["stop"], json!(["END"]));
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "hi");
    // An unknown model is OpenAI's 404.
    let (status, err) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "model_not_found");
    app.stop().await;
}

#[tokio::test]
async fn tools_round_trip_through_ollamas_tool_calls() {
    let double = OllamaDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        double.base_url()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let tools = json!([{"type": "function", "function": {"name": "get_stock", "description": "Stock of a product",
        "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}]);
    let (status, done) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "qwen2.5:7b", "tools": tools,
                    "messages": [{"role": "user", "content": "루미 재고?"}]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let choice = &done["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_stock");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["sku"].is_string(), "{args}");
    assert_eq!(double.last_request()["tools"], tools);

    // The tool's result goes back; the model answers from it.
    let id = call["id"].as_str().unwrap();
    let (status, done) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "qwen2.5:7b", "tools": tools, "messages": [
                {"role": "user", "content": "루미 재고?"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": id, "content": "재고 42개"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["choices"][0]["finish_reason"], "stop");
    assert!(done["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("재고 42개"));
    let sent = double.last_request();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
        args
    );
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["messages"][2]["tool_name"], "get_stock");

    // tool_choice "none": no tools reach the model.
    let (status, done) = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "qwen2.5:7b", "tools": tools, "tool_choice": "none",
                    "messages": [{"role": "user", "content": "그냥 답해"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(done["choices"][0]["finish_reason"], "stop");
    assert!(double.last_request().get("tools").is_none());
    app.stop().await;
}
