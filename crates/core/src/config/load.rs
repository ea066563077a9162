//! Loading the layers and remembering where each value came from.

use super::{validate::KnownKinds, validate::Problem, Config, GeneratorMode};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The built-in defaults, compiled in (the lowest layer).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Environment variables that override a config key, with how to read their value.
/// The first seven are the names the Sparklio backend already uses.
pub const ENV_OVERRIDES: &[(&str, &str, EnvKind)] = &[
    ("GENERATOR_MODE", "generator_mode", EnvKind::Str),
    (
        "OLLAMA_BASE_URL",
        "llm.providers.ollama.base_url",
        EnvKind::Str,
    ),
    (
        "OLLAMA_DEFAULT_MODEL",
        "llm.providers.ollama.default_model",
        EnvKind::Str,
    ),
    (
        "OLLAMA_TIMEOUT",
        "llm.providers.ollama.timeout_s",
        EnvKind::Number,
    ),
    (
        "COMFYUI_BASE_URL",
        "media.providers.comfyui.base_url",
        EnvKind::Str,
    ),
    (
        "COMFYUI_WORKFLOW_DIR",
        "media.providers.comfyui.workflow_dir",
        EnvKind::Str,
    ),
    (
        "COMFYUI_TIMEOUT",
        "media.providers.comfyui.timeout_s",
        EnvKind::Number,
    ),
    ("SPARKLIO_DESK_BIND", "server.bind", EnvKind::Str),
    ("SPARKLIO_DESK_API_KEYS", "server.api_keys", EnvKind::List),
    (
        "SPARKLIO_DESK_ADMIN_KEYS",
        "server.admin_keys",
        EnvKind::List,
    ),
    ("SPARKLIO_DESK_DATA_DIR", "storage.data_dir", EnvKind::Str),
];

/// Keys whose value counts as "a live provider is configured" when set outside the defaults.
const LIVE_PROVIDER_URL_SUFFIX: &str = ".base_url";

#[derive(Debug, Clone, Copy)]
pub enum EnvKind {
    Str,
    Number,
    /// Comma separated.
    List,
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    DotEnv { path: PathBuf, var: String },
    Env { var: String },
    Cli { flag: String },
    Derived { why: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File { path, line } => write!(f, "file {}:{}", path.display(), line),
            Source::DotEnv { path, var } => write!(f, ".env {} ({var})", path.display()),
            Source::Env { var } => write!(f, "environment {var}"),
            Source::Cli { flag } => write!(f, "command line {flag}"),
            Source::Derived { why } => write!(f, "derived: {why}"),
        }
    }
}

/// What to load from. Tests fill `env` and `dotenv` explicitly instead of touching the process.
#[derive(Debug, Clone, Default)]
pub struct ConfigInput {
    /// `--config FILE`.
    pub config_flag: Option<PathBuf>,
    /// The process environment (name → value).
    pub env: BTreeMap<String, String>,
    /// The `.env` file to read, if it exists.
    pub dotenv_path: Option<PathBuf>,
    /// Use the OS config dir when neither `--config` nor `SPARKLIO_DESK_CONFIG` is given.
    pub use_os_config_dir: bool,
}

impl ConfigInput {
    /// The config file these inputs name, or where it would be created: `--config`,
    /// else `SPARKLIO_DESK_CONFIG`, else the OS config dir (when used).
    pub fn file_to_write(&self) -> Option<PathBuf> {
        self.config_flag
            .clone()
            .or_else(|| {
                self.env
                    .get("SPARKLIO_DESK_CONFIG")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| self.use_os_config_dir.then(default_config_path).flatten())
    }

    /// The real inputs of this process: its environment and `./.env`.
    pub fn from_process(config_flag: Option<PathBuf>) -> Self {
        Self {
            config_flag,
            env: std::env::vars().collect(),
            // Absolute, so a problem it causes names the file wherever it is read.
            dotenv_path: std::path::absolute(".env").ok(),
            use_os_config_dir: true,
        }
    }
}

/// The effective config plus where every value came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Leaf key → source, for every value not at its default.
    pub provenance: BTreeMap<String, Source>,
    /// Settings the process environment overrode: (key, variable, what it replaced).
    pub env_overrides: Vec<EnvOverride>,
    /// Built-in lists the config file replaced, and what that dropped.
    pub replaced_defaults: Vec<super::replaced::ReplacedDefaults>,
}

