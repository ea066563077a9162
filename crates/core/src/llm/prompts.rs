//! Prompt building: a system prompt per role and a template per task (minijinja),
//! rendering the request's input. Built-in templates live in `prompts/` beside this
//! file; `system/<role>.j2` and `task/<task>.j2` in `llm.prompt_dir` override them.
//!
//! Template context: `role`, `task`, `mode`, `json` (bool), `input` (the object),
//! `input_block` (the input as readable text, the user's `prompt` first) and `hints`
//! (extra request options such as tone or length, as text).

use super::provider::ChatMessage;
use anyhow::Context;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("prompts/", $name, ".j2")))),*]
    };
}

/// The built-in templates (name, source).
const BUILTIN: &[(&str, &str)] = builtin!(
    "system/_default",
    "system/brand",
    "system/brief",
    "system/strategist",
    "system/copywriter",
    "system/vision",
    "system/reviewer",
    "system/editor",
    "system/optimizer",
    "system/assistant",
    "task/_default",
    "task/brand_summary",
    "task/brand_kit",
    "task/marketing_brief",
    "task/content_plan",
    "task/product_detail",
    "task/sns",
    "task/campaign",
    "task/image_prompt",
    "task/style_check",
    "task/content_review",
    "task/review",
    "task/seo_optimize",
    "task/proofread",
    "task/heavy_reasoning",
    "task/tagging",
    "task/short_summary",
    "task/chat",
);

/// Where each template came from, for `router/info`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TemplateInfo {
    pub name: String,
    /// `builtin` or the override file.
    pub source: String,
}

pub struct Prompts {
    env: Environment<'static>,
    templates: Vec<TemplateInfo>,
    /// The context variables each template reads, so a render converts only those (a
    /// system prompt that never shows the input does not pay for converting it).
    reads: HashMap<String, HashSet<String>>,
    /// The text of each built-in template that reads no variable at all (the system
    /// prompts), rendered once at load instead of on every request.
    fixed: HashMap<String, String>,
}

/// The input keys shown first, in this order (the user's own words first, so a
/// model cannot ignore them; the team lost a day to a formatter that dropped `prompt`).
const LEADING_KEYS: &[(&str, &str)] = &[
    ("prompt", "The user's request (follow it)"),
    ("_instructions", "Instructions (follow them)"),
    ("product_name", "Product name"),
    ("features", "Features"),
    ("target_audience", "Target audience"),
];

impl Prompts {
    /// The built-in templates, overridden by `*.j2` files under `prompt_dir/system` and
    /// `prompt_dir/task`. A template that does not compile is an error naming the file.
    pub fn load(prompt_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_trim_blocks(true);
        let mut templates = Vec::new();
        for (name, source) in BUILTIN {
            env.add_template(name, source)
                .with_context(|| format!("built-in prompt {name}"))?;
            templates.push(TemplateInfo {
                name: name.to_string(),
                source: "builtin".into(),
            });
        }
        if let Some(dir) = prompt_dir {
            for (name, path) in override_files(dir)? {
                let source = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read prompt {}", path.display()))?;
                env.add_template_owned(name.clone(), source)
                    .with_context(|| {
                        format!("prompt template {} does not compile", path.display())
                    })?;
                let info = TemplateInfo {
                    name: name.clone(),
                    source: path.display().to_string(),
                };
                match templates.iter_mut().find(|t| t.name == name) {
                    Some(t) => *t = info,
                    None => templates.push(info),
                }
            }
        }
        templates.sort_by(|a, b| a.name.cmp(&b.name));
        let reads = templates
            .iter()
            .map(|t| {
                let vars = env
                    .get_template(&t.name)
                    .map(|tmpl| tmpl.undeclared_variables(false))
                    .unwrap_or_default();
                (t.name.clone(), vars)
            })
            .collect::<HashMap<_, _>>();
        // Only built-in templates: an override may `include` or `extend` another, and
        // `undeclared_variables` does not see what that one reads.
        let mut fixed = HashMap::new();
        let builtin = |name: &str| {
            templates
                .iter()
                .any(|t| t.name == name && t.source == "builtin")
        };
        for (name, vars) in &reads {
            if vars.is_empty() && builtin(name) {
                let text = env
                    .get_template(name)
                    .and_then(|t| t.render(minijinja::context! {}))
                    .with_context(|| format!("rendering prompt {name}"))?;
                fixed.insert(name.clone(), trimmed(text));
            }
        }
        Ok(Self {
            env,
            templates,
            reads,
            fixed,
        })
    }

