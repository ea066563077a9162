//! The Ollama double's routes, as Ollama's API documentation describes them.

use serde_json::{json, Value};
use sparklio_testkit::OllamaDouble;

async fn call(double: &OllamaDouble, method: &str, path: &str, body: Value) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", double.base_url());
    let request = match method {
        "GET" => client.get(url),
        "DELETE" => client.delete(url).json(&body),
        _ => client.post(url).json(&body),
    };
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines().map(json_of).collect()
}

#[tokio::test]
async fn generate_answers_whole_or_as_ndjson_with_the_final_counts() {
    let double = OllamaDouble::start().await;
    let (status, text) = call(
        &double,
        "POST",
        "/api/generate",
        json!({"model": "qwen2.5:7b", "prompt": "Why is the sky blue?", "stream": false}),
    )
    .await;
    assert_eq!(status, 200);
    let whole = json_of(&text);
    assert_eq!(whole["done"], true);
    assert!(whole["response"]
        .as_str()
        .unwrap()
        .contains("Why is the sky"));
    for key in [
        "total_duration",
        "prompt_eval_count",
        "eval_count",
        "context",
    ] {
        assert!(whole.get(key).is_some(), "{key} missing: {whole}");
    }

    let (_, text) = call(
        &double,
        "POST",
        "/api/generate",
        json!({"model": "qwen2.5:7b", "prompt": "Why?"}),
    )
    .await;
    let lines = ndjson(&text);
    let (last, pieces) = lines.split_last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert!(pieces
        .iter()
        .all(|l| l["done"] == false && l["response"].is_string()));

    // Structured outputs: a value following the schema.
    let (_, text) = call(
        &double,
        "POST",
        "/api/generate",
        json!({"model": "qwen2.5:7b", "prompt": "age?", "stream": false,
               "format": {"type": "object", "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}}}}),
    )
    .await;
    let answer = json_of(json_of(&text)["response"].as_str().unwrap());
    assert_eq!(answer, json!({"age": 1, "available": true}));

    let (status, text) = call(
        &double,
        "POST",
        "/api/generate",
        json!({"model": "nope", "prompt": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        json_of(&text)["error"],
        "model \"nope\" not found, try pulling it first"
    );
}

#[tokio::test]
async fn an_empty_chat_loads_the_model_and_keep_alive_zero_unloads_it() {
    let double = OllamaDouble::start_with(&["llama3.2:latest"], &[]).await;
    let loaded = |text: String| {
        json_of(&text)["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (_, text) = call(
        &double,
        "POST",
        "/api/chat",
        json!({"model": "llama3.2", "messages": []}),
    )
    .await;
    assert_eq!(json_of(&text)["done_reason"], "load");
    assert_eq!(
        loaded(call(&double, "GET", "/api/ps", json!(null)).await.1),
        ["llama3.2"]
    );
    let (_, text) = call(
        &double,
        "POST",
        "/api/chat",
        json!({"model": "llama3.2", "messages": [], "keep_alive": 0}),
    )
    .await;
    assert_eq!(json_of(&text)["done_reason"], "unload");
    assert!(loaded(call(&double, "GET", "/api/ps", json!(null)).await.1).is_empty());
}

#[tokio::test]
async fn show_embed_and_embeddings_answer_with_the_documented_fields() {
    let double = OllamaDouble::start().await;
    let (status, text) = call(&double, "POST", "/api/show", json!({"model": "qwen2.5:7b"})).await;
    assert_eq!(status, 200);
    let show = json_of(&text);
    for key in [
        "modelfile",
        "parameters",
        "template",
        "details",
        "model_info",
        "capabilities",
    ] {
        assert!(show.get(key).is_some(), "{key} missing");
    }
    let (status, _) = call(&double, "POST", "/api/show", json!({"model": "nope"})).await;
    assert_eq!(status, 404);

    let (_, text) = call(
        &double,
        "POST",
        "/api/embed",
        json!({"model": "qwen2.5:7b", "input": ["Why is the sky blue?", "Why is the grass green?"]}),
    )
    .await;
    let embed = json_of(&text);
    let vectors = embed["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert_ne!(vectors[0], vectors[1]);
    assert!(embed["prompt_eval_count"].as_u64().unwrap() > 0);

    let (_, text) = call(
        &double,
        "POST",
        "/api/embeddings",
        json!({"model": "qwen2.5:7b", "prompt": "Why is the sky blue?"}),
    )
    .await;
    assert_eq!(
        json_of(&text)["embedding"],
        vectors[0],
        "same text, same vector"
    );
}

#[tokio::test]
async fn pull_streams_progress_then_the_model_is_installed_and_can_be_copied_and_deleted() {
    let double = OllamaDouble::start_with(&[], &[]).await;
    let (status, text) = call(&double, "POST", "/api/pull", json!({"model": "llama3.2"})).await;
    assert_eq!(status, 200);
    let lines = ndjson(&text);
    assert_eq!(lines[0], json!({"status": "pulling manifest"}));
    let progress: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("completed").is_some())
        .collect();
    assert!(!progress.is_empty());
    assert!(progress
        .iter()
        .all(|l| l["digest"].as_str().unwrap().starts_with("sha256:") && l["total"].is_u64()));
    assert_eq!(lines.last().unwrap(), &json!({"status": "success"}));
    let (_, text) = call(
        &double,
        "POST",
        "/api/pull",
        json!({"model": "phi3", "stream": false}),
    )
    .await;
    assert_eq!(json_of(&text), json!({"status": "success"}));

    let names = |double: &OllamaDouble| double.state.models.lock().unwrap().clone();
    assert_eq!(names(&double), ["llama3.2:latest", "phi3:latest"]);
    let (status, _) = call(
        &double,
        "POST",
        "/api/copy",
        json!({"source": "llama3.2", "destination": "llama3-backup"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &double,
        "POST",
        "/api/copy",
        json!({"source": "nope", "destination": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&double, "DELETE", "/api/delete", json!({"model": "phi3"})).await;
    assert_eq!(status, 200);
    let (status, text) = call(&double, "DELETE", "/api/delete", json!({"model": "phi3"})).await;
    assert_eq!(status, 404);
    assert_eq!(json_of(&text)["error"], "model 'phi3' not found");
    assert_eq!(names(&double), ["llama3.2:latest", "llama3-backup:latest"]);
}
