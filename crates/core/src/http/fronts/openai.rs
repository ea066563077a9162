//! An OpenAI-compatible API at `/v1/*`: `models`, `chat/completions` (streaming SSE with
//! a final usage chunk on `stream_options.include_usage`, `response_format`
//! json_object / json_schema), `completions`, `embeddings` and `images/generations` (the
//! Media Gateway). A model name is a configured alias (`[fronts.openai.models]`) or an
//! installed model's own name. Errors in OpenAI's shape (the `reshape_errors` layer).

use crate::app::SharedState;
use crate::config::GeneratorMode;
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::routes::llm::request_timeout;
use crate::http::routes::media::{base_url, render_result};
use crate::http::ApiError;
use crate::llm::front::{DirectChat, DirectTarget, FrontCall};
use crate::llm::provider::{ChatMessage, LlmReply, Sampling, StreamEvent};
use crate::media::MediaRequestCtx;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;

pub fn routes(state: SharedState) -> Router<SharedState> {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*model}", get(model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/images/generations", post(images))
        .route_layer(from_fn_with_state(state, super::require_gateway))
}

fn front_call(
    caller: Option<&Extension<Caller>>,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> FrontCall {
    FrontCall {
        front: "openai",
        endpoint,
        request_id: current_request_id().unwrap_or_default(),
        requester: caller.map(|Extension(c)| c.requester()).unwrap_or_default(),
        timeout: request_timeout(headers),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("VALIDATION_ERROR", message).with("field", field)
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        invalid(&path, format!("{path}: {}", e.inner()))
    })
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---- models -------------------------------------------------------------------------

fn model_object(id: &str, owned_by: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owned_by})
}

/// Aliases first, then every installed model by its own name (mock mode: the routed
/// models, which the mock answers for).
async fn model_list(state: &SharedState) -> Result<Vec<Value>, ApiError> {
    let config = state.config();
    let mut data: Vec<Value> = config
        .fronts
        .openai
        .models
        .iter()
        .map(|(alias, to)| model_object(alias, &format!("{}:{}", to.provider, to.model)))
        .collect();
    let mut seen: std::collections::BTreeSet<String> =
        config.fronts.openai.models.keys().cloned().collect();
    if state.runtime.mode() == GeneratorMode::Mock {
        for (_, model) in state.llm.setup().router.routed_models() {
            if seen.insert(model.clone()) {
                data.push(model_object(&model, "sparklio-mock"));
            }
        }
        return Ok(data);
    }
    match state.llm.ollama_models().await {
        Ok(held) => {
            for h in held {
                if seen.insert(h.entry.name.clone()) {
                    data.push(model_object(&h.entry.name, &h.provider));
                }
            }
        }
        Err(e) if data.is_empty() => return Err(e.into()),
        Err(_) => {}
    }
    Ok(data)
}

async fn models(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let call = front_call(caller.as_ref(), &headers, "models");
    let r = model_list(&state).await;
    state
        .llm
        .record_front(&call, r.as_ref().err().map(|e| (e.code, e.status.as_u16())))
        .await;
    Ok(Json(json!({"object": "list", "data": r?})))
}

async fn model(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    model_list(&state)
        .await?
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("The model `{id}` does not exist")).with("field", "model")
        })
}

// ---- chat ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(flatten)]
    asked: Asked,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// An assistant turn that called tools.
    #[serde(default)]
    tool_calls: Option<Vec<OutToolCall>>,
    /// A `tool` turn: the call it answers.
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// A tool call as OpenAI writes it (`arguments` is a JSON text).
#[derive(Deserialize)]
struct OutToolCall {
    #[serde(default)]
    id: Option<String>,
    function: OutFunction,
}

#[derive(Deserialize)]
struct OutFunction {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Deserialize)]
struct JsonSchemaFormat {
    #[serde(default)]
    schema: Option<Value>,
}

const MAX_MESSAGES: usize = 1024;

