//! Role contracts: the JSON Schema each agent role/task's JSON answer must satisfy.
//!
//! The gateway validates json-mode answers against these (one repair round-trip, then
//! `LLM_SCHEMA_MISMATCH`), the mock provider's answers are tested against them, and
//! `GET /api/v1/llm/schemas` publishes them so callers know what they will get.

pub mod korean;
pub mod shape;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The flow's own pairs that are not agent tasks: `(role, task, schema text)`; role `*`
/// matches any role. The agents' tasks come from `agents.json`.
const SCHEMAS: &[(&str, &str, &str)] = &[
    (
        "brand",
        "brand_summary",
        include_str!("schemas/brand.brand_summary.json"),
    ),
    (
        "brief",
        "marketing_brief",
        include_str!("schemas/brief.marketing_brief.json"),
    ),
    (
        "strategist",
        "content_plan",
        include_str!("schemas/strategist.content_plan.json"),
    ),
    (
        "vision",
        "image_prompt",
        include_str!("schemas/vision.image_prompt.json"),
    ),
    (
        "reviewer",
        "style_check",
        include_str!("schemas/reviewer.style_check.json"),
    ),
    ("*", "tagging", include_str!("schemas/any.tagging.json")),
    (
        "*",
        "short_summary",
        include_str!("schemas/any.short_summary.json"),
    ),
];

/// The five text agents' answer structures: their field names verbatim, with our type
/// hints (`text`, `list of text`, `score`, `length`), from the team's agents.
const AGENT_STRUCTURES: &str = include_str!("agents.json");

/// Task names the team's code also uses for an agent task: `(role, alias, task)`.
const TASK_ALIASES: &[(&str, &str, &str)] = &[("reviewer", "review", "content_review")];

/// Where a contract comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Built in: a flow pair's schema or an agent's structure.
    Builtin,
    /// The request's `options.output_schema` (a JSON Schema).
    RequestSchema,
    /// The request's `_output_structure` (the agents' own field descriptions).
    RequestStructure,
}

/// One contract, compiled.
pub struct Contract {
    pub role: String,
    pub task: String,
    pub source: Source,
    pub schema: Value,
    /// The agent-style shape behind the schema, when there is one: it normalises
    /// answers and shapes mock answers.
    pub shape: Option<shape::Shape>,
    /// Built-in contracts compile on first use: the validator library checks each schema
    /// against the meta-schema as it compiles it, and keeps what that builds for the life
    /// of the process (≈ 10 MB for all built-in contracts at start; most are never used
    /// by a given Desk). A request's own schema is compiled at once (it may not compile).
    validator: OnceLock<jsonschema::Validator>,
    /// `shape_hint`, computed once (every json-mode prompt asks for it).
    hint: OnceLock<String>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("role", &self.role)
            .field("task", &self.task)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Compile one of our own schemas (built in, or generated from a shape). They use
/// nothing past Draft 7, so they are compiled as Draft 7: checked against Draft 7's small
/// meta-schema rather than building Draft 2020-12's, which the validator library keeps
/// for the life of the process (≈ 35 MB of the Desk's heap; issue 18,
/// docs/performance.md). Schemas a request brings keep the default (2020-12).
fn compile_own(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(schema)
        .map_err(|e| e.to_string())
}

impl Contract {
    /// A contract from a JSON Schema; `Err` says why the schema does not compile.
    pub fn from_schema(
        role: &str,
        task: &str,
        source: Source,
        schema: Value,
    ) -> Result<Self, String> {
        let validator = OnceLock::new();
        if source != Source::Builtin {
            let _ = validator.set(jsonschema::validator_for(&schema).map_err(|e| e.to_string())?);
        }
        Ok(Self {
            role: role.to_string(),
            task: task.to_string(),
            source,
            schema,
            shape: None,
            validator,
            hint: OnceLock::new(),
        })
    }

