//! Configuration: one TOML file with documented defaults, layered as
//! built-in defaults < config file < `.env` < process environment.
//!
//! Every effective value remembers where it came from ([`Source`]): two of the
//! Sparklio team's outages were stale OS environment variables silently beating
//! `.env`, so `config show` and the `serve` start-up log make that visible.

mod fronts;
mod load;
mod redact;
mod replaced;
mod type_errors;
mod validate;

pub use fronts::ComfyFrontConfig;
pub use load::flatten;
pub use load::{
    default_config_path, load, load_edit, ConfigInput, LoadedConfig, Source, DEFAULT_TOML,
    ENV_OVERRIDES,
};
pub use redact::{is_secret_key, shown};
pub use replaced::ReplacedDefaults;
pub use validate::{parse_network, validate, KnownKinds, Problem};

pub use crate::runtime::GeneratorMode;

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
    #[serde(default)]
    pub flows: FlowsConfig,
    #[serde(default)]
    pub fronts: FrontsConfig,
    #[serde(default)]
    pub gpu: GpuConfig,
}

/// How the LLM and media sides share the card's memory (`[gpu]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuArbitration {
    Off,
    /// LLM models stay loaded; an idle ComfyUI frees its models for an LLM that needs room.
    PreferLlm,
    /// ComfyUI keeps its models; idle Ollama models are unloaded for a ComfyUI job.
    PreferMedia,
    /// Each side frees memory for the other when it is idle.
    #[default]
    Fair,
}

/// `[gpu]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    pub arbitration: GpuArbitration,
    /// The card's memory in MB when NVML cannot say (no NVIDIA driver here, tests).
    pub total_mb: Option<u64>,
    /// Kept free on top of what the work needs.
    pub headroom_mb: u64,
    /// The longest a request waits for the other side to go idle (then it goes ahead).
    pub wait_s: f64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            arbitration: GpuArbitration::Fair,
            total_mb: None,
            headroom_mb: 512,
            wait_s: 60.0,
        }
    }
}

/// `[fronts.*]`: other APIs' own wire formats through the Desk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontsConfig {
    pub ollama: OllamaFrontConfig,
    pub openai: OpenAiFrontConfig,
    pub comfyui: ComfyFrontConfig,
}

/// `[fronts.ollama]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OllamaFrontConfig {
    /// An extra listener serving only Ollama's API at its own paths (`/api/chat`, …),
    /// for tools that expect an Ollama of their own on a port, e.g. `"0.0.0.0:11434"`
    /// once the containers listen elsewhere; the same keys, limits and rules as `/api`.
    pub bind: Option<String>,
}

/// `[fronts.openai]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiFrontConfig {
    /// Model names clients send → provider and model (`"gpt-4o-mini" = { provider =
    /// "ollama", model = "qwen2.5:7b" }`); installed models also answer by their own name.
    pub models: BTreeMap<String, FrontModel>,
}

/// Where a front's model name goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontModel {
    pub provider: String,
    pub model: String,
}

/// `[flows]`: the end-to-end check runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Checks run at once; more wait in a queue of `max_queue`.
    pub max_concurrent: usize,
    pub max_queue: usize,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 1,
            max_queue: 4,
        }
    }
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// One address or several (`["127.0.0.1:11500", "100.x.y.z:11500"]`).
    pub bind: BindList,
    pub api_keys: Vec<String>,
    pub admin_keys: Vec<String>,
    /// Named keys with their own settings (see `KeyConfig`); the plain lists keep working.
    pub keys: Vec<KeyConfig>,
    pub trusted_networks: Vec<String>,
    pub max_body_bytes: usize,
    /// The base of URLs the Desk hands out (`http://gpu-desktop.tailnet.ts.net:11500`).
    pub public_url: Option<String>,
    /// Host names (besides loopback, `localhost` and the bound addresses) keyless
    /// requests may use in their `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the Desk cross-site (CORS), e.g. the team's
    /// frontend `http://100.x.y.z:3000`.
    pub cors_origins: Vec<String>,
    pub limits: ServerLimits,
    /// Per client address (requests without a named key's own limits).
    pub client_limits: ClientLimits,
    /// Reload the config file by itself when it changes (opt-in).
    pub watch_config: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: BindList(vec!["127.0.0.1:11500".into()]),
            api_keys: vec![],
            admin_keys: vec![],
            keys: vec![],
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_body_bytes: 4 * 1024 * 1024,
            public_url: None,
            allowed_hosts: vec![],
            cors_origins: vec![],
            limits: ServerLimits::default(),
            client_limits: ClientLimits::default(),
            watch_config: false,
        }
    }
}