/// What the client asked for, checked; nothing it left out is filled in (the model's
/// own defaults apply, as with OpenAI's API and Ollama's own `/v1`).
fn sampling(asked: Asked) -> Result<Sampling, ApiError> {
    if let Some(t) = asked.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
    }
    if let Some(p) = asked.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(invalid("top_p", "top_p must be above 0 and at most 1"));
        }
    }
    if let Some(m) = asked.max_tokens {
        if m == 0 || m > 131_072 {
            return Err(invalid(
                "max_tokens",
                "max_tokens must be between 1 and 131072",
            ));
        }
    }
    for (field, penalty) in [
        ("presence_penalty", asked.presence_penalty),
        ("frequency_penalty", asked.frequency_penalty),
    ] {
        if penalty.is_some_and(|p| !(-2.0..=2.0).contains(&p)) {
            return Err(invalid(field, format!("{field} must be between -2 and 2")));
        }
    }
    Ok(Sampling {
        temperature: asked.temperature,
        top_p: asked.top_p,
        max_tokens: asked.max_tokens,
        stop: match asked.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s],
            // OpenAI takes at most 4 and refuses more; cutting the list would let the
            // model run past a stop the client asked for.
            Some(Stop::Many(v)) if v.len() > 4 => {
                return Err(invalid("stop", "at most 4 stop sequences"))
            }
            Some(Stop::Many(v)) => v,
        },
        seed: asked.seed,
        presence_penalty: asked.presence_penalty,
        frequency_penalty: asked.frequency_penalty,
    })
}

/// The sampling fields of a chat or completion request.
#[derive(Deserialize)]
struct Asked {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
}

impl ChatRequest {
    fn into_direct(self) -> Result<(DirectChat, bool, bool), ApiError> {
        if self.messages.is_empty() || self.messages.len() > MAX_MESSAGES {
            return Err(invalid(
                "messages",
                format!("between 1 and {MAX_MESSAGES} messages"),
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid("n", "only n = 1 is supported"));
        }
        // Ollama has no tool_choice: "none" sends no tools; anything else lets it choose.
        let tools = match (&self.tools, &self.tool_choice) {
            (Some(_), Some(Value::String(c))) if c == "none" => None,
            (Some(t), _) if !t.is_empty() => {
                if let Some(i) = t.iter().position(|x| x["type"] != "function") {
                    return Err(invalid(
                        &format!("tools[{i}].type"),
                        "only function tools are supported",
                    ));
                }
                Some(Value::Array(t.clone()))
            }
            _ => None,
        };
        // A tool turn names its tool by the call it answers.
        let mut call_names: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                other => {
                    return Err(invalid(
                        &format!("messages[{i}].role"),
                        format!("role {other:?} is not supported (system, developer, user, assistant, tool)"),
                    ))
                }
            };
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(invalid(
                                &format!("messages[{i}].content"),
                                format!(
                                    "content parts of type {:?} are not supported (text only)",
                                    p.kind
                                ),
                            ));
                        }
                        text.push_str(&p.text.unwrap_or_default());
                    }
                    text
                }
            };
            let mut message = ChatMessage::new(role, content);
            if let Some(calls) = m.tool_calls.filter(|c| !c.is_empty()) {
                let mut ollama_calls = Vec::with_capacity(calls.len());
                for (j, c) in calls.into_iter().enumerate() {
                    let arguments: Value = match c.function.arguments.as_deref() {
                        None | Some("") => json!({}),
                        Some(text) => serde_json::from_str(text).map_err(|e| {
                            invalid(
                                &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                                format!("not JSON: {e}"),
                            )
                        })?,
                    };
                    if let Some(id) = c.id {
                        call_names.insert(id, c.function.name.clone());
                    }
                    ollama_calls.push(
                        json!({"function": {"name": c.function.name, "arguments": arguments}}),
                    );
                }
                message.tool_calls = Some(Value::Array(ollama_calls));
            }
            if role == "tool" {
                message.tool_name = m.tool_call_id.and_then(|id| call_names.get(&id).cloned());
            }
            messages.push(message);
        }
        let (json, schema) = match self.response_format {
            None | Some(ResponseFormat::Text) => (false, None),
            Some(ResponseFormat::JsonObject) => (true, None),
            Some(ResponseFormat::JsonSchema { json_schema }) => {
                let schema = json_schema
                    .schema
                    .unwrap_or_else(|| json!({"type": "object"}));
                if let Err(e) = jsonschema::validator_for(&schema) {
                    return Err(invalid(
                        "response_format.json_schema.schema",
                        format!("not a valid JSON Schema: {e}"),
                    ));
                }
                (true, Some(schema))
            }
        };
        let sampling = sampling(Asked {
            max_tokens: self.max_completion_tokens.or(self.asked.max_tokens),
            ..self.asked
        })?;
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok((
            DirectChat {
                model: self.model,
                messages,
                sampling,
                json,
                schema,
                tools,
            },
            self.stream,
            include_usage,
        ))
    }
}