    /// A contract from an agent-style shape.
    pub fn from_shape(role: &str, task: &str, source: Source, shape: shape::Shape) -> Self {
        let mut schema = shape.schema();
        schema["title"] = Value::String(format!("{role}/{task}"));
        Self {
            role: role.to_string(),
            task: task.to_string(),
            source,
            schema,
            shape: Some(shape),
            validator: OnceLock::new(),
            hint: OnceLock::new(),
        }
    }
}

/// One way an answer breaks its contract.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer into the answer (`/sections/0/title`; empty = the whole answer).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl Contract {
    /// Every violation of this contract in `answer` (empty = valid).
    pub fn violations(&self, answer: &Value) -> Vec<Violation> {
        // Most answers hold: checking is cheaper than collecting (no error values built).
        if self.validator().is_valid(answer) {
            return Vec::new();
        }
        self.validator()
            .iter_errors(answer)
            .map(|e| Violation {
                path: e.instance_path.to_string(),
                message: e.to_string(),
            })
            .collect()
    }

    /// The expected shape in the compact notation prompts use, e.g.
    /// `{"headline": string, "features": [string], "cta": string (optional)}`.
    pub fn shape_hint(&self) -> String {
        self.hint
            .get_or_init(|| match &self.shape {
                Some(shape) => shape.hint(),
                None => shape_of(&self.schema),
            })
            .clone()
    }

    /// The compiled schema (a built-in one compiles here the first time).
    fn validator(&self) -> &jsonschema::Validator {
        self.validator.get_or_init(|| {
            compile_own(&self.schema).unwrap_or_else(|e| {
                // Our own schemas compile: a test compiles every one of them.
                panic!("built-in contract {}/{}: {e}", self.role, self.task)
            })
        })
    }
}

/// Render a schema as a compact shape: what a model needs to produce it.
pub fn shape_of(schema: &Value) -> String {
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => String::from("any"),
    };
    match kind.as_str() {
        "object" if schema["properties"].is_object() => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let props = schema["properties"].as_object().expect("checked");
            let mut keys: Vec<&String> = props.keys().collect();
            // Required keys first, in the schema's listed order.
            keys.sort_by_key(|k| required.iter().position(|r| r == k).unwrap_or(usize::MAX));
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    let optional = if required.contains(&k.as_str()) {
                        ""
                    } else {
                        " (optional)"
                    };
                    format!("\"{k}\": {}{optional}", shape_of(&props[k]))
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        "array" => {
            let min = schema["minItems"].as_u64().filter(|n| *n > 0);
            let inner = shape_of(&schema["items"]);
            match min {
                Some(n) => format!("[{inner}, at least {n}]"),
                None => format!("[{inner}]"),
            }
        }
        "number" | "integer" => match (schema["minimum"].as_f64(), schema["maximum"].as_f64()) {
            (Some(lo), Some(hi)) => format!("{kind} ({lo}-{hi})"),
            _ => kind,
        },
        _ => match schema["examples"].get(0) {
            // A constrained string is easiest to get right from an example.
            Some(example) => format!("{kind} (e.g. {example})"),
            None => kind,
        },
    }
}

fn all() -> &'static BTreeMap<(String, String), Contract> {
    static CONTRACTS: OnceLock<BTreeMap<(String, String), Contract>> = OnceLock::new();
    CONTRACTS.get_or_init(|| {
        let mut all = BTreeMap::new();
        for (role, task, text) in SCHEMAS {
            let schema: Value = serde_json::from_str(text).expect("built-in schema is JSON");
            let c = Contract::from_schema(role, task, Source::Builtin, schema)
                .expect("built-in schema compiles");
            all.insert((role.to_string(), task.to_string()), c);
        }
        let agents: shape::Ordered =
            serde_json::from_str(AGENT_STRUCTURES).expect("agents.json is JSON");
        for (role, tasks) in agents.get("agents").expect("agents by role").fields() {
            for (task, hints) in tasks.fields() {
                let shape = shape::Shape::from_hints(hints)
                    .unwrap_or_else(|| panic!("agents.json {role}/{task}: unknown hint"));
                let c = Contract::from_shape(role, task, Source::Builtin, shape);
                all.insert((role.clone(), task.clone()), c);
            }
        }
        all
    })
}

