//! The Sparklio wire format: both request shapes in (design: `input`, `chat`,
//! `options.model`; code: `payload`, `json|text`, `override_model`, `*_agent` roles),
//! one superset answer out.

use super::Error;
use crate::config::SamplingConfig;
use crate::contracts::{self, ContractRef};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `POST /api/v1/llm/generate`, as sent.
#[derive(Debug, Deserialize)]
pub struct GenerateBody {
    /// Absent: `assistant` (a prompt-only request).
    #[serde(default)]
    pub role: Option<String>,
    /// Absent: `chat`.
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// The user's request on its own (`{"prompt": "…"}`), merged into the input.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub override_model: Option<String>,
    #[serde(default)]
    pub options: Option<GenerateOptions>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct GenerateOptions {
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default, alias = "stop")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub mock: Option<bool>,
    /// This request's own time limit in seconds (shorter than the provider's only).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// The answer's JSON Schema for this request; wins over `_output_structure` and
    /// the built-in contract.
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// Tone, length and other hints some agents send; passed to the templates.
    #[serde(flatten)]
    pub hints: Map<String, Value>,
}

const MAX_MAX_TOKENS: u32 = 131_072;

/// Role and task of a request that names neither (`{"prompt": "…"}`, `/llm/chat`).
pub const DEFAULT_ROLE: &str = "assistant";
pub const DEFAULT_TASK: &str = "chat";

/// `POST /api/v1/llm/chat`: a conversation in, the generate answer out.
#[derive(Debug, Deserialize)]
pub struct ChatBody {
    pub messages: Vec<ChatTurn>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
pub struct ChatTurn {
    pub role: String,
    pub content: String,
}

impl ChatBody {
    /// The same request as a chat-mode generate body.
    pub fn into_generate(self) -> Result<GenerateBody, Error> {
        if self.messages.is_empty() {
            return Err(Error::validation("messages", "at least one message"));
        }
        if let Some((i, turn)) = self
            .messages
            .iter()
            .enumerate()
            .find(|(_, t)| !matches!(t.role.as_str(), "system" | "user" | "assistant"))
        {
            return Err(Error::validation(
                &format!("messages[{i}].role"),
                format!("{:?} is not system, user or assistant", turn.role),
            ));
        }
        let mut options = self.options.unwrap_or_default();
        if let Some(m) = self.model {
            options.insert("model".into(), Value::String(m));
        }
        if let Some(s) = self.stream {
            options.insert("stream".into(), Value::Bool(s));
        }
        let options: GenerateOptions = serde_json::from_value(Value::Object(options))
            .map_err(|e| Error::validation("options", e.to_string()))?;
        Ok(GenerateBody {
            role: Some(self.role.unwrap_or_else(|| DEFAULT_ROLE.into())),
            task: Some(self.task.unwrap_or_else(|| DEFAULT_TASK.into())),
            mode: Some("chat".into()),
            prompt: None,
            payload: Some(serde_json::json!({"messages": self.messages})),
            input: None,
            override_model: None,
            options: Some(options),
            request_id: self.request_id,
        })
    }
}

/// Their code's role names → the design's.
const ROLE_ALIASES: &[(&str, &str)] = &[
    ("brief_agent", "brief"),
    ("brand_agent", "brand"),
    ("strategist_agent", "strategist"),
    ("copywriter_agent", "copywriter"),
    ("reviewer_agent", "reviewer"),
    ("editor_agent", "editor"),
    ("optimizer_agent", "optimizer"),
    ("vision_agent", "vision"),
    ("vision_generator", "vision"),
    ("designer", "vision"),
];

pub fn role_aliases() -> std::collections::BTreeMap<String, String> {
    ROLE_ALIASES
        .iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect()
}

/// A request after validation and normalisation.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Canonical role (aliases resolved).
    pub role: String,
    /// The role as sent, when it was an alias.
    pub requested_role: Option<String>,
    pub task: String,
    /// `json` or `chat` (`text` is `chat`).
    pub mode: String,
    /// The mode as sent, echoed in `meta.mode`.
    pub mode_label: String,
    /// `payload` and `input` merged into one object.
    pub input: Value,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub mock: bool,
    /// The request's own time limit, when it set one.
    pub timeout: Option<std::time::Duration>,
    pub hints: Map<String, Value>,
    pub request_id: Option<String>,
    /// What a json-mode answer is validated against (and what mock answers follow).
    pub contract: Option<ContractRef>,
}

fn check_name(field: &str, v: &str) -> Result<String, Error> {
    let v = v.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::validation(
            field,
            "must be up to 64 letters, digits, '_' or '-'",
        ));
    }
    Ok(v)
}