#[derive(Debug, Clone)]
pub struct EnvOverride {
    pub key: String,
    pub var: String,
    /// The source of the value it replaced.
    pub replaced: Source,
}

impl std::ops::Deref for LoadedConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl LoadedConfig {
    /// Where the value at `key` (e.g. `server.bind`) came from.
    pub fn source_of(&self, key: &str) -> Source {
        source_in(&self.provenance, key).unwrap_or(Source::Default)
    }

    /// Record a command-line override (e.g. `--bind`).
    pub fn set_from_cli(&mut self, key: &str, flag: &str) {
        self.provenance.insert(
            key.to_string(),
            Source::Cli {
                flag: flag.to_string(),
            },
        );
    }
}

/// The source recorded for `key` or its nearest ancestor.
fn source_in(provenance: &BTreeMap<String, Source>, key: &str) -> Option<Source> {
    let mut k = key.to_string();
    loop {
        if let Some(s) = provenance.get(&k) {
            return Some(s.clone());
        }
        match k.rfind(['.', '[']) {
            Some(i) => k.truncate(i),
            None => return None,
        }
    }
}

/// The OS config file location (`…/Sparklio Desk/config/sparklio-desk.toml`).
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "Sparklio", "Sparklio Desk")
        .map(|d| d.config_dir().join("sparklio-desk.toml"))
}

pub(super) fn builtin_defaults() -> Config {
    let value: Value = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
    serde_json::from_value(value).expect("default.toml matches Config")
}

/// Load all layers, validate, and return the effective config or every problem found.
pub fn load(input: &ConfigInput, known: &KnownKinds<'_>) -> Result<LoadedConfig, Vec<Problem>> {
    load_layers(input, None, known)
}

/// Load as [`load`] does, as if the config file at `path` held `text`: an edit (a
/// discovery to be written) is checked exactly as the next load will read it, before
/// anything is written.
pub fn load_edit(
    input: &ConfigInput,
    path: &Path,
    text: &str,
    known: &KnownKinds<'_>,
) -> Result<LoadedConfig, Vec<Problem>> {
    load_layers(input, Some((path, text)), known)
}

