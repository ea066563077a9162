//! `/api/chat` and `/api/generate`: what the "model" says, whole or as NDJSON.

use super::{error, not_found, parse, unreadable, Behaviour, DoubleState};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const CREATED_AT: &str = "2025-11-16T10:00:00.000000Z";

pub(super) async fn chat(State(s): State<Arc<DoubleState>>, body: Bytes) -> Response {
    let Some(body) = parse(&body) else {
        return unreadable();
    };
    s.requests.lock().unwrap().push(body.clone());
    let behaviour = next_behaviour(&s);
    let model = body["model"].as_str().unwrap_or("").to_string();
    if model.is_empty() {
        return error(400, "model is required");
    }
    if let Some(answer) = hang_or_fail(&behaviour).await {
        return answer;
    }
    if !s.has(&model) {
        return not_found(&model);
    }
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    // No messages: load the model (or unload it with keep_alive 0), say nothing.
    if body["messages"].as_array().is_some_and(Vec::is_empty) {
        let reason = load_or_unload(&s, &model, &body);
        return Json(json!({
            "model": model, "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ""},
            "done_reason": reason, "done": true,
        }))
        .into_response();
    }
    // The last user turn, or a tool's result when the model is answering one.
    let user = body["messages"]
        .as_array()
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m["role"] == "user" || m["role"] == "tool")
        })
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let content = match &behaviour {
        Behaviour::Content(c) => c.clone(),
        _ => answer_for(&user, &body["format"], &model),
    };
    let prompt_chars: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .map(|s| s.chars().count())
                .sum()
        })
        .unwrap_or(0);
    let (prompt, eval) = counts(prompt_chars, &content);

    if behaviour == Behaviour::DropConnection {
        return dropped_connection(streaming);
    }
    // Tools offered and the user just spoke: call the first tool, as a tool-using model
    // does (Ollama sends the calls whole, in one message, then the final line).
    let last_role = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["role"].clone());
    if let (Some(tool), Some(Value::String(role))) =
        (body["tools"].as_array().and_then(|t| t.first()), last_role)
    {
        if role == "user" {
            let call = json!([{"function": {
                "name": tool["function"]["name"],
                "arguments": follow_schema(&tool["function"]["parameters"]),
            }}]);
            let message = json!({"role": "assistant", "content": "", "tool_calls": call});
            let mut last = final_chunk(&model, prompt, 12);
            if !streaming {
                last["message"] = message;
                return Json(last).into_response();
            }
            let first = json!({"model": model, "created_at": CREATED_AT, "message": message, "done": false});
            last["message"] = json!({"role": "assistant", "content": ""});
            let text = format!("{first}\n{last}\n");
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/x-ndjson")
                .body(Body::from(text))
                .unwrap();
        }
    }
    let piece = |text: &str| json!({"role": "assistant", "content": text});
    if !streaming {
        let mut last = final_chunk(&model, prompt, eval);
        last["message"] = piece(&content);
        return Json(last).into_response();
    }
    let mut last = final_chunk(&model, prompt, eval);
    last["message"] = piece("");
    ndjson(&model, &content, "message", piece, last)
}

pub(super) async fn generate(State(s): State<Arc<DoubleState>>, body: Bytes) -> Response {
    let Some(body) = parse(&body) else {
        return unreadable();
    };
    let behaviour = next_behaviour(&s);
    let model = body["model"].as_str().unwrap_or("").to_string();
    if model.is_empty() {
        return error(400, "model is required");
    }
    if let Some(answer) = hang_or_fail(&behaviour).await {
        return answer;
    }
    if !s.has(&model) {
        return not_found(&model);
    }
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let prompt_text = body["prompt"].as_str().unwrap_or("");
    // No prompt: load the model (or unload it with keep_alive 0), say nothing.
    if prompt_text.is_empty() {
        let reason = load_or_unload(&s, &model, &body);
        let mut answer =
            json!({"model": model, "created_at": CREATED_AT, "response": "", "done": true});
        if reason == "unload" {
            answer["done_reason"] = json!("unload");
        }
        return Json(answer).into_response();
    }
    let content = match &behaviour {
        Behaviour::Content(c) => c.clone(),
        _ => answer_for(prompt_text, &body["format"], &model),
    };
    let (prompt, eval) = counts(prompt_text.chars().count(), &content);
    if behaviour == Behaviour::DropConnection {
        return dropped_connection(streaming);
    }
    let mut last = final_chunk(&model, prompt, eval);
    if body["raw"] != json!(true) {
        last["context"] = json!([1, 2, 3]);
    }
    if !streaming {
        last["response"] = json!(content);
        return Json(last).into_response();
    }
    last["response"] = json!("");
    ndjson(&model, &content, "response", |t| json!(t), last)
}

/// The behaviour for this request (a sequence hands out its next content).
fn next_behaviour(s: &DoubleState) -> Behaviour {
    let mut b = s.behaviour.lock().unwrap();
    match &mut *b {
        Behaviour::Sequence(queue) if !queue.is_empty() => Behaviour::Content(queue.remove(0)),
        Behaviour::Sequence(_) => Behaviour::Normal,
        other => other.clone(),
    }
}

async fn hang_or_fail(behaviour: &Behaviour) -> Option<Response> {
    match behaviour {
        Behaviour::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Some(error(500, "unreachable"))
        }
        Behaviour::Fail(status, msg) => Some(error(*status, msg)),
        Behaviour::Slow(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            None
        }
        _ => None,
    }
}