fn into_object(field: &str, v: Value) -> Result<Map<String, Value>, Error> {
    match v {
        Value::Object(m) => Ok(m),
        // A bare string is the user's request.
        Value::String(s) => Ok([("prompt".to_string(), Value::String(s))]
            .into_iter()
            .collect()),
        Value::Null => Ok(Map::new()),
        _ => Err(Error::validation(
            field,
            "must be an object (or a string, taken as the prompt)",
        )),
    }
}

impl GenerateBody {
    /// The id the request goes by: its own `request_id` when it brings one, else the
    /// transport's (an `x-request-id` header or a generated one).
    pub fn request_id_or(&self, transport_id: &str) -> String {
        self.request_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .unwrap_or(transport_id)
            .to_string()
    }

    /// Whether the caller asked for a streamed answer (`options.stream`).
    pub fn wants_stream(&self) -> bool {
        self.options.as_ref().and_then(|o| o.stream) == Some(true)
    }

    pub fn normalize(self, sampling: &SamplingConfig) -> Result<GenerateRequest, Error> {
        // A prompt-only request (`{"prompt": "…"}`, nothing else to go on) is a chat with
        // a general assistant; any other request names its role and task.
        let prompt_only = self.role.is_none()
            && self.task.is_none()
            && self.payload.is_none()
            && self.input.is_none()
            && self.prompt.as_deref().is_some_and(|p| !p.trim().is_empty());
        let named = |field: &str, v: Option<&str>, default: &str| match v {
            Some(v) => check_name(field, v),
            None if prompt_only => Ok(default.to_string()),
            None => Err(Error::validation(
                field,
                "required (or send only a `prompt`, answered as role assistant, task chat)",
            )),
        };
        let requested = named("role", self.role.as_deref(), DEFAULT_ROLE)?;
        let role = ROLE_ALIASES
            .iter()
            .find(|(a, _)| *a == requested)
            .map_or_else(|| requested.clone(), |(_, r)| r.to_string());
        let task = named("task", self.task.as_deref(), DEFAULT_TASK)?;
        let default_mode = if prompt_only { "chat" } else { "json" };
        let mode_label = self
            .mode
            .as_deref()
            .map_or_else(|| default_mode.into(), |m| m.trim().to_ascii_lowercase());
        let mode = match mode_label.as_str() {
            "json" => "json",
            "text" | "chat" => "chat",
            "tools" => {
                return Err(Error::validation(
                    "mode",
                    "\"tools\" is not supported yet; use json, text or chat",
                ))
            }
            _ => return Err(Error::validation("mode", "must be json, text or chat")),
        };

        let prompt = self.prompt.filter(|p| !p.trim().is_empty());
        if self.payload.is_none() && self.input.is_none() && prompt.is_none() {
            return Err(Error::validation(
                "payload",
                "required: the input data as `payload` (or `input`), or a `prompt`",
            ));
        }
        // Design: input = {brand, context, payload}; code: payload = {...}. One object,
        // with a nested `input.payload` flattened in and `payload` keys winning.
        let mut input = Map::new();
        if let Some(i) = self.input {
            for (k, v) in into_object("input", i)? {
                match (k.as_str(), v) {
                    ("payload", Value::Object(inner)) => {
                        for (ik, iv) in inner {
                            input.entry(ik).or_insert(iv);
                        }
                    }
                    (_, v) => {
                        input.insert(k, v);
                    }
                }
            }
        }
        if let Some(p) = self.payload {
            input.extend(into_object("payload", p)?);
        }
        if let Some(p) = prompt {
            input.insert("prompt".into(), Value::String(p));
        }

        let o = self.options.unwrap_or_default();
        let (default_temperature, default_top_p, default_max_tokens) =
            sampling.defaults_for(&role, &task);
        let temperature = o.temperature.unwrap_or(default_temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(Error::validation(
                "options.temperature",
                "must be between 0 and 2",
            ));
        }
        let top_p = o.top_p.unwrap_or(default_top_p);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(Error::validation(
                "options.top_p",
                "must be above 0 and at most 1",
            ));
        }
        let max_tokens = o.max_tokens.unwrap_or(default_max_tokens);
        if max_tokens == 0 || max_tokens > MAX_MAX_TOKENS {
            return Err(Error::validation(
                "options.max_tokens",
                format!("must be between 1 and {MAX_MAX_TOKENS}"),
            ));
        }
        let stream = o.stream.unwrap_or(false);
        if stream && mode == "json" {
            return Err(Error::validation(
                "options.stream",
                "streaming is for mode chat/text; json mode answers in one piece",
            ));
        }
        let non_empty =
            |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        for (field, v, max) in [
            ("options.provider", &o.provider, 64),
            ("options.model", &o.model, 200),
            ("override_model", &self.override_model, 200),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > max) {
                return Err(Error::validation(
                    field,
                    format!("at most {max} characters"),
                ));
            }
        }
        let request_id = non_empty(self.request_id);
        if request_id.as_ref().is_some_and(|id| id.len() > 128) {
            return Err(Error::validation("request_id", "at most 128 characters"));
        }
        let input = Value::Object(input);
        let contract = contracts::resolve(&role, &task, o.output_schema.as_ref(), &input)
            .map_err(|e| Error::validation("options.output_schema", e.0))?;
        Ok(GenerateRequest {
            requested_role: (requested != role).then_some(requested),
            role,
            task,
            mode: mode.to_string(),
            mode_label,
            input,
            temperature,
            top_p,
            max_tokens,
            stop: o.stop_sequences.unwrap_or_default(),
            provider: non_empty(o.provider),
            // The design's options.model wins over the code's override_model.
            model: non_empty(o.model).or(non_empty(self.override_model)),
            stream,
            mock: o.mock.unwrap_or(false),
            timeout: match o.timeout_s {
                None => None,
                Some(t) if t > 0.0 && t.is_finite() && t <= 86_400.0 => {
                    Some(std::time::Duration::from_secs_f64(t))
                }
                Some(_) => {
                    return Err(Error::validation(
                        "options.timeout_s",
                        "must be a positive number of seconds",
                    ))
                }
            },
            hints: o.hints,
            request_id,
            contract,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> GenerateBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn code_shape() {
        let r = body(json!({"role": "brief_agent", "task": "marketing_brief", "payload": {"a": 1}, "mode": "text", "override_model": "m1"}))
            .normalize(&SamplingConfig::default())
            .unwrap();
        assert_eq!(r.role, "brief");
        assert_eq!(r.requested_role.as_deref(), Some("brief_agent"));
        assert_eq!(r.mode, "chat");
        assert_eq!(r.mode_label, "text");
        assert_eq!(r.model.as_deref(), Some("m1"));
        assert_eq!(r.input, json!({"a": 1}));
    }

    #[test]
    fn design_shape() {
        let r = body(json!({"role": "copywriter", "task": "sns", "mode": "chat", "input": {"brand": {"name": "B"}, "payload": {"p": 1}}, "options": {"model": "m2", "provider": "ollama", "tone": "fun", "temperature": 0.2}, "request_id": "abc"}))
            .normalize(&SamplingConfig::default())
            .unwrap();
        assert_eq!(r.input, json!({"brand": {"name": "B"}, "p": 1}));
        assert_eq!(r.model.as_deref(), Some("m2"));
        assert_eq!(r.provider.as_deref(), Some("ollama"));
        assert_eq!(r.hints.get("tone"), Some(&json!("fun")));
        assert_eq!(r.temperature, 0.2);
        assert_eq!(r.request_id.as_deref(), Some("abc"));
        assert_eq!(r.mode, "chat");
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (json!({"role": "", "task": "t", "payload": {}}), "role"),
            (json!({"role": "r", "task": "../x", "payload": {}}), "task"),
            (json!({"role": "r", "task": "t"}), "payload"),
            (json!({"role": "r", "task": "t", "payload": 3}), "payload"),
            (
                json!({"role": "r", "task": "t", "payload": {}, "mode": "yaml"}),
                "mode",
            ),
            (
                json!({"role": "r", "task": "t", "payload": {}, "options": {"temperature": 3}}),
                "options.temperature",
            ),
            (
                json!({"role": "r", "task": "t", "payload": {}, "options": {"stream": true}}),
                "options.stream",
            ),
        ];
        for (v, field) in cases {
            let e = body(v).normalize(&SamplingConfig::default()).unwrap_err();
            assert_eq!(e.code(), "VALIDATION_ERROR");
            assert_eq!(e.fields()["field"], json!(field));
        }
    }

    #[test]
    fn sampling_defaults_come_from_task_then_role_then_global() {
        let cfg: crate::config::Config = toml::from_str(crate::config::DEFAULT_TOML).unwrap();
        let s = &cfg.llm.sampling;
        let r = body(json!({"role": "copywriter", "task": "sns", "payload": {}}))
            .normalize(s)
            .unwrap();
        assert_eq!((r.temperature, r.max_tokens), (0.8, 1000));
        let r = body(json!({"role": "reviewer_agent", "task": "style_check", "payload": {}}))
            .normalize(s)
            .unwrap();
        assert_eq!((r.temperature, r.top_p, r.max_tokens), (0.3, 0.9, 2000));
        let r = body(json!({"role": "strategist", "task": "brand_kit", "payload": {}, "options": {"temperature": 0.1}}))
            .normalize(s)
            .unwrap();
        assert_eq!(
            (r.temperature, r.max_tokens),
            (0.1, 3000),
            "a request's options win"
        );
    }
}