impl ServerConfig {
    /// Whether any key that opens the gateway is configured.
    pub fn has_gateway_keys(&self) -> bool {
        !self.api_keys.is_empty() || !self.admin_keys.is_empty() || !self.keys.is_empty()
    }
}

/// `server.bind`: written as one string (commas allowed, for the environment variable)
/// or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindList(pub Vec<String>);

impl BindList {
    pub fn addresses(&self) -> &[String] {
        &self.0
    }
}

impl From<&str> for BindList {
    fn from(s: &str) -> Self {
        BindList(
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

impl std::fmt::Display for BindList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl Serialize for BindList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BindList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => BindList::from(s.as_str()),
            OneOrMany::Many(v) => BindList(v),
        })
    }
}

/// What a named key opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Gateway and status routes (like `api_keys`).
    #[default]
    Gateway,
    /// Everything, control routes included (like `admin_keys`).
    Admin,
}

/// `[[server.keys]]`: a key with a name and its own rights and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub role: KeyRole,
    /// The fronts it opens (`sparklio`, `ollama`, `openai`, `comfyui`); unset: all.
    #[serde(default)]
    pub fronts: Option<Vec<String>>,
    #[serde(default)]
    pub rate_per_min: Option<u32>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// `url` or `base64`: what media answers put in `outputs[].data` for this key.
    #[serde(default)]
    pub media_return: Option<String>,
}

/// `[server.limits]`: what one connection may hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// Connections only loopback clients may use (the owner's dashboard always gets in).
    pub loopback_reserve: usize,
    /// A request's headers must arrive within this; also how long an idle keep-alive
    /// connection stays open.
    pub header_timeout_s: f64,
    /// Each piece of a request body must arrive within this.
    pub body_timeout_s: f64,
    /// Threads that run connections, each with a runtime of its own (a connection stays
    /// on one); 0 = one per core, at most [`MAX_AUTO_CONNECTION_THREADS`].
    pub connection_threads: usize,
    /// After a request of a connection alone on its thread begins or is answered, the
    /// thread polls for the next event this long instead of sleeping (0 = never).
    pub busy_poll_us: u64,
}

/// `busy_poll_us` at most.
pub const MAX_BUSY_POLL_US: u64 = 10_000;

/// `connection_threads = 0` starts one per core, up to this many.
pub const MAX_AUTO_CONNECTION_THREADS: usize = 8;
/// `connection_threads` at most (more than the cores buys nothing).
pub const MAX_CONNECTION_THREADS: usize = 16;

impl ServerLimits {
    /// How long a connection thread busy-polls after a lone connection's request.
    pub fn busy_poll(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.busy_poll_us)
    }

    /// How many connection threads to start.
    pub fn connection_threads(&self) -> usize {
        match self.connection_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .min(MAX_AUTO_CONNECTION_THREADS),
            n => n,
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            loopback_reserve: 32,
            header_timeout_s: 10.0,
            body_timeout_s: 30.0,
            connection_threads: 0,
            busy_poll_us: 300,
        }
    }
}

/// `server.client_limits`: per client address; 0 = no limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    pub rate_per_min: u32,
    pub max_concurrent: u32,
    /// Apply them to loopback clients too (off: the owner's tools are not throttled).
    pub loopback: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: Option<PathBuf>,
    pub retention: RetentionConfig,
}