/// `keep_alive: 0` unloads the model, anything else loads it. Returns the done reason.
fn load_or_unload(s: &DoubleState, model: &str, body: &Value) -> &'static str {
    let mut loaded = s.loaded.lock().unwrap();
    let unload = body["keep_alive"] == json!(0) || body["keep_alive"] == json!("0");
    loaded.retain(|m| super::normalize(m) != super::normalize(model));
    if unload {
        "unload"
    } else {
        loaded.push(model.to_string());
        "load"
    }
}

/// What the "model" says: JSON echoing the request in JSON mode (or following the
/// shape or schema asked for), a sentence otherwise.
fn answer_for(user: &str, format: &Value, model: &str) -> String {
    let head: String = user.chars().take(40).collect();
    if format == "json" {
        // Like an obedient model: follow the JSON shape the prompt asks for.
        if let Some(answer) = follow_shape(user) {
            return answer.to_string();
        }
        json!({"answer": format!("double answer from {model}"), "prompt_head": head, "score": 7})
            .to_string()
    } else if format.is_object() {
        follow_schema(format).to_string()
    } else {
        format!("Double answer from {model}: {head}")
    }
}

/// Fill the compact shape a prompt asks for (`{"headline": string, "n": number (1-10),
/// "list": [string, at least 1], "x": string (optional)}`) with plausible values.
pub fn follow_shape(prompt: &str) -> Option<Value> {
    let marker = "exactly this shape";
    let after = &prompt[prompt.find(marker)? + marker.len()..];
    let start = after.find('{')?;
    let line = after[start..].lines().next()?;
    // A shape of field descriptions (the agents' `_output_structure`) is JSON already:
    // answer each field with its description, as a terse model would.
    if let Ok(described) = serde_json::from_str::<Value>(line) {
        return Some(described);
    }
    let mut text = line.replace(" (optional)", "");
    // `string (e.g. "16:9")` → the example.
    while let Some(i) = text.find("string (e.g. ") {
        let rest = &text[i + "string (e.g. ".len()..];
        let end = rest.find(')')?;
        let example = rest[..end].to_string();
        text.replace_range(i..i + "string (e.g. ".len() + end + 1, &example);
    }
    // number (a-b) → a; [X, at least N] → [X]; alternatives → the first.
    while let Some(i) = text.find(" (") {
        let close = text[i..].find(')')? + i;
        let range = &text[i + 2..close];
        let lo = range.split('-').next().unwrap_or("1").to_string();
        let num_start = text[..i]
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_ascii_alphabetic())
            .map_or(0, |(p, c)| p + c.len_utf8());
        text.replace_range(num_start..=close, &lo);
    }
    let text = text
        .replace(", at least 1]", "]")
        .replace(", at least 2]", "]")
        .replace("boolean | string | number", "boolean")
        .replace("boolean | string | array", "boolean")
        .replace("string | object", "string")
        .replace("array | string | object", "string");
    let text = text
        .replace(": string", ": \"double text\"")
        .replace("[string]", "[\"double item\"]")
        .replace(": boolean", ": true")
        .replace(": integer", ": 1")
        .replace(": number", ": 7")
        .replace(": any", ": null");
    serde_json::from_str(&text).ok()
}

/// A value that satisfies a (simple) JSON schema, as structured outputs promise.
fn follow_schema(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str().unwrap_or("object") {
        "object" => {
            let mut out = Map::new();
            for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
                out.insert(key.clone(), follow_schema(sub));
            }
            Value::Object(out)
        }
        "array" => json!([follow_schema(&schema["items"])]),
        "string" => json!("double text"),
        "integer" => json!(1),
        "number" => json!(7),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

/// Prompt and answer token counts, about four characters a token.
fn counts(prompt_chars: usize, content: &str) -> (u64, u64) {
    (
        (prompt_chars / 4 + 1) as u64,
        (content.chars().count() / 4 + 1) as u64,
    )
}

/// The last object of an answer: done, with Ollama's counts and durations (ns).
fn final_chunk(model: &str, prompt: u64, eval: u64) -> Value {
    json!({
        "model": model, "created_at": CREATED_AT,
        "done_reason": "stop", "done": true,
        "total_duration": 5_321_400_000u64, "load_duration": 12_000_000u64,
        "prompt_eval_count": prompt, "prompt_eval_duration": 300_000_000u64,
        "eval_count": eval, "eval_duration": 5_000_000_000u64,
    })
}

/// NDJSON: a few content pieces under `field`, then `last` (done, with the counts).
/// Lines are split across body chunks on purpose, as a network may deliver them.
fn ndjson(
    model: &str,
    content: &str,
    field: &str,
    piece: impl Fn(&str) -> Value,
    last: Value,
) -> Response {
    let chars: Vec<char> = content.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    let mut text = String::new();
    for p in chars.chunks(size) {
        let mut line = json!({"model": model, "created_at": CREATED_AT, "done": false});
        line[field] = piece(&p.iter().collect::<String>());
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text.push_str(&last.to_string());
    text.push('\n');
    let chunks: Vec<Result<Bytes, std::io::Error>> = text
        .into_bytes()
        .chunks(37)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}

/// The head and a first piece go out (the pause lets them flush), then the connection
/// is cut mid-body.
fn dropped_connection(streaming: bool) -> Response {
    let head = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
        b"{\"model\":\"",
    ))]);
    let cut = futures::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "dropped",
        ))
    });
    let content_type = if streaming {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(futures::StreamExt::chain(head, cut)))
        .unwrap()
}
