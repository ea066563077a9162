//! Reading one call's answer from its instance: NDJSON lines under the first-byte, idle
//! and overall limits, each parsed into a typed line that borrows from the read buffer.
//!
//! The call's lease is reported and let go when the answer is complete (or failed),
//! before the caller sees its end: a slot still held after the answer went out would
//! count against the next request of the same client.

use super::wedged_error;
use crate::llm::ndjson::{LineError, LineReader};
use crate::llm::provider::{
    FailureKind, LlmReply, ModelInfo, ProviderError, StreamEvent, StreamSender, Usage,
};
use crate::resilience::{Lease, Outcome};
use crate::upstream::Http1Response;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// The longest NDJSON line accepted from a stream (one token's message is tiny).
const MAX_STREAM_LINE: usize = 1024 * 1024;

/// How long each part of the answer may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Until the first line (the model's cold load and first token).
    pub first_byte: Duration,
    /// Between two pieces of data after that.
    pub idle: Duration,
    /// The whole request's end.
    pub deadline: Instant,
}

/// Where the pieces of content go as they arrive.
pub(super) enum Pieces<'a> {
    /// Nowhere: only the whole answer is wanted (no task, no channel).
    Collect,
    /// To a streaming caller.
    Stream(&'a StreamSender),
}

/// Read a started call's answer to its end. `Ok(None)`: the streaming caller went away.
pub(super) async fn read_answer(
    lease: Lease,
    resp: Http1Response,
    limits: Limits,
    fallback_model: &str,
    pieces: Pieces<'_>,
) -> Result<Option<LlmReply>, ProviderError> {
    let inst = lease.instance.clone();
    let fail = |message: String| {
        Err(ProviderError::new(FailureKind::Upstream, message).on_instance(inst.label()))
    };
    let timed_out = |message: String| {
        Err(ProviderError::new(FailureKind::Timeout, message).on_instance(inst.label()))
    };
    let mut lines = LineReader::new(resp, MAX_STREAM_LINE);
    let mut content = String::new();
    // Tool calls may come in any line (Ollama sends them whole, once).
    let mut tool_calls: Vec<Value> = Vec::new();
    let mut first = true;
    loop {
        let left = limits.deadline.saturating_duration_since(Instant::now());
        let read = if first {
            // The first line has its own limit, and gives up if the instance is found
            // wedged meanwhile.
            tokio::select! {
                r = lines.next_line(limits.first_byte) => r,
                () = inst.wedged_after(lease.epoch()) => {
                    drop(lease);
                    return Err(wedged_error(&inst).0);
                }
            }
        } else {
            lines.next_line(limits.idle.min(left)).await
        };
        let line = match read {
            Ok(Some(line)) => line,
            Ok(None) if first => {
                lease.report(Outcome::ServerError, "stream ended before answering");
                return fail(format!(
                    "{} closed the stream before answering",
                    inst.label()
                ));
            }
            Ok(None) => {
                lease.report(Outcome::ServerError, "stream ended early");
                return fail(format!(
                    "{} closed the stream before it was done",
                    inst.label()
                ));
            }
            Err(LineError::Stalled(d)) if first => {
                lease.report(Outcome::Timeout, "no first token");
                return timed_out(format!(
                    "{} gave no first token within {:.1} s",
                    inst.label(),
                    d.as_secs_f64()
                ));
            }
            Err(LineError::Stalled(d)) => {
                let why = if d >= left {
                    "did not finish within the request's time"
                } else {
                    "stalled mid-answer"
                };
                lease.report(Outcome::Timeout, why);
                return timed_out(format!(
                    "{} {why} (nothing for {:.1} s)",
                    inst.label(),
                    d.as_secs_f64()
                ));
            }
            Err(e) => {
                lease.report(Outcome::ServerError, &e.to_string());
                return fail(format!("{} dropped the stream: {e}", inst.label()));
            }
        };
        first = false;
        let chunk: ChatChunk<'_> = match serde_json::from_slice(line) {
            Ok(c) => c,
            Err(e) => {
                lease.report(Outcome::ServerError, "unreadable stream line");
                return fail(format!(
                    "unreadable stream line from ollama ({e}): {}",
                    String::from_utf8_lossy(&line[..line.len().min(300)])
                ));
            }
        };
        if let Some(err) = chunk.error {
            lease.report(Outcome::ServerError, &err);
            return fail(format!("ollama error: {err}"));
        }
        let piece = match chunk.message {
            Some(m) => {
                tool_calls.extend(m.tool_calls);
                m.content
            }
            None => Cow::Borrowed(""),
        };
        if !piece.is_empty() {
            content.push_str(&piece);
            if let Pieces::Stream(tx) = &pieces {
                if !tx.send(Ok(StreamEvent::Delta(piece.into_owned()))).await {
                    lease.report(Outcome::Success, "the caller went away");
                    return Ok(None);
                }
            }
        }
        if chunk.done {
            let model = if chunk.model.is_empty() {
                fallback_model.to_string()
            } else {
                chunk.model.into_owned()
            };
            let reply = LlmReply {
                model,
                content,
                tool_calls,
                usage: Usage::new(chunk.prompt_eval_count, chunk.eval_count),
                model_info: ModelInfo {
                    total_duration: chunk.total_duration,
                    load_duration: chunk.load_duration,
                    prompt_eval_duration: chunk.prompt_eval_duration,
                    eval_duration: chunk.eval_duration,
                },
                done_reason: chunk.done_reason.map(Cow::into_owned),
            };
            // The answer's end has usually come with its last line: reading it now
            // puts the connection back in the pool (a half-read answer closes it).
            lines.ended_now();
            lease.report(Outcome::Success, "answered");
            return Ok(Some(reply));
        }
    }
}

/// One `/api/chat` answer object (one NDJSON line when streaming). Texts borrow from the
/// line unless they hold escapes; fields not named here are skipped without a copy.
#[derive(Debug, Deserialize, Default)]
struct ChatChunk<'a> {
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Option<ChunkMessage<'a>>,
    #[serde(default)]
    done: bool,
    #[serde(default, borrow)]
    done_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    total_duration: u64,
    #[serde(default)]
    load_duration: u64,
    #[serde(default)]
    prompt_eval_duration: u64,
    #[serde(default)]
    eval_duration: u64,
}

#[derive(Debug, Deserialize, Default)]
struct ChunkMessage<'a> {
    #[serde(default, borrow)]
    content: Cow<'a, str>,
    #[serde(default)]
    tool_calls: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_borrows_its_texts_unless_escaped() {
        let line = br#"{"model":"m","created_at":"x","message":{"role":"assistant","content":"Hi \"you\""},"done":true,"done_reason":"stop","eval_count":3}"#;
        let c: ChatChunk<'_> = serde_json::from_slice(line).unwrap();
        assert!(matches!(c.model, Cow::Borrowed("m")));
        let m = c.message.unwrap();
        assert_eq!(m.content, "Hi \"you\"");
        assert!(matches!(m.content, Cow::Owned(_)), "an escape needs a copy");
        assert_eq!(c.done_reason.as_deref(), Some("stop"));
        assert!(c.done);
        assert_eq!(c.eval_count, 3);
    }
}