    pub fn templates(&self) -> &[TemplateInfo] {
        &self.templates
    }

    /// The template used for a role (`system/…`) or task (`task/…`), falling back to `_default`.
    pub fn template_for(&self, kind: &str, key: &str) -> &str {
        let is = |name: &str| {
            name.strip_prefix(kind)
                .and_then(|n| n.strip_prefix('/'))
                .is_some_and(|n| n == key)
        };
        match (self.templates.iter().find(|t| is(&t.name)), kind) {
            (Some(t), _) => &t.name,
            (None, "system") => "system/_default",
            (None, "task") => "task/_default",
            (None, other) => unreachable!("no template kind {other:?}: system or task"),
        }
    }

    /// The messages for one request held to the built-in contract of its role/task.
    pub fn build(
        &self,
        role: &str,
        task: &str,
        mode: &str,
        input: &Value,
        hints: &Map<String, Value>,
    ) -> anyhow::Result<Vec<ChatMessage>> {
        let shape =
            crate::contracts::contract_for(role, task).map(crate::contracts::Contract::shape_hint);
        self.build_with_shape(role, task, mode, input, hints, shape.as_deref())
    }

    /// The messages for one request: the role's system prompt, then the task prompt
    /// asking for `shape` in json mode; in chat mode an `input.messages` conversation
    /// follows.
    pub fn build_with_shape(
        &self,
        role: &str,
        task: &str,
        mode: &str,
        input: &Value,
        hints: &Map<String, Value>,
        shape: Option<&str>,
    ) -> anyhow::Result<Vec<ChatMessage>> {
        let json_mode = mode == "json";
        let conversation: Vec<ChatMessage> = if json_mode {
            vec![]
        } else {
            chat_messages(input)
        };
        // The input as the prompt shows it, copied only when a key is left out.
        let drop_messages = !conversation.is_empty();
        // The shape line already says what the agent's structure says.
        let drop_structure = json_mode && shape.is_some();
        let shown_input = match input {
            Value::Object(m)
                if (drop_messages && m.contains_key("messages"))
                    || (drop_structure
                        && m.contains_key(crate::contracts::OUTPUT_STRUCTURE_KEY)) =>
            {
                let mut m = m.clone();
                if drop_messages {
                    m.remove("messages");
                }
                if drop_structure {
                    m.remove(crate::contracts::OUTPUT_STRUCTURE_KEY);
                }
                Cow::Owned(Value::Object(m))
            }
            other => Cow::Borrowed(other),
        };
        let mut input_text: Option<String> = None;
        let mut render = |name: &str| -> anyhow::Result<String> {
            if let Some(text) = self.fixed.get(name) {
                return Ok(text.clone());
            }
            let t = self.env.get_template(name)?;
            let reads = self.reads.get(name);
            let wants = |var: &str| reads.is_none_or(|r| r.contains(var));
            let mut ctx: Vec<(&str, minijinja::Value)> = vec![
                ("role", role.into()),
                ("task", task.into()),
                ("mode", mode.into()),
                ("json", json_mode.into()),
                // The contract's shape, so the prompt asks for what will be validated.
                ("shape", shape.into()),
            ];
            if wants("input") {
                ctx.push(("input", minijinja::Value::from_serialize(&*shown_input)));
            }
            if wants("input_block") {
                let text = input_text.get_or_insert_with(|| input_block(&shown_input));
                ctx.push(("input_block", text.as_str().into()));
            }
            if wants("hints") {
                ctx.push(("hints", hints_text(hints).into()));
            }
            let text = t
                .render(minijinja::Value::from_iter(ctx))
                .with_context(|| format!("rendering prompt {name}"))?;
            Ok(trimmed(text))
        };
        let mut messages = vec![ChatMessage::new(
            "system",
            render(self.template_for("system", role))?,
        )];
        // A conversation may carry the whole request; an empty task prompt adds nothing.
        let task_prompt = render(self.template_for("task", task))?;
        if !task_prompt.is_empty() || conversation.is_empty() {
            messages.push(ChatMessage::new("user", task_prompt));
        }
        messages.extend(conversation);
        Ok(messages)
    }
}

