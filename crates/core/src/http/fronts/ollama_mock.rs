//! The Ollama front in mock mode (`GENERATOR_MODE=mock`): Ollama's own answers, shaped as
//! Ollama writes them, from the mock provider — so a backend pointed at the Desk with
//! `OLLAMA_BASE_URL` gets answers in milliseconds when no model runs (the outage this
//! product exists for), not connection errors. Pulls, deletes and other model
//! management still go to the configured Ollama.

use crate::app::SharedState;
use crate::http::ApiError;
use crate::llm::front::{DirectChat, FrontCall};
use crate::llm::provider::{ChatMessage, LlmReply, Sampling, StreamEvent};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::convert::Infallible;

/// When the answers were "made" (Ollama's `created_at`).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Ollama's `options` (temperature, top_p, num_predict, stop) as sampling.
fn sampling(body: &Map<String, Value>) -> Sampling {
    let o = &body.get("options").cloned().unwrap_or(Value::Null);
    Sampling {
        temperature: o["temperature"].as_f64().map(|t| t.clamp(0.0, 2.0)),
        top_p: o["top_p"].as_f64().filter(|p| *p > 0.0 && *p <= 1.0),
        max_tokens: o["num_predict"]
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n.min(131_072) as u32),
        stop: o["stop"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        ..Sampling::default()
    }
}

/// `format: "json"` or a schema.
fn format(body: &Map<String, Value>) -> (bool, Option<Value>) {
    match body.get("format") {
        Some(Value::String(f)) if f == "json" => (true, None),
        Some(schema @ Value::Object(_)) => (true, Some(schema.clone())),
        _ => (false, None),
    }
}

/// The final object's counts and timings, as Ollama reports them.
fn done_fields(reply: &LlmReply, out: &mut Value) {
    out["done"] = json!(true);
    out["done_reason"] = json!(reply.done_reason.clone().unwrap_or_else(|| "stop".into()));
    out["total_duration"] = json!(reply.model_info.total_duration);
    out["load_duration"] = json!(reply.model_info.load_duration);
    out["prompt_eval_count"] = json!(reply.usage.prompt_tokens);
    out["prompt_eval_duration"] = json!(reply.model_info.prompt_eval_duration);
    out["eval_count"] = json!(reply.usage.completion_tokens);
    out["eval_duration"] = json!(reply.model_info.eval_duration);
}

/// `/api/chat` or `/api/generate` answered by the mock, whole or as NDJSON.
pub async fn answer(
    state: &SharedState,
    call: &FrontCall,
    body: &Map<String, Value>,
    model: String,
) -> Result<Response, ApiError> {
    let is_chat = call.endpoint == "chat";
    let mut messages = Vec::new();
    if is_chat {
        for m in body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let role = m["role"].as_str().unwrap_or("user");
            messages.push(ChatMessage::new(role, m["content"].as_str().unwrap_or("")));
        }
    } else {
        if let Some(system) = body.get("system").and_then(Value::as_str) {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new(
            "user",
            body.get("prompt").and_then(Value::as_str).unwrap_or(""),
        ));
    }
    let (json_mode, schema) = format(body);
    let chat = DirectChat {
        model: model.clone(),
        messages,
        sampling: sampling(body),
        json: json_mode,
        schema,
        tools: None,
    };
    let target = state
        .llm
        .direct_target(&model, &Default::default())
        .map_err(ApiError::from)?;
    let streaming = body.get("stream").and_then(Value::as_bool) != Some(false);
    let field = if is_chat { "message" } else { "response" };
    let piece = move |text: &str| {
        if is_chat {
            json!({"role": "assistant", "content": text})
        } else {
            json!(text)
        }
    };
    if !streaming {
        let reply = state.llm.direct_chat(&target, chat, call).await?;
        let mut out = json!({"model": model, "created_at": now()});
        out[field] = piece(&reply.content);
        done_fields(&reply, &mut out);
        return Ok(Json(out).into_response());
    }
    let events = state.llm.direct_chat_stream(&target, chat, call).await?;
    let lines = events.map(move |item| {
        let mut line = json!({"model": model, "created_at": now()});
        match item {
            Ok(StreamEvent::Delta(text)) => {
                line[field] = piece(&text);
                line["done"] = json!(false);
            }
            Ok(StreamEvent::Done(reply)) => {
                line[field] = piece("");
                done_fields(&reply, &mut line);
            }
            Err(e) => line = json!({ "error": e.to_string() }),
        }
        Ok::<_, Infallible>(Bytes::from(format!("{line}\n")))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// `/api/embed` (`embeddings: [[…]]`) or the older `/api/embeddings` (`embedding: […]`).
pub async fn embed(
    state: &SharedState,
    call: &FrontCall,
    body: &Map<String, Value>,
    model: String,
) -> Json<Value> {
    state.llm.record_front(call, None).await;
    if call.endpoint == "embeddings" {
        let prompt = body.get("prompt").and_then(Value::as_str).unwrap_or("");
        return Json(json!({ "embedding": super::mock_embedding(prompt) }));
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let vectors: Vec<Vec<f32>> = inputs.iter().map(|t| super::mock_embedding(t)).collect();
    let tokens: usize = inputs.iter().map(|t| t.len() / 4 + 1).sum();
    Json(json!({"model": model, "embeddings": vectors, "prompt_eval_count": tokens}))
}

/// A model entry as `/api/tags` lists it (the mock's routed models: no files behind them).
fn entry(name: &str) -> Value {
    json!({
        "name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": 0,
        "digest": "", "details": {"parent_model": "", "format": "mock", "family": "sparklio-mock",
        "families": ["sparklio-mock"], "parameter_size": "", "quantization_level": ""},
    })
}

/// The routed models, which the mock answers for.
fn routed(state: &SharedState) -> Vec<String> {
    let mut names: Vec<String> = state
        .llm
        .setup()
        .router
        .routed_models()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn tags(state: &SharedState) -> Value {
    json!({ "models": routed(state).iter().map(|m| entry(m)).collect::<Vec<_>>() })
}

pub fn version() -> Value {
    json!({ "version": format!("{}-sparklio-mock", env!("CARGO_PKG_VERSION")) })
}

pub fn show(model: &str) -> Value {
    json!({
        "modelfile": format!("# Sparklio Desk mock mode: {model} is answered by the mock provider"),
        "parameters": "", "template": "{{ .Prompt }}",
        "details": entry(model)["details"], "model_info": {}, "capabilities": ["completion"],
    })
}
