//! Checking a workflow graph against ComfyUI's node catalogue (`/object_info`) before it
//! is queued, and putting a request's values into it.

use crate::media::error::{Error, ErrorKind};
use crate::media::provider::ImageSpec;
use crate::media::workflows::{ParamValues, Workflow};
use serde_json::{Map, Value};

/// Inputs that name a model file: a value missing from their list is `MODEL_NOT_FOUND`.
pub fn is_model_input(input: &str) -> bool {
    input == "ckpt_name"
        || input.ends_with("_name")
            && [
                "lora",
                "vae",
                "unet",
                "clip",
                "control_net",
                "model",
                "upscale",
                "style",
                "gligen",
                "hypernetwork",
            ]
            .iter()
            .any(|k| input.starts_with(k))
        || input.starts_with("clip_name")
}

/// The values a spec puts into its workflow.
pub fn param_values(spec: &ImageSpec, default_checkpoint: Option<&str>) -> ParamValues {
    ParamValues {
        prompt: Some(spec.prompt.clone()),
        negative_prompt: spec.negative_prompt.clone(),
        width: Some(spec.width),
        height: Some(spec.height),
        seed: Some(spec.seed),
        steps: spec.steps,
        cfg: spec.cfg,
        sampler: spec.sampler.clone(),
        scheduler: spec.scheduler.clone(),
        denoise: spec.denoise,
        checkpoint: spec
            .checkpoint
            .clone()
            .or_else(|| default_checkpoint.map(str::to_string)),
        batch_size: Some(spec.count.max(1)),
    }
}

/// Request options that name one of a node's choices: a value ComfyUI does not list is
/// the caller's mistake (400 on the option), not a broken workflow (422).
const CHOSEN_BY_THE_REQUEST: &[&str] = &["sampler", "scheduler"];

/// A graph refused at an input the request itself filled (`options.sampler` = "eular")
/// becomes a validation error on that option; anything else is left as it is.
pub fn blame_the_request(e: Error, wf: &Workflow, spec: &ImageSpec) -> Error {
    if e.kind != ErrorKind::WorkflowInvalid {
        return e;
    }
    let at = |key: &str| e.details.get(key).and_then(Value::as_str);
    let (Some(node), Some(input)) = (at("node_id"), at("input")) else {
        return e;
    };
    // Set, and not merely the graph's own value reported back.
    let given = |param: &str| {
        let value = match param {
            "sampler" => spec.sampler.as_deref(),
            "scheduler" => spec.scheduler.as_deref(),
            _ => None,
        };
        value.is_some() && value != wf.default_of(param).and_then(Value::as_str)
    };
    let blamed = CHOSEN_BY_THE_REQUEST.iter().find(|p| {
        given(p)
            && wf
                .parameters
                .get(**p)
                .is_some_and(|ts| ts.iter().any(|t| t.node == node && t.input == input))
    });
    match blamed {
        Some(p) => {
            let mut v = Error::validation(&format!("options.{p}"), e.message.clone());
            if let Some(provider) = e.details.get("provider") {
                v = v.with("provider", provider.clone());
            }
            v
        }
        None => e,
    }
}

/// The allowed values of a COMBO input spec (old `[[...], {...}]` and new `["COMBO", {options}]`).
fn combo_options(spec: &Value) -> Option<Vec<&Value>> {
    let first = spec.get(0)?;
    if let Some(list) = first.as_array() {
        return Some(list.iter().collect());
    }
    if first.as_str() == Some("COMBO") {
        return spec
            .get(1)
            .and_then(|o| o.get("options"))
            .and_then(Value::as_array)
            .map(|l| l.iter().collect());
    }
    None
}

fn is_link(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.len() == 2 && a[0].is_string() && a[1].is_u64())
}

/// Check a graph against ComfyUI's node catalogue: every node type installed, every
/// required input given, every model file present.
pub fn validate_graph(
    graph: &Map<String, Value>,
    object_info: &Map<String, Value>,
    provider: &str,
) -> Result<(), Error> {
    let invalid = |node: &str, class: &str, msg: String| {
        Error::new(
            ErrorKind::WorkflowInvalid,
            format!("node {node} ({class}): {msg}"),
        )
        .with("provider", provider)
        .with("node_id", node)
        .with("class_type", class)
    };
    for (id, node) in graph {
        let class = node.get("class_type").and_then(Value::as_str).unwrap_or("");
        let Some(info) = object_info.get(class) else {
            return Err(invalid(
                id,
                class,
                format!("node type {class:?} is not installed in ComfyUI (missing custom node?)"),
            ));
        };
        let inputs = node
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required = info.pointer("/input/required").and_then(Value::as_object);
        let optional = info.pointer("/input/optional").and_then(Value::as_object);
        for (name, _) in required.into_iter().flatten() {
            if !inputs.contains_key(name) {
                return Err(
                    invalid(id, class, format!("required input {name:?} is missing"))
                        .with("input", name.as_str()),
                );
            }
        }
        for (name, value) in &inputs {
            if is_link(value) {
                let target = value[0].as_str().unwrap_or("");
                if !graph.contains_key(target) {
                    return Err(invalid(
                        id,
                        class,
                        format!(
                            "input {name:?} links to node {target:?}, which is not in the workflow"
                        ),
                    )
                    .with("input", name.as_str()));
                }
                continue;
            }
            let spec = required
                .and_then(|r| r.get(name))
                .or_else(|| optional.and_then(|o| o.get(name)));
            let Some(options) = spec.and_then(combo_options) else {
                continue;
            };
            if options.contains(&value) {
                continue;
            }
            let mut shown: Vec<String> = options
                .iter()
                .take(20)
                .map(std::string::ToString::to_string)
                .collect();
            if options.len() > shown.len() {
                shown.push(format!("… ({} in all)", options.len()));
            }
            if is_model_input(name) {
                return Err(Error::new(ErrorKind::ModelNotFound,
                    format!(
                        "node {id} ({class}): {name} {value} is not installed in ComfyUI (available: {})",
                        if shown.is_empty() { "none".to_string() } else { shown.join(", ") }
                    ),
                )
                .with("provider", provider)
                .with("node_id", id.as_str())
                .with("class_type", class)
                .with("input", name.as_str())
                .with("model", value.clone()));
            }
            return Err(invalid(
                id,
                class,
                format!("{name} {value} is not one of {}", shown.join(", ")),
            )
            .with("input", name.as_str()));
        }
    }
    Ok(())
}
