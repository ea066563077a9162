//! Starting and stopping everything: the one entry point shared by the headless
//! binary and the tray app, so both run exactly the same services.

use crate::config::{Config, GeneratorMode, LoadedConfig};
use crate::http::auth::{check_bind, Auth};
use crate::store::Store;
use crate::telemetry::Metrics;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests get to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings that come from the command line, not the config file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Serve a non-loopback address without keys.
    pub insecure_no_auth: bool,
}

/// Everything a request handler can reach.
pub struct AppState {
    pub loaded: LoadedConfig,
    pub started_at: Instant,
    /// The address actually bound (port 0 in the config becomes a real port).
    pub bound: SocketAddr,
    pub data_dir: PathBuf,
    pub auth: Auth,
    pub store: Store,
    pub metrics: Metrics,
    pub runtime: RuntimeSwitches,
    /// Which providers are known to be down (the supervisor writes, the gateways read).
    pub provider_board: ProviderBoard,
    /// The product-detail end-to-end check jobs.
    pub flows: crate::flow::jobs::FlowJobs,
    /// A random key the app uses to call its own API (never leaves the process).
    pub internal_key: String,
    /// Cancelled when the app shuts down; long-lived streams end with it.
    pub shutdown: CancellationToken,
    /// The Media Gateway (providers, jobs, file store).
    pub media: crate::media::MediaGateway,
    /// The LLM Gateway (providers, router, prompts).
    pub llm: crate::llm::LlmGateway,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn config(&self) -> &Config {
        &self.loaded.config
    }
}

/// Settings the tray and the control API can flip while running.
pub struct RuntimeSwitches {
    mode: AtomicU8,
    paused: AtomicBool,
}

impl RuntimeSwitches {
    fn new(mode: GeneratorMode) -> Self {
        Self {
            mode: AtomicU8::new(mode as u8),
            paused: AtomicBool::new(false),
        }
    }

    pub fn mode(&self) -> GeneratorMode {
        if self.mode.load(Ordering::Relaxed) == GeneratorMode::Live as u8 {
            GeneratorMode::Live
        } else {
            GeneratorMode::Mock
        }
    }

    pub fn set_mode(&self, mode: GeneratorMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }
}

/// What the supervisor knows about the services behind each gateway provider, so a
/// request to a provider whose service is down fails at once instead of timing out.
#[derive(Default)]
pub struct ProviderBoard {
    down: std::sync::RwLock<std::collections::HashMap<String, String>>,
}

impl ProviderBoard {
    /// Mark `provider` down, with a reason such as "service comfyui is crashed (exit code 1)".
    pub fn mark_down(&self, provider: &str, reason: impl Into<String>) {
        self.down
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_string(), reason.into());
    }

    pub fn mark_up(&self, provider: &str) {
        self.down
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(provider);
    }

    /// `Some(reason)` when the provider's service is known to be down.
    pub fn down_reason(&self, provider: &str) -> Option<String> {
        self.down
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(provider)
            .cloned()
    }
}

/// A started app: the server task and the state behind it.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: SharedState,
    server: JoinHandle<std::io::Result<()>>,
}

impl RunningApp {
    /// Ask everything to stop (returns at once).
    pub fn request_shutdown(&self) {
        self.state.shutdown.cancel();
    }

    /// Stop and wait: in-flight requests get a grace period, then connections are dropped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.request_shutdown();
        self.wait().await
    }

    /// Wait until the server has stopped (after a shutdown request from anywhere).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        self.state.shutdown.cancelled().await;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(joined) => joined
                .context("server task panicked")?
                .context("server error")?,
            Err(_) => {
                tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
                self.server.abort();
            }
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Start the HTTP server and every configured service.
pub async fn start(loaded: LoadedConfig, opts: StartOptions) -> anyhow::Result<RunningApp> {
    let config = &loaded.config;
    let bind: SocketAddr = config
        .server
        .bind
        .parse()
        .with_context(|| format!("server.bind {:?} is not an address", config.server.bind))?;
    check_bind(bind, &config.server, opts.insecure_no_auth).map_err(anyhow::Error::msg)?;
    if !bind.ip().is_loopback() && config.server.api_keys.is_empty() {
        tracing::warn!(%bind, "serving the network WITHOUT keys (--insecure-no-auth)");
    }
    for o in &loaded.env_overrides {
        tracing::warn!(
            key = %o.key,
            var = %o.var,
            replaced = %o.replaced,
            "the process environment overrides this setting (check for a stale OS variable)"
        );
    }

    let llm = crate::llm::LlmGateway::from_config(&config.llm).context("LLM gateway")?;
    let data_dir = config.storage.resolved_data_dir();
    let store = Store::open(&data_dir)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (server.bind)"))?;
    let bound = listener.local_addr()?;

    let internal_key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let flows = crate::flow::jobs::FlowJobs::open(store.clone()).await?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let media = crate::media::MediaGateway::new(
        config,
        &data_dir,
        store.clone(),
        &metrics,
        shutdown.clone(),
    )?;

    let state = Arc::new(AppState {
        auth: Auth::new(&config.server).with_internal_key(&internal_key),
        internal_key,
        flows,
        runtime: RuntimeSwitches::new(config.mode()),
        loaded,
        started_at: Instant::now(),
        bound,
        data_dir,
        store,
        metrics,
        provider_board: ProviderBoard::default(),
        shutdown,
        media,
        llm,
    });
    match state.media.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("resuming {n} unfinished media job(s)"),
        Err(e) => tracing::warn!("cannot look for unfinished media jobs: {e:#}"),
    }

    let router = crate::http::router(state.clone());
    let token = state.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    });
    tracing::info!(
        addr = %bound,
        mode = state.runtime.mode().as_str(),
        data_dir = %state.data_dir.display(),
        "Sparklio Desk is serving on http://{bound}/"
    );
    Ok(RunningApp {
        addr: bound,
        state,
        server,
    })
}

/// Resolves on Ctrl-C, SIGTERM (Unix) or the console close/break/shutdown events
/// (Windows). The handlers are installed when this is called, not when first polled, so
/// a signal that arrives right after start-up is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    #[cfg(windows)]
    let signals = {
        use tokio::signal::windows;
        (
            windows::ctrl_c().ok(),
            windows::ctrl_break().ok(),
            windows::ctrl_close().ok(),
            windows::ctrl_shutdown().ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut int, mut term) = signals;
            tokio::select! {
                _ = async { match int.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {},
                _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {},
            }
        }
        #[cfg(windows)]
        {
            let (mut c, mut b, mut cl, mut sd) = signals;
            tokio::select! {
                _ = async { match c.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {},
                _ = async { match b.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {},
                _ = async { match cl.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {},
                _ = async { match sd.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {},
            }
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}