/// `[storage.retention]`: what is kept, swept at start and daily. 0 = keep forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub usage_days: u32,
    pub events_days: u32,
    pub events_max_rows: u64,
    pub jobs_days: u32,
    pub media_days: u32,
    pub media_max_bytes: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            usage_days: 90,
            events_days: 90,
            events_max_rows: 50_000,
            jobs_days: 30,
            media_days: 30,
            media_max_bytes: 5 * 1024 * 1024 * 1024,
        }
    }
}

impl StorageConfig {
    /// The data folder: configured, else the OS data dir, else `./sparklio-desk-data`.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        directories::ProjectDirs::from("", "Sparklio", "Sparklio Desk").map_or_else(
            || PathBuf::from("sparklio-desk-data"),
            |d| d.data_dir().to_path_buf(),
        )
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
    /// How json-mode answers are held to their contract.
    pub validation: ValidationConfig,
}

/// What happens to a json-mode answer that breaks its contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationPolicy {
    /// One repair round-trip telling the model what was wrong, then `LLM_SCHEMA_MISMATCH`.
    #[default]
    Repair,
    /// `LLM_SCHEMA_MISMATCH` at once.
    Strict,
    /// Not validated (the answer must still be one JSON object).
    Off,
}

/// `[llm.validation]`: a default, overridden per role, then per task (the task wins).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    pub default: ValidationPolicy,
    pub roles: BTreeMap<String, ValidationPolicy>,
    pub tasks: BTreeMap<String, ValidationPolicy>,
}

impl ValidationConfig {
    pub fn policy_for(&self, role: &str, task: &str) -> ValidationPolicy {
        self.tasks
            .get(task)
            .or_else(|| self.roles.get(role))
            .copied()
            .unwrap_or(self.default)
    }
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
    /// One instance (named `main`); or list `instances` instead.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Interchangeable instances of this provider (`[[llm.providers.NAME.instances]]`).
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
    /// The whole request at most (a request may shorten it, never extend it).
    #[serde(default = "default_llm_timeout_s")]
    pub timeout_s: f64,
    /// Waiting for a TCP connection (the desktop is on the LAN: short).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Cheap calls: health probes, model lists.
    #[serde(default = "default_control_timeout_ms")]
    pub control_timeout_ms: u64,
    /// Until the first token: a cold load of a 14B–24B model from disk takes tens of seconds.
    #[serde(default = "default_first_byte_timeout_s")]
    pub first_byte_timeout_s: f64,
    /// Between two pieces of a streamed answer.
    #[serde(default = "default_idle_timeout_s")]
    pub idle_timeout_s: f64,
    #[serde(default)]
    pub resilience: ResilienceConfig,
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
    /// A provider of `kind` with every other setting at its default.
    pub fn of_kind(kind: &str) -> Self {
        toml::from_str(&format!("kind = {kind:?}")).expect("defaults for every other key")
    }

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
fn default_connect_timeout_ms() -> u64 {
    1_000
}
fn default_control_timeout_ms() -> u64 {
    3_000
}
fn default_first_byte_timeout_s() -> f64 {
    90.0
}
fn default_idle_timeout_s() -> f64 {
    30.0
}
fn default_weight() -> u32 {
    1
}

/// One instance of a provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    pub url: String,
    /// Share of the calls relative to the other instances.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Calls at once on this instance (0 = the provider's `resilience.max_concurrent`).
    #[serde(default)]
    pub max_concurrent: usize,
    #[serde(default)]
    pub max_queue: Option<usize>,
}

/// Breaker, probe and load settings of a provider's instances
/// (`[llm.providers.NAME.resilience]`, same for media).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Consecutive connect failures / timeouts / failed probes that open an instance's breaker.
    pub breaker_failures: u32,
    /// Consecutive 5xx answers that open it.
    pub breaker_errors: u32,
    /// How long it stays open before one trial (doubled after a failed trial, up to max).
    pub breaker_open_s: f64,
    pub breaker_max_open_s: f64,
    /// How often each instance gets a cheap probe (`/api/version`, `/system_stats`).
    pub probe_interval_ms: u64,
    /// Calls at once per instance (0 = no limit) and how many more may wait; beyond,
    /// requests are shed with 503 OVERLOADED.
    pub max_concurrent: usize,
    pub max_queue: usize,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            breaker_failures: 3,
            breaker_errors: 5,
            breaker_open_s: 5.0,
            breaker_max_open_s: 60.0,
            probe_interval_ms: 2_000,
            max_concurrent: 8,
            max_queue: 64,
        }
    }
}