fn load_layers(
    input: &ConfigInput,
    edit: Option<(&Path, &str)>,
    known: &KnownKinds<'_>,
) -> Result<LoadedConfig, Vec<Problem>> {
    let mut tree: Value = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
    let mut provenance = BTreeMap::new();
    let mut problems = Vec::new();
    let mut file_lines = BTreeMap::new();
    let mut replaced_defaults = Vec::new();

    // 1. The config file: --config, else SPARKLIO_DESK_CONFIG, else the OS config dir (if present).
    let file = match edit {
        Some((path, _)) => Some(path.to_path_buf()),
        None => resolve_file(input, &mut problems),
    };
    if let Some(path) = &file {
        let text = match edit {
            Some((_, text)) => Ok(text.to_string()),
            None => std::fs::read_to_string(path),
        };
        match text {
            Ok(text) => match parse_file(&text, path) {
                Ok((value, lines)) => {
                    replaced_defaults = super::replaced::replaced_defaults(&tree, &value, path);
                    merge(&mut tree, value, "", &mut |key| {
                        let line = lookup_line(&lines, key);
                        provenance.insert(
                            key.to_string(),
                            Source::File {
                                path: path.clone(),
                                line,
                            },
                        );
                    });
                    file_lines = lines;
                }
                Err(p) => problems.push(*p),
            },
            Err(e) => problems.push(Problem::new(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            )),
        }
    }

    // 2. `.env`, then 3. the process environment.
    let dotenv = read_dotenv(input, &mut problems);
    let mut env_overrides = Vec::new();
    for (var, key, kind) in ENV_OVERRIDES {
        let layers = [
            dotenv.get(*var).map(|(v, path)| {
                (
                    v.clone(),
                    Source::DotEnv {
                        path: path.clone(),
                        var: var.to_string(),
                    },
                )
            }),
            input.env.get(*var).map(|v| {
                (
                    v.clone(),
                    Source::Env {
                        var: var.to_string(),
                    },
                )
            }),
        ];
        for (raw, source) in layers.into_iter().flatten() {
            let value = match env_value(&raw, *kind) {
                Ok(v) => v,
                Err(msg) => {
                    problems.push(Problem::new(*key, format!("{source}: {msg}")));
                    continue;
                }
            };
            if let Source::Env { .. } = source {
                let replaced = provenance.get(*key).cloned().unwrap_or(Source::Default);
                env_overrides.push(EnvOverride {
                    key: key.to_string(),
                    var: var.to_string(),
                    replaced,
                });
            }
            set_path(&mut tree, key, value);
            provenance.insert(key.to_string(), source);
        }
    }

    // 4. generator_mode: explicit, else live only when a live provider was configured.
    if tree.get("generator_mode").is_none_or(Value::is_null) {
        let configured = provenance
            .iter()
            .find(|(k, s)| **s != Source::Default && k.ends_with(LIVE_PROVIDER_URL_SUFFIX))
            .map(|(k, _)| k.clone());
        let (mode, why) = match configured {
            Some(k) => (
                GeneratorMode::Live,
                format!("live provider configured ({k})"),
            ),
            None => (
                GeneratorMode::Mock,
                "no live provider configured (set GENERATOR_MODE=live or a provider base_url)"
                    .to_string(),
            ),
        };
        set_path(
            &mut tree,
            "generator_mode",
            Value::String(mode.as_str().into()),
        );
        provenance.insert("generator_mode".into(), Source::Derived { why });
    }

    // 5. Types (every mistake, not only the first), then meaning. A wrong value is
    // blamed on where it came from: a file line, or the variable that set it.
    let locate = |key: &str| match source_in(&provenance, key) {
        Some(source @ (Source::Env { .. } | Source::DotEnv { .. })) => (None, None, Some(source)),
        _ => {
            let line = file_line_for(&file_lines, key);
            (file.clone().filter(|_| line.is_some()), line, None)
        }
    };
    let (config, type_problems) = super::type_errors::deserialize_all(tree, &locate);
    problems.extend(type_problems);
    let loaded = config.map(|config| LoadedConfig {
        config,
        file: file.clone(),
        provenance,
        env_overrides,
        replaced_defaults,
    });
    if let Some(l) = &loaded {
        for mut p in super::validate(&l.config, known) {
            if let Source::File { path, line } = l.source_of(&p.key) {
                p.file = Some(path);
                p.line = Some(line);
            } else if p.line.is_none() {
                p.source = Some(l.source_of(&p.key));
            }
            problems.push(p);
        }
    }
    match loaded {
        Some(l) if problems.is_empty() => Ok(l),
        _ => Err(problems),
    }
}

fn resolve_file(input: &ConfigInput, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    if let Some(p) = &input.config_flag {
        return Some(p.clone());
    }
    if let Some(p) = input
        .env
        .get("SPARKLIO_DESK_CONFIG")
        .filter(|p| !p.is_empty())
    {
        return Some(PathBuf::from(p));
    }
    if input.use_os_config_dir {
        if let Some(p) = default_config_path().filter(|p| p.exists()) {
            return Some(p);
        }
    }
    let _ = problems;
    None
}

type DotEnv = BTreeMap<String, (String, PathBuf)>;

fn read_dotenv(input: &ConfigInput, problems: &mut Vec<Problem>) -> DotEnv {
    let mut out = DotEnv::new();
    let Some(path) = input.dotenv_path.as_ref().filter(|p| p.exists()) else {
        return out;
    };
    match dotenvy::from_path_iter(path) {
        Ok(iter) => {
            for item in iter {
                match item {
                    Ok((k, v)) => {
                        out.insert(k, (v, path.clone()));
                    }
                    Err(e) => {
                        problems.push(Problem::new("", format!(".env {}: {e}", path.display())));
                    }
                }
            }
        }
        Err(e) => problems.push(Problem::new("", format!(".env {}: {e}", path.display()))),
    }
    out
}

fn env_value(raw: &str, kind: EnvKind) -> Result<Value, String> {
    match kind {
        EnvKind::Str => Ok(Value::String(raw.to_string())),
        EnvKind::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("expected a number, got {raw:?}")),
        EnvKind::List => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
    }
}

