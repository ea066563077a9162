//! ComfyUI workflows: API-format graphs plus a small manifest naming, for each
//! parameter, the node input it goes into.
//!
//! Parameters are written into the parsed JSON (`graph[node].inputs[input] = value`),
//! never by text substitution, so no prompt can break or inject into the graph.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The parameters a manifest may map.
pub const PARAMETERS: &[&str] = &[
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "seed",
    "steps",
    "cfg",
    "sampler",
    "scheduler",
    "denoise",
    "checkpoint",
    "batch_size",
];

/// Built-in workflows: (name, graph, manifest).
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "sdxl_txt2img",
        include_str!("workflows/sdxl_txt2img.json"),
        include_str!("workflows/sdxl_txt2img.manifest.toml"),
    ),
    (
        "diagnostic",
        include_str!("workflows/diagnostic.json"),
        include_str!("workflows/diagnostic.manifest.toml"),
    ),
];

/// Loader nodes and the model file each loads: (class, input, model type as listed).
const LOADERS: &[(&str, &str, &str)] = &[
    ("CheckpointLoaderSimple", "ckpt_name", "checkpoint"),
    ("CheckpointLoader", "ckpt_name", "checkpoint"),
    ("LoraLoader", "lora_name", "lora"),
    ("LoraLoaderModelOnly", "lora_name", "lora"),
    ("VAELoader", "vae_name", "vae"),
    ("UpscaleModelLoader", "model_name", "upscaler"),
];

/// A model file a workflow needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelFile {
    /// `checkpoint`, `lora`, `vae`, `upscaler` (as model lists name them).
    #[serde(rename = "type")]
    pub model_type: String,
    pub name: String,
}

/// Where one parameter goes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub node: String,
    pub input: String,
    /// For integer inputs with a small range (e.g. a colour): write `value % modulo`.
    #[serde(default)]
    pub modulo: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Targets {
    One(Target),
    Many(Vec<Target>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    description: String,
    /// GPU memory a run needs (MB), for the arbitration with the LLM side.
    #[serde(default)]
    vram_mb: Option<u64>,
    #[serde(default)]
    parameters: BTreeMap<String, Targets>,
}

/// One loaded workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// The API-format graph: node id → `{class_type, inputs}`.
    pub graph: Map<String, Value>,
    pub parameters: BTreeMap<String, Vec<Target>>,
    /// `builtin` or the file it came from.
    pub source: String,
    /// GPU memory a run needs (MB), when the manifest says.
    pub vram_mb: Option<u64>,
}

/// Values for one run; `None` leaves the graph's own value.
#[derive(Debug, Clone, Default)]
pub struct ParamValues {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub seed: Option<u64>,
    pub steps: Option<u32>,
    pub cfg: Option<f64>,
    pub sampler: Option<String>,
    pub scheduler: Option<String>,
    pub denoise: Option<f64>,
    pub checkpoint: Option<String>,
    pub batch_size: Option<u32>,
}

impl ParamValues {
    fn get(&self, name: &str) -> Option<Value> {
        match name {
            "prompt" => self.prompt.clone().map(Value::String),
            "negative_prompt" => self.negative_prompt.clone().map(Value::String),
            "width" => self.width.map(Value::from),
            "height" => self.height.map(Value::from),
            "seed" => self.seed.map(Value::from),
            "steps" => self.steps.map(Value::from),
            "cfg" => self.cfg.map(Value::from),
            "sampler" => self.sampler.clone().map(Value::String),
            "scheduler" => self.scheduler.clone().map(Value::String),
            "denoise" => self.denoise.map(Value::from),
            "checkpoint" => self.checkpoint.clone().map(Value::String),
            "batch_size" => self.batch_size.map(Value::from),
            _ => None,
        }
    }
}

