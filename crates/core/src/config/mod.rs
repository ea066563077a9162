//! Configuration: one TOML file with documented defaults, layered as
//! built-in defaults < config file < `.env` < process environment.
//!
//! Every effective value remembers where it came from ([`Source`]): two of the
//! Sparklio team's outages were stale OS environment variables silently beating
//! `.env`, so `config show` and the `serve` start-up log make that visible.

mod load;
mod validate;

pub use load::flatten;
pub use load::{
    default_config_path, load, ConfigInput, LoadedConfig, Source, DEFAULT_TOML, ENV_OVERRIDES,
};
pub use validate::{parse_network, validate, Problem};

/// Config templates for known machines, by profile name: a starting config file that
/// `sparklio-desk config init --profile NAME` (and the Windows installer) writes when none
/// exists. `gpu-desktop`: the team's Windows 11 desktop (Ollama in Docker Desktop, ComfyUI
/// portable, everything on loopback behind the Desk).
pub const PROFILES: &[(&str, &str)] = &[("gpu-desktop", include_str!("gpu-desktop.toml"))];

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `None` in a file means "decide from the providers"; after loading it is always set.
    #[serde(default)]
    pub generator_mode: Option<GeneratorMode>,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub llm: LlmConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub supervisor: SupervisorConfig,
    #[serde(default)]
    pub system: SystemConfig,
}

impl Default for Config {
    fn default() -> Self {
        load::builtin_defaults()
    }
}

impl Config {
    /// The mode after loading (loading always fills it in).
    pub fn mode(&self) -> GeneratorMode {
        self.generator_mode.unwrap_or(GeneratorMode::Mock)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorMode {
    Mock,
    Live,
}

impl GeneratorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorMode::Mock => "mock",
            GeneratorMode::Live => "live",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: String,
    pub api_keys: Vec<String>,
    pub admin_keys: Vec<String>,
    pub trusted_networks: Vec<String>,
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:11500".into(),
            api_keys: vec![],
            admin_keys: vec![],
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: Option<PathBuf>,
}

impl StorageConfig {
    /// The data folder: configured, else the OS data dir, else `./sparklio-desk-data`.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        directories::ProjectDirs::from("", "Sparklio", "Sparklio Desk")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("sparklio-desk-data"))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub providers: BTreeMap<String, LlmProviderConfig>,
    pub default_route: RouteTarget,
    pub routes: Vec<RouteRule>,
    /// Folder of prompt templates that override the built-in ones.
    pub prompt_dir: Option<PathBuf>,
    /// Sampling defaults when a request does not set them.
    pub sampling: SamplingConfig,
}

/// Sampling defaults: a request's `options` win, then the task's, then the role's, then
/// these global values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub roles: BTreeMap<String, SamplingOverride>,
    pub tasks: BTreeMap<String, SamplingOverride>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 2000,
            roles: BTreeMap::new(),
            tasks: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingOverride {
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

impl SamplingConfig {
    /// The default (temperature, top_p, max_tokens) for a role and task.
    pub fn defaults_for(&self, role: &str, task: &str) -> (f64, f64, u32) {
        let (r, t) = (self.roles.get(role), self.tasks.get(task));
        let pick =
            |f: fn(&SamplingOverride) -> Option<f64>| t.and_then(f).or_else(|| r.and_then(f));
        (
            pick(|o| o.temperature).unwrap_or(self.temperature),
            pick(|o| o.top_p).unwrap_or(self.top_p),
            t.and_then(|o| o.max_tokens)
                .or_else(|| r.and_then(|o| o.max_tokens))
                .unwrap_or(self.max_tokens),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmProviderConfig {
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "default_llm_timeout_s")]
    pub timeout_s: f64,
    #[serde(default)]
    pub default_model: Option<String>,
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// Price in USD per 1,000 prompt / completion tokens, for the usage log's
    /// `estimated_cost_usd` (0 for local models; set it for paid providers).
    #[serde(default)]
    pub cost_per_1k_prompt_tokens: f64,
    #[serde(default)]
    pub cost_per_1k_completion_tokens: f64,
}

impl LlmProviderConfig {
    /// What `prompt` + `completion` tokens cost on this provider, in USD.
    pub fn estimated_cost_usd(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.cost_per_1k_prompt_tokens
            + completion as f64 * self.cost_per_1k_completion_tokens)
            / 1000.0
    }
}

fn default_llm_timeout_s() -> f64 {
    120.0
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteTarget {
    pub provider: String,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    #[serde(default)]
    pub name: Option<String>,
    /// Lower runs first; rules of equal priority keep their file order.
    #[serde(default)]
    pub priority: i64,
    #[serde(default, alias = "role")]
    pub roles: Vec<String>,
    #[serde(default, alias = "task")]
    pub tasks: Vec<String>,
    #[serde(default, alias = "mode")]
    pub modes: Vec<String>,
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub providers: BTreeMap<String, MediaProviderConfig>,
    /// The provider used in live mode when a request says `provider: "auto"` or nothing.
    pub default_provider: String,
    /// The kind used when a request names neither a kind nor a known task.
    pub default_kind: String,
    /// Image kinds (`product_shot`, `hero`, ...): workflow and generation defaults.
    pub kinds: BTreeMap<String, MediaKindConfig>,
    /// Business tasks of the backend's code (`product_image`, ...) mapped onto kinds.
    pub tasks: BTreeMap<String, MediaTaskConfig>,
    /// `options.aspect_ratio` ("16:9") to `[width, height]`.
    pub aspect_ratios: BTreeMap<String, [u32; 2]>,
    /// Most images one request may ask for (`options.count`).
    pub max_count: u32,
    /// Largest width or height accepted.
    pub max_side: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            default_provider: "comfyui".into(),
            default_kind: "product_shot".into(),
            kinds: BTreeMap::new(),
            tasks: BTreeMap::new(),
            aspect_ratios: BTreeMap::new(),
            max_count: 4,
            max_side: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaProviderConfig {
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "default_media_timeout_s")]
    pub timeout_s: f64,
    #[serde(default)]
    pub workflow_dir: Option<PathBuf>,
    /// Checkpoint put into a workflow's `checkpoint` parameter unless the request names one.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// How often `/history` is polled when the progress WebSocket is down.
    #[serde(default = "default_media_poll_ms")]
    pub poll_interval_ms: u64,
    /// How long a fetched `/object_info` is trusted for workflow checks.
    #[serde(default = "default_object_info_ttl_s")]
    pub object_info_ttl_s: u64,
    /// Mock only: pause per reported step, so progress is observable (0 = none).
    #[serde(default)]
    pub step_delay_ms: u64,
}

fn default_media_timeout_s() -> f64 {
    300.0
}
fn default_media_poll_ms() -> u64 {
    1_000
}
fn default_object_info_ttl_s() -> u64 {
    300
}

/// One image kind: which workflow draws it and its defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaKindConfig {
    pub workflow: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub cfg: Option<f64>,
    #[serde(default)]
    pub negative_prompt: Option<String>,
}

/// A backend task (`product_image`): the kind it means, and size/steps that win over the kind's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaTaskConfig {
    pub kind: String,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub cfg: Option<f64>,
    #[serde(default)]
    pub negative_prompt: Option<String>,
}