fn finish_reason(reply: &LlmReply) -> &'static str {
    if !reply.tool_calls.is_empty() {
        return "tool_calls";
    }
    match reply.done_reason.as_deref() {
        Some("length") => "length",
        _ => "stop",
    }
}

/// Ollama's tool calls in OpenAI's shape (ids made up, arguments as JSON text).
fn openai_tool_calls(reply: &LlmReply, request_id: &str) -> Vec<Value> {
    reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let arguments = match &c["function"]["arguments"] {
                Value::String(s) => s.clone(),
                Value::Null => "{}".into(),
                other => other.to_string(),
            };
            json!({
                "index": i,
                "id": format!("call_{}_{i}", &request_id[..request_id.len().min(12)]),
                "type": "function",
                "function": {"name": c["function"]["name"], "arguments": arguments},
            })
        })
        .collect()
}

fn usage_of(reply: &LlmReply) -> Value {
    json!({
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "total_tokens": reply.usage.total_tokens,
    })
}

/// The request's model resolved to a provider (alias, installed name, or the mock).
fn target(state: &SharedState, model: &str) -> Result<DirectTarget, ApiError> {
    let config = state.config();
    Ok(state
        .llm
        .direct_target(model, &config.fronts.openai.models)?)
}

/// A failure mid-stream: one event with the error in OpenAI's shape (the SDKs raise it).
fn sse_error(e: crate::llm::Error) -> Result<Event, Infallible> {
    let e = ApiError::from(e);
    sse_data(&super::front_error(
        crate::http::auth::Front::OpenAi,
        e.status,
        e.code,
        &e.body()["error"],
    ))
}

fn sse_data(v: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

async fn chat_completions(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let call = front_call(caller.as_ref(), &headers, "chat_completions");
    let request: ChatRequest = parse(&body)?;
    let (chat, stream, include_usage) = request.into_direct()?;
    let model_name = chat.model.clone();
    let target = target(&state, &model_name)?;
    let id = format!("chatcmpl-{}", call.request_id);
    let created = now_s();
    if !stream {
        let reply = state.llm.direct_chat(&target, chat, &call).await?;
        let mut message = json!({"role": "assistant", "content": reply.content, "refusal": null});
        if !reply.tool_calls.is_empty() {
            let mut calls = openai_tool_calls(&reply, &call.request_id);
            for c in &mut calls {
                if let Some(o) = c.as_object_mut() {
                    o.remove("index");
                }
            }
            message["tool_calls"] = json!(calls);
            if reply.content.is_empty() {
                message["content"] = Value::Null;
            }
        }
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model_name,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(&reply),
            }],
            "usage": usage_of(&reply),
            "system_fingerprint": null,
        }))
        .into_response());
    }
    let events = state.llm.direct_chat_stream(&target, chat, &call).await?;
    let request_id = call.request_id.clone();
    let chunk = move |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model_name,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let body = futures::stream::iter([sse_data(&first)]).chain(events.flat_map(move |item| {
        let out: Vec<Result<Event, Infallible>> = match item {
            Ok(StreamEvent::Delta(text)) => {
                vec![sse_data(&chunk(json!({"content": text}), Value::Null))]
            }
            Ok(StreamEvent::Done(reply)) => {
                let mut out = Vec::new();
                if !reply.tool_calls.is_empty() {
                    let calls = openai_tool_calls(&reply, &request_id);
                    out.push(sse_data(&chunk(json!({"tool_calls": calls}), Value::Null)));
                }
                out.push(sse_data(&chunk(json!({}), json!(finish_reason(&reply)))));
                if include_usage {
                    let mut last = chunk(json!({}), Value::Null);
                    last["choices"] = json!([]);
                    last["usage"] = usage_of(&reply);
                    out.push(sse_data(&last));
                }
                out.push(Ok(Event::default().data("[DONE]")));
                out
            }
            Err(e) => vec![sse_error(e)],
        };
        futures::stream::iter(out)
    }));
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---- completions (legacy) -----------------------------------------------------------

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: PromptIn,
    #[serde(default)]
    stream: bool,
    #[serde(flatten)]
    asked: Asked,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PromptIn {
    One(String),
    Many(Vec<String>),
}