impl Workflow {
    /// The model files its loader nodes load; `checkpoint` (the configured one) replaces
    /// the graph's own where the manifest maps the `checkpoint` parameter.
    pub fn required_models(&self, checkpoint: Option<&str>) -> Vec<ModelFile> {
        let overridden: Vec<(&str, &str)> = match (checkpoint, self.parameters.get("checkpoint")) {
            (Some(_), Some(targets)) => targets
                .iter()
                .map(|t| (t.node.as_str(), t.input.as_str()))
                .collect(),
            _ => Vec::new(),
        };
        let mut out: Vec<ModelFile> = Vec::new();
        for (id, node) in &self.graph {
            let class = node.get("class_type").and_then(Value::as_str).unwrap_or("");
            for (loader, input, model_type) in LOADERS {
                if class != *loader {
                    continue;
                }
                let name = if overridden.contains(&(id.as_str(), *input)) {
                    checkpoint.map(str::to_string)
                } else {
                    node["inputs"][*input].as_str().map(str::to_string)
                };
                if let Some(name) = name {
                    let file = ModelFile {
                        model_type: (*model_type).to_string(),
                        name,
                    };
                    if !out.contains(&file) {
                        out.push(file);
                    }
                }
            }
        }
        out
    }

    /// Parse and check a graph and its manifest.
    pub fn parse(
        name: &str,
        graph_json: &str,
        manifest_toml: &str,
        source: String,
    ) -> Result<Self, String> {
        let graph: Value =
            serde_json::from_str(graph_json).map_err(|e| format!("graph is not JSON: {e}"))?;
        let Value::Object(graph) = graph else {
            return Err("graph must be a JSON object of nodes (ComfyUI API format)".into());
        };
        if graph.is_empty() {
            return Err("graph has no nodes".into());
        }
        for (id, node) in &graph {
            let class = node.get("class_type").and_then(Value::as_str);
            let inputs = node.get("inputs").and_then(Value::as_object);
            if class.is_none() || inputs.is_none() {
                return Err(format!(
                    "node {id:?} needs `class_type` and `inputs` (is this the API format? Use \"Export (API)\")"
                ));
            }
        }
        let manifest: Manifest =
            toml::from_str(manifest_toml).map_err(|e| format!("manifest: {e}"))?;
        let mut parameters = BTreeMap::new();
        for (param, targets) in manifest.parameters {
            if !PARAMETERS.contains(&param.as_str()) {
                return Err(format!(
                    "manifest: unknown parameter {param:?} (known: {})",
                    PARAMETERS.join(", ")
                ));
            }
            let targets = match targets {
                Targets::One(t) => vec![t],
                Targets::Many(v) => v,
            };
            for t in &targets {
                let has_input = graph
                    .get(&t.node)
                    .and_then(|n| n.get("inputs"))
                    .and_then(Value::as_object)
                    .is_some_and(|i| i.contains_key(&t.input));
                if !has_input {
                    return Err(format!(
                        "manifest: parameter {param:?} points at node {:?} input {:?}, which the graph does not have",
                        t.node, t.input
                    ));
                }
            }
            parameters.insert(param, targets);
        }
        Ok(Self {
            name: name.to_string(),
            description: manifest.description,
            graph,
            parameters,
            source,
            vram_mb: manifest.vram_mb,
        })
    }

    /// The graph with `values` set on their inputs, and the parameters it has no place for.
    pub fn build(&self, values: &ParamValues) -> (Map<String, Value>, Vec<String>) {
        let mut graph = self.graph.clone();
        let mut ignored = Vec::new();
        for name in PARAMETERS {
            let Some(value) = values.get(name) else {
                continue;
            };
            let Some(targets) = self.parameters.get(*name) else {
                ignored.push(name.to_string());
                continue;
            };
            for t in targets {
                let v = match (t.modulo, value.as_u64()) {
                    (Some(m), Some(n)) if m > 0 => Value::from(n % m),
                    _ => value.clone(),
                };
                if let Some(inputs) = graph
                    .get_mut(&t.node)
                    .and_then(|n| n.get_mut("inputs"))
                    .and_then(Value::as_object_mut)
                {
                    inputs.insert(t.input.clone(), v);
                }
            }
        }
        (graph, ignored)
    }

