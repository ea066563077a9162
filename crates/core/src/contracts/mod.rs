//! Role contracts: the JSON Schema each agent role/task's JSON answer must satisfy.
//!
//! The gateway validates json-mode answers against these (one repair round-trip, then
//! `LLM_SCHEMA_MISMATCH`), the mock provider's answers are tested against them, and
//! `GET /api/v1/llm/schemas` publishes them so callers know what they will get.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// `(role, task, schema text)`; role `*` matches any role.
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
        "strategist",
        "brand_kit",
        include_str!("schemas/strategist.brand_kit.json"),
    ),
    (
        "strategist",
        "campaign",
        include_str!("schemas/strategist.campaign.json"),
    ),
    (
        "copywriter",
        "product_detail",
        include_str!("schemas/copywriter.product_detail.json"),
    ),
    (
        "copywriter",
        "sns",
        include_str!("schemas/copywriter.sns.json"),
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
    (
        "reviewer",
        "content_review",
        include_str!("schemas/reviewer.content_review.json"),
    ),
    (
        "reviewer",
        "review",
        include_str!("schemas/reviewer.content_review.json"),
    ),
    (
        "optimizer",
        "seo_optimize",
        include_str!("schemas/optimizer.seo_optimize.json"),
    ),
    (
        "editor",
        "proofread",
        include_str!("schemas/editor.proofread.json"),
    ),
    ("*", "tagging", include_str!("schemas/any.tagging.json")),
    (
        "*",
        "short_summary",
        include_str!("schemas/any.short_summary.json"),
    ),
];

/// One schema, compiled.
pub struct Contract {
    pub role: &'static str,
    pub task: &'static str,
    pub schema: Value,
    validator: jsonschema::Validator,
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
        self.validator
            .iter_errors(answer)
            .map(|e| Violation {
                path: e.instance_path.to_string(),
                message: e.to_string(),
            })
            .collect()
    }

    /// A compact description of the expected shape, for prompts and repair requests.
    pub fn shape_hint(&self) -> String {
        serde_json::to_string(&self.schema).unwrap_or_default()
    }
}

fn all() -> &'static BTreeMap<(&'static str, &'static str), Contract> {
    static CONTRACTS: OnceLock<BTreeMap<(&'static str, &'static str), Contract>> = OnceLock::new();
    CONTRACTS.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|(role, task, text)| {
                let schema: Value = serde_json::from_str(text).expect("built-in schema is JSON");
                let validator =
                    jsonschema::validator_for(&schema).expect("built-in schema compiles");
                (
                    (*role, *task),
                    Contract {
                        role,
                        task,
                        schema,
                        validator,
                    },
                )
            })
            .collect()
    })
}

/// The contract for a (normalised) role and task, if there is one.
pub fn contract_for(role: &str, task: &str) -> Option<&'static Contract> {
    let all = all();
    all.iter()
        .find(|((r, t), _)| *r == role && *t == task)
        .or_else(|| all.iter().find(|((r, t), _)| *r == "*" && *t == task))
        .map(|(_, c)| c)
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
    fn any_role_schemas_apply_to_every_role() {
        assert_eq!(contract_for("editor", "tagging").unwrap().task, "tagging");
        assert!(contract_for("copywriter", "unknown_task").is_none());
    }
}