async fn completions(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let call = front_call(caller.as_ref(), &headers, "completions");
    let r: CompletionRequest = parse(&body)?;
    let prompt = match r.prompt {
        PromptIn::One(p) => p,
        PromptIn::Many(mut v) if v.len() == 1 => v.remove(0),
        PromptIn::Many(_) => return Err(invalid("prompt", "one prompt per request")),
    };
    if r.n.is_some_and(|n| n != 1) {
        return Err(invalid("n", "only n = 1 is supported"));
    }
    let chat = DirectChat {
        model: r.model.clone(),
        messages: vec![ChatMessage::new("user", prompt)],
        sampling: sampling(r.asked)?,
        json: false,
        schema: None,
        tools: None,
    };
    let target = target(&state, &r.model)?;
    let id = format!("cmpl-{}", call.request_id);
    let created = now_s();
    let model_name = r.model;
    if !r.stream {
        let reply = state.llm.direct_chat(&target, chat, &call).await?;
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model_name,
            "choices": [{"text": reply.content, "index": 0, "logprobs": null, "finish_reason": finish_reason(&reply)}],
            "usage": usage_of(&reply),
        }))
        .into_response());
    }
    let include_usage = r.stream_options.is_some_and(|o| o.include_usage);
    let events = state.llm.direct_chat_stream(&target, chat, &call).await?;
    let chunk = move |text: &str, finish: Value| {
        json!({"id": id, "object": "text_completion", "created": created, "model": model_name,
               "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]})
    };
    let body = events.flat_map(move |item| {
        let out: Vec<Result<Event, Infallible>> = match item {
            Ok(StreamEvent::Delta(text)) => vec![sse_data(&chunk(&text, Value::Null))],
            Ok(StreamEvent::Done(reply)) => {
                let mut last = chunk("", json!(finish_reason(&reply)));
                if include_usage {
                    last["usage"] = usage_of(&reply);
                }
                vec![sse_data(&last), Ok(Event::default().data("[DONE]"))]
            }
            Err(e) => vec![sse_error(e)],
        };
        futures::stream::iter(out)
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---- embeddings ---------------------------------------------------------------------

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: EmbedInput,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

const MAX_EMBED_INPUTS: usize = 2048;

async fn embeddings(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let call = front_call(caller.as_ref(), &headers, "embeddings");
    let r: EmbeddingRequest = parse(&body)?;
    let inputs = match r.input {
        EmbedInput::One(s) => vec![s],
        EmbedInput::Many(v) => v,
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBED_INPUTS {
        return Err(invalid(
            "input",
            format!("between 1 and {MAX_EMBED_INPUTS} inputs"),
        ));
    }
    let base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(
                "encoding_format",
                format!("{other:?} is not float or base64"),
            ))
        }
    };
    let target = target(&state, &r.model)?;
    let (vectors, prompt_tokens) = if target.generator_mode == GeneratorMode::Mock {
        let v: Vec<Vec<f32>> = inputs.iter().map(|t| super::mock_embedding(t)).collect();
        let tokens = inputs.iter().map(|t| t.len() as u64 / 4 + 1).sum();
        state.llm.record_front(&call, None).await;
        (v, tokens)
    } else {
        let body = json!({"model": target.model, "input": inputs}).to_string();
        let stream = state
            .llm
            .ollama_forward(
                &call,
                reqwest::Method::POST,
                "/api/embed",
                Some(Bytes::from(body)),
                Some(target.model.clone()),
            )
            .await?;
        let status = stream.status;
        let answer = read_all(stream.body).await?;
        let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status >= 400 {
            let message = v["error"]
                .as_str()
                .unwrap_or("the embedding failed")
                .to_string();
            // A missing model is 404; anything else a provider error, which the
            // front's error layer makes the client's 400 when the instance refused the
            // request (`refused_the_request`), as for chat.
            let (answer, code) = match status {
                404 => (StatusCode::NOT_FOUND, "MODEL_NOT_FOUND"),
                _ => (StatusCode::BAD_GATEWAY, "PROVIDER_ERROR"),
            };
            return Err(ApiError::new(answer, code, message).with("upstream_status", status));
        }
        let vectors: Vec<Vec<f32>> =
            serde_json::from_value(v["embeddings"].clone()).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "PROVIDER_ERROR",
                    format!("unreadable embeddings: {e}"),
                )
            })?;
        (vectors, v["prompt_eval_count"].as_u64().unwrap_or(0))
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, mut vector)| {
            if let Some(d) = r.dimensions.filter(|d| *d > 0 && *d < vector.len()) {
                vector.truncate(d);
                // OpenAI's shortened embeddings are unit vectors again: dot products
                // are the cosine similarity clients compute with them.
                let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    vector.iter_mut().for_each(|x| *x /= norm);
                }
            }
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": r.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
    .into_response())
}