    pub fn maps(&self, param: &str) -> bool {
        self.parameters.contains_key(param)
    }

    /// The graph's own value where a parameter goes (its first target): what a run uses
    /// when the request leaves the parameter out.
    pub fn default_of(&self, param: &str) -> Option<&Value> {
        let t = self.parameters.get(param)?.first()?;
        self.graph.get(&t.node)?.get("inputs")?.get(&t.input)
    }
}

/// Every workflow a provider can run, by name.
#[derive(Debug, Clone, Default)]
pub struct Workflows {
    map: BTreeMap<String, Arc<Workflow>>,
}

impl Workflows {
    /// The built-ins, then `dir`'s `NAME.json` + `NAME.manifest.toml` pairs (which replace
    /// built-ins of the same name). Returns the problems found (a bad file is skipped).
    pub fn load(dir: Option<&Path>) -> (Self, Vec<String>) {
        let mut map = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, graph, manifest) in BUILTIN {
            let wf = Workflow::parse(name, graph, manifest, "builtin".into())
                .expect("built-in workflows are valid");
            map.insert(name.to_string(), Arc::new(wf));
        }
        if let Some(dir) = dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                    files.sort();
                    for path in files {
                        let Some(name) = workflow_name(&path) else {
                            continue;
                        };
                        let manifest_path = path.with_file_name(format!("{name}.manifest.toml"));
                        let loaded = std::fs::read_to_string(&path)
                            .map_err(|e| e.to_string())
                            .and_then(|g| {
                                let m = std::fs::read_to_string(&manifest_path).map_err(|e| {
                                    format!("no manifest {} ({e})", manifest_path.display())
                                })?;
                                Workflow::parse(&name, &g, &m, path.display().to_string())
                            });
                        match loaded {
                            Ok(wf) => {
                                map.insert(name, Arc::new(wf));
                            }
                            Err(e) => problems.push(format!("workflow {}: {e}", path.display())),
                        }
                    }
                }
                Err(e) => problems.push(format!("workflow_dir {}: {e}", dir.display())),
            }
        }
        (Self { map }, problems)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Workflow>> {
        self.map.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.map.values()
    }
}

/// `NAME` for `NAME.json`; manifests and other files are not workflows.
fn workflow_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let name = file.strip_suffix(".json")?;
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_set_values_on_the_parsed_graph() {
        let (wfs, problems) = Workflows::load(None);
        assert!(problems.is_empty());
        let wf = wfs.get("sdxl_txt2img").unwrap();
        let prompt = r#"a "quoted" {"6": {"class_type": "X"}} \ end"#;
        let (graph, ignored) = wf.build(&ParamValues {
            prompt: Some(prompt.into()),
            width: Some(512),
            seed: Some(7),
            ..Default::default()
        });
        assert!(ignored.is_empty());
        assert_eq!(graph.len(), wf.graph.len());
        let target = &wf.parameters["prompt"][0];
        assert_eq!(graph[&target.node]["inputs"][&target.input], prompt);
        let diag = wfs.get("diagnostic").unwrap();
        let (g, ignored) = diag.build(&ParamValues {
            prompt: Some("x".into()),
            seed: Some(16_777_216 + 5),
            ..Default::default()
        });
        assert_eq!(ignored, vec!["prompt".to_string()]);
        let t = &diag.parameters["seed"][0];
        assert_eq!(g[&t.node]["inputs"][&t.input], 5);
    }

    #[test]
    fn manifest_pointing_at_a_missing_input_is_refused() {
        let err = Workflow::parse(
            "x",
            r#"{"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}"#,
            "[parameters]\nheight = { node = \"1\", input = \"height\" }",
            "test".into(),
        )
        .unwrap_err();
        assert!(err.contains("height"), "{err}");
    }
}