impl ResilienceConfig {
    pub fn breaker(&self) -> crate::resilience::BreakerConfig {
        crate::resilience::BreakerConfig {
            failures: self.breaker_failures.max(1),
            errors: self.breaker_errors.max(1),
            open_for: std::time::Duration::from_secs_f64(self.breaker_open_s.max(0.05)),
            max_open: std::time::Duration::from_secs_f64(
                self.breaker_max_open_s.max(self.breaker_open_s).max(0.05),
            ),
        }
    }

    /// The instances of a provider: `instances`, else `base_url` as one named `main`.
    pub fn instances(
        &self,
        base_url: Option<&str>,
        instances: &[InstanceConfig],
    ) -> Vec<crate::resilience::InstanceSpec> {
        let one = base_url.map(|url| InstanceConfig {
            name: "main".into(),
            url: url.to_string(),
            weight: 1,
            max_concurrent: 0,
            max_queue: None,
        });
        instances
            .iter()
            .cloned()
            .chain(if instances.is_empty() { one } else { None })
            .map(|i| crate::resilience::InstanceSpec {
                url: i.url.trim_end_matches('/').to_string(),
                name: i.name,
                weight: i.weight.max(1),
                max_concurrent: if i.max_concurrent > 0 {
                    i.max_concurrent
                } else {
                    self.max_concurrent
                },
                max_queue: i.max_queue.unwrap_or(self.max_queue),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteTarget {
    pub provider: String,
    pub model: Option<String>,
    /// Tried in order when this target is unavailable, times out or fails with 5xx.
    pub fallbacks: Vec<FallbackTarget>,
}

/// Where a request goes when its route's provider cannot answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackTarget {
    pub provider: String,
    #[serde(default)]
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
    /// Tried in order when the provider is unavailable, times out or fails with 5xx
    /// (never on 4xx, validation or schema errors).
    #[serde(default)]
    pub fallbacks: Vec<FallbackTarget>,
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
    /// Workflow names callers send (`product_shot_v1`, the design's) to the workflow that
    /// draws them. A name neither here nor loaded is still refused (a typo is not
    /// silently drawn with another graph).
    pub workflow_aliases: BTreeMap<String, String>,
    /// Most images one request may ask for (`options.count`).
    pub max_count: u32,
    /// Largest width or height accepted.
    pub max_side: u32,
    /// Most pixels one request may ask for (width × height × count).
    pub max_pixels: u64,
    /// Images drawn at once (mock and live); more wait in a queue of `max_queue`.
    pub max_concurrent: usize,
    pub max_queue: usize,
    /// How long a signed file URL stays valid (the backend stores the URLs it gets).
    pub url_ttl_s: u64,
    /// After a provider restart lost a job, submit it once more (same workflow and seed).
    pub resubmit_after_restart: bool,
    /// `url` or `base64`: what `outputs[].data` holds when a request does not say
    /// (`options.return`); a key's `media_return` overrides it for that key.
    pub default_return: String,
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
            workflow_aliases: BTreeMap::new(),
            max_count: 4,
            max_side: 4096,
            max_pixels: 4096 * 4096,
            max_concurrent: 2,
            max_queue: 32,
            url_ttl_s: 7 * 24 * 3600,
            resubmit_after_restart: true,
            default_return: "url".into(),
        }
    }
}

/// How long a media job may take when `timeout_s` is not set: ComfyUI's SDXL jobs take
/// minutes on a busy card; the mock draws at once.
pub const DEFAULT_MEDIA_TIMEOUT_S: f64 = 300.0;
pub const DEFAULT_MOCK_MEDIA_TIMEOUT_S: f64 = 30.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaProviderConfig {
    pub kind: String,
    /// One instance (named `main`); or list `instances` instead.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Cheap calls: probes, `/queue`, `/history`, `/object_info`, submitting a prompt.
    #[serde(default = "default_control_timeout_ms")]
    pub control_timeout_ms: u64,
    /// After the progress socket drops or ComfyUI restarts, how long to keep looking for
    /// it before giving the job up (covers a supervised restart's start time).
    #[serde(default = "default_recovery_grace_s")]
    pub recovery_grace_s: f64,
    #[serde(default)]
    pub resilience: ResilienceConfig,
    /// Unset: [`DEFAULT_MEDIA_TIMEOUT_S`], or [`DEFAULT_MOCK_MEDIA_TIMEOUT_S`] for the mock.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub workflow_dir: Option<PathBuf>,
    /// Checkpoint put into a workflow's `checkpoint` parameter unless the request names one.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// ComfyUI's `models` folder when it is on this machine (e.g.
    /// `D:\\AI\\ComfyUI\\models`): model lists then show each file's size.
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
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

fn default_recovery_grace_s() -> f64 {
    180.0
}

impl MediaProviderConfig {
    /// A provider of `kind` with every other setting at its default.
    pub fn of_kind(kind: &str) -> Self {
        toml::from_str(&format!("kind = {kind:?}")).expect("defaults for every other key")
    }

    /// The job time limit in seconds (the configured one, else the kind's default).
    pub fn timeout_s(&self) -> f64 {
        self.timeout_s.unwrap_or(if self.kind == "mock" {
            DEFAULT_MOCK_MEDIA_TIMEOUT_S
        } else {
            DEFAULT_MEDIA_TIMEOUT_S
        })
    }
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
    /// KSampler's `sampler_name` and `scheduler` (e.g. `euler_ancestral`, `karras`).
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub scheduler: Option<String>,
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
    /// KSampler's `sampler_name` and `scheduler` (e.g. `euler_ancestral`, `karras`).
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub scheduler: Option<String>,
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
    /// Windows: when the engine cannot be reached, start Docker Desktop (once per run of
    /// Sparklio Desk) and wait for its engine. Ignored elsewhere.
    pub docker_start_desktop: bool,
    /// Docker Desktop's program; unset: its standard install path
    /// (`C:\Program Files\Docker\Docker\Docker Desktop.exe`).
    pub docker_desktop_path: Option<PathBuf>,
    /// How long to wait for the engine after starting Docker Desktop.
    pub docker_desktop_wait_s: u64,
    /// How often a blocked service (Docker not running, port taken) is checked again.
    /// Each check that finds it still blocked is counted on its one event.
    pub unavailable_recheck_ms: u64,
    /// A service's log file is rotated when it reaches this size.
    pub log_file_max_bytes: u64,
    /// Rotated log files kept per service (`name.log.1` .. `name.log.N`).
    pub log_files_kept: u32,
    /// Longer output lines are split into pieces of this many bytes.
    pub log_line_max_bytes: usize,
    /// Output kept in memory per service (besides the line count `log_lines`).
    pub log_memory_max_bytes: usize,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            docker_host: None,
            docker_start_desktop: false,
            docker_desktop_path: None,
            docker_desktop_wait_s: 120,
            unavailable_recheck_ms: 5000,
            log_file_max_bytes: 10 * 1024 * 1024,
            log_files_kept: 3,
            log_line_max_bytes: 16 * 1024,
            log_memory_max_bytes: 1024 * 1024,
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
            default_config_path().map_or_else(
                || "nothing: no OS config folder".into(),
                |p| p.display().to_string()
            )
        )),
    }
    for r in &loaded.replaced_defaults {
        out.push_str(&format!("# warning: {r}\n"));
    }
    let leaves = load::flatten(&tree);
    let width = leaves.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in leaves {
        let shown = shown(&key, &value);
        out.push_str(&format!(
            "{key:<width$} = {shown}  # {}\n",
            loaded.source_of(&key)
        ));
    }
    out
}

/// Whether two pieces of config say the same (what a reload keeps as it is). Compared
/// as their JSON form: the config types are plain data and need no `PartialEq` for it.
pub fn same_settings<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}