/// The contract for a (normalised) role and task, if there is one.
pub fn contract_for(role: &str, task: &str) -> Option<&'static Contract> {
    let all = all();
    let task = TASK_ALIASES
        .iter()
        .find(|(r, alias, _)| *r == role && *alias == task)
        .map_or(task, |(_, _, t)| t);
    all.iter()
        .find(|((r, t), _)| r == role && t == task)
        .or_else(|| all.iter().find(|((r, t), _)| r == "*" && t == task))
        .map(|(_, c)| c)
}

/// The contract one request is held to: a built-in one, or the request's own.
#[derive(Clone)]
pub enum ContractRef {
    Builtin(&'static Contract),
    Request(Arc<Contract>),
}

impl std::ops::Deref for ContractRef {
    type Target = Contract;
    fn deref(&self) -> &Contract {
        match self {
            ContractRef::Builtin(c) => c,
            ContractRef::Request(c) => c,
        }
    }
}

impl std::fmt::Debug for ContractRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The key under which the team's agents describe their answer inside the payload.
pub const OUTPUT_STRUCTURE_KEY: &str = "_output_structure";

/// Why a request's own schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSchema(pub String);

/// The contract for one request, most specific first: the request's
/// `options.output_schema` (a JSON Schema), else the `_output_structure` its input
/// carries (the agents' field descriptions), else the built-in one for its role/task.
pub fn resolve(
    role: &str,
    task: &str,
    output_schema: Option<&Value>,
    input: &Value,
) -> Result<Option<ContractRef>, BadSchema> {
    if let Some(schema) = output_schema {
        if !schema.is_object() {
            return Err(BadSchema("must be a JSON Schema object".into()));
        }
        within_bounds(schema)?;
        let mut schema = schema.clone();
        if schema.get("title").is_none() {
            schema["title"] = Value::String(format!("{role}/{task} (request)"));
        }
        let c = Contract::from_schema(role, task, Source::RequestSchema, schema)
            .map_err(|e| BadSchema(format!("is not a valid JSON Schema: {e}")))?;
        return Ok(Some(ContractRef::Request(Arc::new(c))));
    }
    if let Some(shape) = input
        .get(OUTPUT_STRUCTURE_KEY)
        .and_then(shape::Shape::from_descriptions)
    {
        let c = Contract::from_shape(role, task, Source::RequestStructure, shape);
        return Ok(Some(ContractRef::Request(Arc::new(c))));
    }
    Ok(contract_for(role, task).map(ContractRef::Builtin))
}

/// Whether a caller's schema is small enough to build or check answers with (see
/// [`MAX_SCHEMA_DEPTH`], [`MAX_SCHEMA_NODES`], [`MAX_LEAST_ANSWER`]).
pub fn within_bounds(schema: &Value) -> Result<(), BadSchema> {
    let (nodes, depth) = extent(schema);
    if depth > MAX_SCHEMA_DEPTH || nodes > MAX_SCHEMA_NODES {
        return Err(BadSchema(format!(
            "is too large to check answers against ({nodes} objects and lists, nested \
             {depth} deep; at most {MAX_SCHEMA_NODES} and {MAX_SCHEMA_DEPTH})"
        )));
    }
    let least = least_answer(schema);
    if least > MAX_LEAST_ANSWER {
        return Err(BadSchema(format!(
            "asks for an answer of at least {least} values and characters; the most a \
             request may ask for is {MAX_LEAST_ANSWER} (lower minItems or minLength)"
        )));
    }
    Ok(())
}

/// How deep a request's schema may nest (JSON levels: `properties` and the property's
/// schema are two) and how many objects and lists it may hold. Compiling a schema checks
/// it against the JSON Schema meta-schema, and that costs more than linearly with depth
/// (a 40-level chain took 1 s of a debug build's CPU): without a bound one request body
/// could hold a connection thread for minutes. Answer schemas are a few levels deep.
pub const MAX_SCHEMA_DEPTH: usize = 32;
pub const MAX_SCHEMA_NODES: usize = 2000;

/// The objects and lists in `v`, and how deep they nest (iterative: a body's nesting is
/// bounded by serde_json, but not this function's stack).
fn extent(v: &Value) -> (usize, usize) {
    let (mut nodes, mut deepest) = (0, 0);
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, depth + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, depth + 1))),
            _ => continue,
        }
        nodes += 1;
        deepest = deepest.max(depth);
    }
    (nodes, deepest)
}

