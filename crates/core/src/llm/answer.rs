//! A finished answer and its wire shape: the contract's superset (`output.value` for
//! the backend's code, `output.content` / `output.parsed` for its design).

use super::json::ParsedJson;
use super::provider::{LlmReply, ModelInfo, Usage};
use super::Plan;
use serde::Serialize;
use serde_json::Value;

/// A finished, parsed answer.
pub struct Answer {
    pub reply: LlmReply,
    pub parsed: Option<ParsedJson>,
    /// Time spent waiting for the provider (all round-trips), in ms.
    pub provider_ms: f64,
    /// The answer needed the contract repair round-trip.
    pub schema_repaired: bool,
    /// Fields the contract's shape normalised (JSON pointers), e.g. `"8/10"` → 8.
    pub normalised: Vec<String>,
}

/// `POST /api/v1/llm/generate` → 200.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateAnswer {
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    pub output: Output,
    pub meta: AnswerMeta,
    pub timestamp: String,
}

/// On the wire: `type` (`json` or `text`), `value` (the parsed object in json mode,
/// else the text), `content` (the raw text) and `parsed` (the object, else null).
/// `value` repeats `parsed` or `content`, so it is written from them, not held twice.
#[derive(Debug, Clone)]
pub struct Output {
    /// The raw text the model answered.
    pub content: String,
    /// The parsed object in json mode, else null.
    pub parsed: Option<Value>,
}

impl Output {
    fn kind(&self) -> &'static str {
        if self.parsed.is_some() {
            "json"
        } else {
            "text"
        }
    }
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Output", 4)?;
        out.serialize_field("type", self.kind())?;
        match &self.parsed {
            Some(value) => out.serialize_field("value", value)?,
            None => out.serialize_field("value", &self.content)?,
        }
        out.serialize_field("content", &self.content)?;
        out.serialize_field("parsed", &self.parsed)?;
        out.end()
    }
}

/// Every key is always written (null or empty when it does not apply): mock and live
/// answers must have the same keys, and a client's strict model must not meet a key only
/// on the day a fallback answers.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerMeta {
    pub role: String,
    /// The role as sent, when it was an alias (`brief_agent`).
    pub requested_role: Option<String>,
    pub task: String,
    /// The mode as sent (`json`, `text`, `chat`).
    pub mode: String,
    pub latency_ms: f64,
    pub generator_mode: &'static str,
    pub request_id: String,
    /// The routing rule that chose provider and model.
    pub route: String,
    pub temperature: f64,
    pub max_tokens: u32,
    pub done_reason: Option<String>,
    /// The JSON needed a local repair (code fences, trailing commas, ...).
    pub json_repaired: bool,
    /// The answer needed the contract repair round-trip.
    pub schema_repaired: bool,
    /// Where the contract came from (json mode): `builtin`, `request_schema`
    /// (`options.output_schema`) or `request_structure` (`_output_structure`).
    pub contract: Option<crate::contracts::Source>,
    /// Fields normalised to the contract's shape (JSON pointers): a text where a list is
    /// described became a list of one, a score `"8/10"` became 8.
    pub normalised: Vec<String>,
    pub provider_latency_ms: f64,
    pub model_info: ModelInfo,
    /// When a configured fallback answered: the provider and model that failed first.
    pub fallback_from: Option<Attempt>,
    /// Every target tried before the one that answered, in order.
    pub attempts: Vec<Attempt>,
}

/// A target that was tried and failed.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    pub code: &'static str,
    pub message: String,
}

impl Attempt {
    pub fn failed(plan: &Plan, e: &super::Error) -> Self {
        Self {
            provider: plan.provider_label.clone(),
            model: plan.model.clone(),
            code: e.code(),
            message: e.to_string(),
        }
    }
}

fn tenth(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

impl Answer {
    /// The contract's superset body (the answer's text and value move into it).
    pub fn into_wire(self, plan: &Plan, latency_ms: f64) -> GenerateAnswer {
        let json_repaired = self.parsed.as_ref().is_some_and(|p| p.repaired);
        let reply = self.reply;
        GenerateAnswer {
            provider: plan.provider_label.clone(),
            model: plan.model.clone(),
            usage: reply.usage,
            output: Output {
                content: reply.content,
                parsed: self.parsed.map(|p| p.value),
            },
            meta: AnswerMeta {
                role: plan.request.role.clone(),
                requested_role: plan.request.requested_role.clone(),
                task: plan.request.task.clone(),
                mode: plan.request.mode_label.clone(),
                latency_ms: tenth(latency_ms),
                generator_mode: plan.generator_mode.as_str(),
                request_id: plan.request_id.clone(),
                route: plan.route.matched.clone(),
                temperature: plan.call.sampling.temperature.unwrap_or_default(),
                max_tokens: plan.call.sampling.max_tokens.unwrap_or_default(),
                done_reason: reply.done_reason,
                json_repaired,
                schema_repaired: self.schema_repaired,
                contract: plan
                    .call
                    .json
                    .then(|| plan.request.contract.as_ref().map(|c| c.source))
                    .flatten(),
                normalised: self.normalised,
                provider_latency_ms: tenth(self.provider_ms),
                model_info: reply.model_info,
                fallback_from: plan.attempts.first().cloned(),
                attempts: plan.attempts.clone(),
            },
            timestamp: crate::store::now_text(),
        }
    }
}