/// `*.j2` files under `dir/system` and `dir/task` as (template name, path).
fn override_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        anyhow::bail!(
            "llm.prompt_dir {} is not a folder (expected system/<role>.j2 and task/<task>.j2 inside)",
            dir.display()
        );
    }
    let mut out = Vec::new();
    for kind in ["system", "task"] {
        let sub = dir.join(kind);
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("j2") {
                continue;
            }
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                out.push((format!("{kind}/{stem}"), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `text` without its leading and trailing whitespace, in place.
fn trimmed(mut text: String) -> String {
    text.truncate(text.trim_end().len());
    let lead = text.len() - text.trim_start().len();
    text.drain(..lead);
    text
}

/// A `messages: [{role, content}]` conversation in the input (chat mode).
fn chat_messages(input: &Value) -> Vec<ChatMessage> {
    input
        .get("messages")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|m| {
                    let role = m.get("role")?.as_str()?;
                    let content = m.get("content")?.as_str()?;
                    ["system", "user", "assistant"]
                        .contains(&role)
                        .then(|| ChatMessage::new(role, content))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A value as prompt text: a string as it is, anything else as JSON.
fn push_scalar(out: &mut String, v: &Value) {
    use std::fmt::Write;
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str("null"),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The input as text: the leading keys first, lists as bullets, then every other key
/// as `- key: value` (JSON for nested values).
pub fn input_block(input: &Value) -> String {
    let Value::Object(map) = input else {
        let mut out = String::from("Input: ");
        push_scalar(&mut out, input);
        return out;
    };
    let mut out = String::with_capacity(256);
    out.push_str("Input:\n");
    for (key, label) in LEADING_KEYS {
        match map.get(*key) {
            Some(Value::Array(items)) => {
                out.push_str(label);
                out.push_str(":\n");
                for item in items {
                    out.push_str("  - ");
                    push_scalar(&mut out, item);
                    out.push('\n');
                }
            }
            Some(Value::Null) | None => {}
            Some(v) => {
                out.push_str(label);
                out.push_str(": ");
                push_scalar(&mut out, v);
                out.push('\n');
            }
        }
    }
    for (key, value) in map {
        if LEADING_KEYS.iter().any(|(k, _)| k == key) || value.is_null() {
            continue;
        }
        out.push_str("- ");
        out.push_str(key);
        out.push_str(": ");
        push_scalar(&mut out, value);
        out.push('\n');
    }
    out.push_str("Use only the facts above; do not invent another product or copy an example.");
    out
}

fn hints_text(hints: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (k, v) in hints {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        push_scalar(&mut out, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_builtin_renders_and_json_mode_asks_for_the_shape() {
        let p = Prompts::load(None).unwrap();
        let input = json!({"product_name": "프로틴플러스 초코맛", "features": ["30g 단백질", "저당"], "prompt": "초코맛 소개", "brand": {"name": "프로틴플러스"}});
        for (name, _) in BUILTIN.iter().filter(|(n, _)| n.starts_with("task/")) {
            let task = name.trim_start_matches("task/");
            let msgs = p
                .build("copywriter", task, "json", &input, &Map::new())
                .unwrap();
            assert_eq!(msgs.len(), 2);
            assert!(
                msgs[1].content.contains("프로틴플러스 초코맛"),
                "{task}: {}",
                msgs[1].content
            );
            assert!(msgs[1].content.contains("JSON object"), "{task}");
        }
        let chat = p
            .build("copywriter", "product_detail", "chat", &input, &Map::new())
            .unwrap();
        assert!(!chat[1].content.contains("JSON object"));
    }

    #[test]
    fn prompt_comes_first_and_lists_are_bullets() {
        let text = input_block(&json!({"zeta": 1, "features": ["a", "b"], "prompt": "do it"}));
        let prompt_at = text.find("do it").unwrap();
        let features_at = text.find("  - a").unwrap();
        let zeta_at = text.find("- zeta: 1").unwrap();
        assert!(prompt_at < features_at && features_at < zeta_at, "{text}");
    }

    #[test]
    fn unknown_role_and_task_use_defaults_and_hints_render() {
        let p = Prompts::load(None).unwrap();
        let mut hints = Map::new();
        hints.insert("tone".into(), json!("playful"));
        let msgs = p
            .build(
                "prompt_engineer",
                "odd_task",
                "json",
                &json!({"x": "y"}),
                &hints,
            )
            .unwrap();
        assert!(msgs[0].content.contains("prompt_engineer"));
        assert!(msgs[1].content.contains("odd_task"));
        assert!(msgs[1].content.contains("tone=playful"));
    }

    #[test]
    fn templates_that_read_nothing_are_rendered_once_and_the_rest_every_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("system")).unwrap();
        std::fs::write(
            dir.path().join("system/brand.j2"),
            "Brand desk, {{ task }}.",
        )
        .unwrap();
        // Reads nothing itself, but what it includes reads `role`.
        std::fs::write(
            dir.path().join("system/editor.j2"),
            "Editor. {% include \"system/_default\" %}",
        )
        .unwrap();
        let p = Prompts::load(Some(dir.path())).unwrap();
        assert!(p.fixed.contains_key("system/copywriter"));
        assert!(!p.fixed.contains_key("system/_default"), "it reads role");
        assert!(
            !p.fixed.contains_key("system/brand"),
            "the override reads task"
        );
        assert!(
            !p.fixed.contains_key("system/editor"),
            "an override is never fixed"
        );
        let input = json!({"product_name": "P"});
        for (name, fixed) in &p.fixed {
            let fresh = p
                .env
                .get_template(name)
                .unwrap()
                .render(minijinja::context! {
                    role => "copywriter", task => "sns", mode => "json", json => true,
                    input => input, input_block => "Input:", hints => "tone=x",
                });
            assert_eq!(fixed, &trimmed(fresh.unwrap()), "{name}");
        }
        let copy = p
            .build("copywriter", "sns", "json", &input, &Map::new())
            .unwrap();
        assert_eq!(copy[0].content, p.fixed["system/copywriter"]);
        for task in ["sns", "campaign"] {
            let msgs = p.build("brand", task, "json", &input, &Map::new()).unwrap();
            assert_eq!(msgs[0].content, format!("Brand desk, {task}."));
        }
        let editor = p
            .build("editor", "sns", "json", &input, &Map::new())
            .unwrap();
        assert!(
            editor[0].content.contains("editor agent"),
            "{}",
            editor[0].content
        );
    }

    #[test]
    fn files_override_builtins_and_bad_templates_fail_loudly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("task")).unwrap();
        std::fs::write(
            dir.path().join("task/sns.j2"),
            "CUSTOM {{ input.product_name }} {{ mode }}",
        )
        .unwrap();
        let p = Prompts::load(Some(dir.path())).unwrap();
        let msgs = p
            .build(
                "copywriter",
                "sns",
                "json",
                &json!({"product_name": "P"}),
                &Map::new(),
            )
            .unwrap();
        assert_eq!(msgs[1].content, "CUSTOM P json");
        std::fs::write(dir.path().join("task/sns.j2"), "{% if %}").unwrap();
        let err = Prompts::load(Some(dir.path())).err().unwrap();
        assert!(format!("{err:#}").contains("sns.j2"), "{err:#}");
    }
}