async fn read_all(
    mut body: futures::stream::BoxStream<'static, Result<Bytes, crate::llm::Error>>,
) -> Result<Vec<u8>, ApiError> {
    const MAX: usize = 64 * 1024 * 1024;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > MAX {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "PROVIDER_ERROR",
                "the upstream answer is too large",
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

// ---- images -------------------------------------------------------------------------

#[derive(Deserialize)]
struct ImageRequest {
    prompt: String,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

async fn images(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ImageRequest = parse(&body)?;
    let n = r.n.unwrap_or(1);
    if !(1..=4).contains(&n) {
        return Err(invalid("n", "n must be between 1 and 4"));
    }
    let (width, height) = match r.size.as_deref() {
        None | Some("auto") => (1024, 1024),
        Some(s) => {
            let (w, h) = s
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .ok_or_else(|| {
                    invalid(
                        "size",
                        format!("{s:?} is not WIDTHxHEIGHT (e.g. 1024x1024)"),
                    )
                })?;
            (w, h)
        }
    };
    let b64 = match r.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => {
            return Err(invalid(
                "response_format",
                format!("{other:?} is not url or b64_json"),
            ))
        }
    };
    let mut spec = json!({
        "prompt": r.prompt,
        "options": {"width": width, "height": height, "count": n, "return": if b64 { "base64" } else { "url" }},
    });
    if let Some(m) = r
        .model
        .filter(|m| !m.is_empty() && !m.starts_with("dall-e") && !m.starts_with("gpt-image"))
    {
        spec["options"]["workflow"] = json!(m);
    }
    let req: crate::media::request::GenerateRequest =
        serde_json::from_value(spec).map_err(|e| invalid("prompt", e.to_string()))?;
    let caller = caller.map(|Extension(c)| c);
    let ctx = MediaRequestCtx {
        request_id: current_request_id().unwrap_or_default(),
        requester: caller.as_ref().map(Caller::requester).unwrap_or_default(),
        run_async: false,
        base64_by_default: b64,
    };
    let generated = state.media.generate(req, ctx).await?;
    let base = base_url(&state, &headers);
    let latency_ms = generated.started.elapsed().as_secs_f64() * 1000.0;
    let answer = render_result(
        &state,
        &generated.spec,
        &generated.view,
        &base,
        b64,
        latency_ms,
    )
    .await?;
    let data: Vec<Value> = if b64 {
        answer
            .outputs
            .iter()
            .map(|o| json!({"b64_json": o.data, "revised_prompt": generated.spec.prompt}))
            .collect()
    } else {
        answer
            .images
            .iter()
            .map(|i| json!({"url": i.url, "revised_prompt": generated.spec.prompt}))
            .collect()
    };
    Ok(Json(json!({"created": now_s(), "data": data})).into_response())
}