/// The largest answer a request's schema may demand (values plus characters): far above
/// what a model writes within any `max_tokens`, far below what would stall a thread or
/// exhaust memory when the mock (or the validator) builds or walks it.
pub const MAX_LEAST_ANSWER: u64 = 1_000_000;

/// The size of the smallest answer `schema` accepts, counted as the mock fills it (every
/// property, the first of `anyOf`/`oneOf`/`allOf`): `minItems` multiplies down the
/// nesting, so `{"minItems": 1e6, "items": {"minItems": 1e6}}` is caught though each
/// number alone looks harmless. Saturating: an absurd schema counts as `u64::MAX`. Called
/// after [`extent`] bounded the depth, which bounds this recursion.
fn least_answer(schema: &Value) -> u64 {
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return least_answer(first);
        }
    }
    let mut size: u64 = 1;
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for s in props.values() {
            size = size.saturating_add(least_answer(s));
        }
    }
    if let Some(min) = schema.get("minItems").and_then(count) {
        let each = schema
            .get("items")
            .filter(|i| i.is_object())
            .map_or(1, least_answer);
        size = size.saturating_add(min.saturating_mul(each));
    }
    if let Some(min) = schema.get("minLength").and_then(count) {
        size = size.saturating_add(min);
    }
    size
}

/// A schema's count (`minItems`, `minLength`), also when written as a float (`1e9`).
fn count(v: &Value) -> Option<u64> {
    // `as u64` saturates: 1e300 counts as u64::MAX.
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Every contract, in a stable order.
pub fn contracts() -> impl Iterator<Item = &'static Contract> {
    all().values()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_schema_compiles_and_has_a_title() {
        for c in contracts() {
            assert!(c.schema["title"].is_string(), "{}/{}", c.role, c.task);
            assert!(compile_own(&c.schema).is_ok(), "{}/{}", c.role, c.task);
            c.validator();
            assert!(c.validator.get().is_some());
        }
        assert!(contracts().count() >= 10);
    }

    #[test]
    fn violations_name_the_path() {
        let c = contract_for("strategist", "content_plan").unwrap();
        assert!(c
            .violations(&json!({"sections": [{"id": "hero", "type": "hero", "title": "Hi"}]}))
            .is_empty());
        let v = c.violations(&json!({"sections": [{"id": "hero", "type": "hero"}]}));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "/sections/0");
        assert!(v[0].message.contains("title"), "{}", v[0]);
        assert!(!c.violations(&json!({"sections": []})).is_empty());
    }

    #[test]
    fn shapes_read_like_the_prompts_want_them() {
        let c = contract_for("copywriter", "product_detail").unwrap();
        let shape = c.shape_hint();
        // The agent's own fields, in its order.
        assert_eq!(
            shape,
            "{\"headline\": string, \"body\": string, \"features\": [string], \"cta\": string}"
        );
        let review = contract_for("reviewer", "style_check")
            .unwrap()
            .shape_hint();
        assert!(
            review.contains("\"overall_score\": number (1-10)"),
            "{review}"
        );
    }

    #[test]
    fn every_agent_task_has_a_contract_from_its_structure() {
        let agents: shape::Ordered = serde_json::from_str(AGENT_STRUCTURES).unwrap();
        let mut n = 0;
        for (role, tasks) in agents.get("agents").unwrap().fields() {
            for (task, _) in tasks.fields() {
                let c = contract_for(role, task).unwrap();
                assert!(c.shape.is_some(), "{role}/{task}");
                n += 1;
            }
        }
        assert_eq!(n, 25);
        assert_eq!(
            contract_for("reviewer", "review").unwrap().task,
            "content_review"
        );
    }

    #[test]
    fn any_role_schemas_apply_to_every_role() {
        assert_eq!(contract_for("editor", "tagging").unwrap().task, "tagging");
        assert!(contract_for("copywriter", "unknown_task").is_none());
    }
}