/// Parse a config file into a JSON tree plus the line of every key.
fn parse_file(text: &str, path: &Path) -> Result<(Value, BTreeMap<String, usize>), Box<Problem>> {
    let doc = toml_edit::ImDocument::parse(text.to_string()).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let mut p = Problem::new("", format!("not valid TOML: {}", e.message()));
        p.line = line;
        p.file = Some(path.to_path_buf());
        Box::new(p)
    })?;
    let mut lines = BTreeMap::new();
    collect_lines(doc.as_table(), "", text, &mut lines);
    let value: Value = toml::from_str(text).map_err(|e| {
        let mut p = Problem::new("", format!("not valid TOML: {}", e.message()));
        p.file = Some(path.to_path_buf());
        p.line = e.span().map(|s| line_of(text, s.start));
        Box::new(p)
    })?;
    Ok((value, lines))
}

fn collect_lines(
    table: &toml_edit::Table,
    prefix: &str,
    text: &str,
    out: &mut BTreeMap<String, usize>,
) {
    for (key, item) in table {
        let path = join(prefix, key);
        if let Some(span) = table.key(key).and_then(toml_edit::Key::span) {
            out.insert(path.clone(), line_of(text, span.start));
        }
        collect_item(item, &path, text, out);
    }
}

fn collect_item(item: &toml_edit::Item, path: &str, text: &str, out: &mut BTreeMap<String, usize>) {
    match item {
        toml_edit::Item::Table(t) => {
            if let Some(span) = t.span() {
                out.entry(path.to_string())
                    .or_insert(line_of(text, span.start));
            }
            collect_lines(t, path, text, out);
        }
        toml_edit::Item::ArrayOfTables(arr) => {
            for (i, t) in arr.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if let Some(span) = t.span() {
                    out.insert(p.clone(), line_of(text, span.start));
                }
                collect_lines(t, &p, text, out);
            }
        }
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            for (k, v) in t {
                let p = join(path, k);
                if let Some(span) = v.span() {
                    out.insert(p, line_of(text, span.start));
                }
            }
        }
        toml_edit::Item::Value(toml_edit::Value::Array(arr)) => {
            for (i, v) in arr.iter().enumerate() {
                if let (Some(span), toml_edit::Value::InlineTable(t)) = (v.span(), v) {
                    let p = format!("{path}[{i}]");
                    out.insert(p.clone(), line_of(text, span.start));
                    for (k, v) in t {
                        if let Some(span) = v.span() {
                            out.insert(join(&p, k), line_of(text, span.start));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn lookup_line(lines: &BTreeMap<String, usize>, key: &str) -> usize {
    file_line_for(lines, key).unwrap_or(1)
}

/// The line of `key`, or of its nearest ancestor written in the file.
fn file_line_for(lines: &BTreeMap<String, usize>, key: &str) -> Option<usize> {
    let mut k = key.to_string();
    loop {
        if let Some(l) = lines.get(&k) {
            return Some(*l);
        }
        match k.rfind(['.', '[']) {
            Some(i) => k.truncate(i),
            None => return None,
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Deep-merge `over` into `base`: tables merge key by key, anything else replaces.
/// `on_leaf` is told every key path the overlay set.
fn merge(base: &mut Value, over: Value, prefix: &str, on_leaf: &mut dyn FnMut(&str)) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                let path = join(prefix, &k);
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge(existing, v, &path, on_leaf);
                    }
                    _ => {
                        mark_leaves(&v, &path, on_leaf);
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => {
            mark_leaves(&o, prefix, on_leaf);
            *b = o;
        }
    }
}

fn mark_leaves(v: &Value, path: &str, on_leaf: &mut dyn FnMut(&str)) {
    on_leaf(path);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                mark_leaves(v, &join(path, k), on_leaf);
            }
        }
        Value::Array(a) if a.iter().any(Value::is_object) => {
            for (i, v) in a.iter().enumerate() {
                mark_leaves(v, &format!("{path}[{i}]"), on_leaf);
            }
        }
        _ => {}
    }
}

fn set_path(tree: &mut Value, key: &str, value: Value) {
    let mut cur = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut()
        .expect("object")
        .insert(parts[parts.len() - 1].to_string(), value);
}

/// Flatten a config to `(key, value)` leaves: scalars and scalar lists are leaves,
/// tables and lists of tables are walked.
pub fn flatten(value: &Value) -> Vec<(String, Value)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    walk(v, &join(path, k), out);
                }
            }
            Value::Array(a) if a.iter().any(Value::is_object) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            Value::Null => {}
            other => out.push((path.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}