/// One supervised service (`[[services]]`). The key names are public interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    pub kind: ServiceKind,
    /// `process`: the program to run (only ever from this file, never from a request).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `docker`: the container name.
    #[serde(default)]
    pub container: Option<String>,
    /// The TCP port the service listens on (to report a port taken by someone else).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "yes")]
    pub autostart: bool,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default)]
    pub crash_loop: CrashLoop,
    #[serde(default)]
    pub health: Option<HealthProbe>,
    #[serde(default = "default_stop_timeout_ms")]
    pub stop_timeout_ms: u64,
    /// How long a start may take before its health probe must pass (else: unhealthy, restart).
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u64,
    /// Gateway providers this service backs (e.g. `["ollama"]`).
    #[serde(default)]
    pub provides: Vec<String>,
    /// Leave the process running when the app quits.
    #[serde(default)]
    pub detach: bool,
    /// Lines of output kept in memory per service.
    #[serde(default = "default_log_lines")]
    pub log_lines: usize,
}

fn yes() -> bool {
    true
}
fn default_stop_timeout_ms() -> u64 {
    10_000
}
fn default_log_lines() -> usize {
    2_000
}
fn default_start_timeout_ms() -> u64 {
    120_000
}

/// Settings shared by all supervised services (`[supervisor]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// Docker Engine address: `npipe:////./pipe/docker_engine`, `unix:///var/run/docker.sock`
    /// or `tcp://host:port`. Unset: the platform default (honours `DOCKER_HOST`).
    pub docker_host: Option<String>,
    /// A service's log file is rotated when it reaches this size.
    pub log_file_max_bytes: u64,
    /// Rotated log files kept per service (`name.log.1` .. `name.log.N`).
    pub log_files_kept: u32,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            docker_host: None,
            log_file_max_bytes: 10 * 1024 * 1024,
            log_files_kept: 3,
        }
    }
}

/// System status sampling (`[system]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Folder whose disk is reported (e.g. the ComfyUI models folder). Unset: the data folder.
    pub models_dir: Option<PathBuf>,
    pub sample_interval_ms: u64,
    /// How much history `GET /api/v1/system` keeps for the dashboard's charts.
    pub history_s: u64,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            models_dir: None,
            sample_interval_ms: 5_000,
            history_s: 900,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Process,
    Docker,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    #[default]
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrashLoop {
    pub restarts: u32,
    pub within_s: u64,
}

impl Default for CrashLoop {
    fn default() -> Self {
        Self {
            restarts: 5,
            within_s: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthProbe {
    pub url: String,
    #[serde(default = "default_probe_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_probe_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_probe_failures")]
    pub failures: u32,
}

fn default_probe_interval_ms() -> u64 {
    2_000
}
fn default_probe_timeout_ms() -> u64 {
    1_000
}
fn default_probe_failures() -> u32 {
    3
}

/// `config show`: every effective value, secrets redacted, with where it came from.
pub fn render_show(loaded: &LoadedConfig) -> String {
    let tree = serde_json::to_value(&loaded.config).expect("config serializes");
    let mut out = String::new();
    match &loaded.file {
        Some(f) => out.push_str(&format!("# config file: {}\n", f.display())),
        None => out.push_str(&format!(
            "# config file: none (built-in defaults; would read {})\n",
            default_config_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "nothing: no OS config folder".into())
        )),
    }
    let leaves = load::flatten(&tree);
    let width = leaves.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in leaves {
        let shown = redact(&key, &value);
        out.push_str(&format!(
            "{key:<width$} = {shown}  # {}\n",
            loaded.source_of(&key)
        ));
    }
    out
}

/// Whether a key holds a secret that must never be printed or logged.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let last = k.rsplit('.').next().unwrap_or(&k);
    ["key", "token", "secret", "password"]
        .iter()
        .any(|s| last.contains(s))
}

fn redact(key: &str, value: &serde_json::Value) -> String {
    if is_secret_key(key) {
        return match value {
            serde_json::Value::Array(a) => format!("[<{} redacted>]", a.len()),
            _ => "\"<redacted>\"".to_string(),
        };
    }
    value.to_string()
}
