//! Logging set-up and the Prometheus metrics the Sparklio team specified.
//!
//! Metrics live in a per-app registry (not a process-global recorder), so several
//! servers in one process — tests, the tray app — never mix their counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// How `serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" | "text" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (human, json)")),
        }
    }
}

/// Standard error that never fails: when it is gone (the terminal closed, the reading end
/// of a pipe exited) log lines are dropped. With plain `stderr` the subscriber reports
/// the failed write with `eprintln!`, which panics, and the task that logged dies: a
/// SIGTERM's "shutdown requested" line was enough to leave the Desk running for good.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Install the global tracing subscriber. `RUST_LOG` refines the default `info` filter.
/// Safe to call twice (the second call does nothing), so tests and the tray app can share it.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,reqwest=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmRequestLabels {
    pub provider: String,
    pub model: String,
    pub role: String,
    pub task: String,
    /// `success` or `error`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCodeLabels {
    pub provider: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaRequestLabels {
    pub provider: String,
    pub kind: String,
    /// `success` or `error`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderKindLabels {
    pub provider: String,
    pub kind: String,
}

/// Native fronts (`/comfyui/*`, ...): which front, which endpoint, how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontRequestLabels {
    pub front: String,
    pub endpoint: String,
    /// The HTTP status class: `2xx`, `4xx`, `5xx`, ...
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontEndpointLabels {
    pub front: String,
    pub endpoint: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(1.0, 2.0, 17))
}

/// The gateway's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub llm_requests: Family<LlmRequestLabels, Counter>,
    pub llm_latency_ms: HistogramFamily<ProviderModelLabels>,
    pub llm_errors: Family<ProviderCodeLabels, Counter>,
    pub media_requests: Family<MediaRequestLabels, Counter>,
    pub media_latency_ms: HistogramFamily<ProviderKindLabels>,
    pub front_requests: Family<FrontRequestLabels, Counter>,
    pub front_latency_ms: HistogramFamily<FrontEndpointLabels>,
    /// Usage rows lost because the usage log's queue stayed full (or SQLite refused
    /// them); zero in a healthy Desk. The store counts, this exposes.
    pub usage_rows_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_usage_dropped(Counter::default())
    }

    /// Metrics exposing the store's count of dropped usage rows
    /// ([`crate::store::Store::usage_dropped_counter`]).
    pub fn with_usage_dropped(usage_rows_dropped: Counter) -> Self {
        let mut registry = Registry::default();
        let llm_requests = Family::<LlmRequestLabels, Counter>::default();
        let llm_latency_ms =
            HistogramFamily::<ProviderModelLabels>::new_with_constructor(latency_histogram);
        let llm_errors = Family::<ProviderCodeLabels, Counter>::default();
        let media_requests = Family::<MediaRequestLabels, Counter>::default();
        let media_latency_ms =
            HistogramFamily::<ProviderKindLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "llm_gateway_requests",
            "LLM gateway requests",
            llm_requests.clone(),
        );
        registry.register(
            "llm_gateway_latency_ms",
            "LLM gateway latency in milliseconds",
            llm_latency_ms.clone(),
        );
        registry.register(
            "llm_gateway_errors",
            "LLM gateway errors by code",
            llm_errors.clone(),
        );
        registry.register(
            "media_gateway_requests",
            "Media gateway requests",
            media_requests.clone(),
        );
        registry.register(
            "media_gateway_latency_ms",
            "Media gateway latency in milliseconds",
            media_latency_ms.clone(),
        );
        let front_requests = Family::<FrontRequestLabels, Counter>::default();
        let front_latency_ms =
            HistogramFamily::<FrontEndpointLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "front_requests",
            "Requests to the native fronts (ComfyUI's, ...) by front and endpoint",
            front_requests.clone(),
        );
        registry.register(
            "front_latency_ms",
            "Native front latency in milliseconds (to the answer's headers)",
            front_latency_ms.clone(),
        );
        registry.register(
            "usage_rows_dropped",
            "Usage rows lost (the usage log's queue stayed full, or the database refused them)",
            usage_rows_dropped.clone(),
        );
        Self {
            registry,
            usage_rows_dropped,
            llm_requests,
            llm_latency_ms,
            llm_errors,
            media_requests,
            media_latency_ms,
            front_requests,
            front_latency_ms,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

pub type SharedMetrics = Arc<Metrics>;
