//! Starting and stopping everything: the one entry point shared by the headless
//! binary and the tray app, so both run exactly the same services.
//!
//! This is the only place that knows every part: it builds the domain modules, hands
//! each the narrow handles it needs (runtime switches, provider board, store, shutdown
//! token), and gives the HTTP layer the whole [`AppState`].

use crate::config::{ConfigInput, KnownKinds, LoadedConfig, Problem};
use crate::gateway::UsageRecorder;
use crate::http::auth::{check_bind, Auth};
use crate::runtime::{ProviderBoard, RuntimeSwitches};
use crate::store::Store;
use crate::telemetry::Metrics;
use anyhow::Context;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod reload;
mod watch;
pub use reload::{ReloadError, ReloadReport};

/// How long in-flight requests get to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings that come from the command line, not the config file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Serve a non-loopback address without keys.
    pub insecure_no_auth: bool,
    /// The inputs the config was loaded from, read again by a reload (none: a reload
    /// reads the loaded config's file alone).
    pub config_input: Option<ConfigInput>,
    /// Admin keys from outside the config (the Windows service's key file), kept by a reload.
    pub extra_admin_keys: Vec<String>,
}

/// The provider kinds this build can construct, for config validation.
pub fn known_kinds() -> KnownKinds<'static> {
    static LLM: OnceLock<Vec<&'static str>> = OnceLock::new();
    static MEDIA: OnceLock<Vec<&'static str>> = OnceLock::new();
    KnownKinds {
        llm: LLM.get_or_init(|| crate::llm::providers::kinds().collect()),
        media: MEDIA.get_or_init(crate::media::provider::known_kinds),
    }
}

/// Load and validate the configuration layers (see [`crate::config`]).
pub fn load_config(input: &ConfigInput) -> Result<LoadedConfig, Vec<Problem>> {
    crate::config::load(input, &known_kinds())
}

/// Load as [`load_config`] does, as if the config file at `path` held `text` (an edit
/// checked before it is written).
pub fn load_config_edit(
    input: &ConfigInput,
    path: &std::path::Path,
    text: &str,
) -> Result<LoadedConfig, Vec<Problem>> {
    crate::config::load_edit(input, path, text, &known_kinds())
}

/// Everything a request handler can reach.
pub struct AppState {
    /// The effective config behind a swappable handle, so a reload can replace it
    /// without a restart; readers take a cheap snapshot with [`AppState::config`].
    loaded: ArcSwap<LoadedConfig>,
    pub started_at: Instant,
    /// The first address actually bound (port 0 in the config becomes a real port).
    pub bound: SocketAddr,
    /// Every address listened on (`server.bind` may list several).
    pub bound_all: Vec<SocketAddr>,
    /// Which hosts and origins keyless (browser) requests may use (reloadable).
    browser: ArcSwap<crate::http::browser::BrowserPolicy>,
    /// Every address the Desk listens on, for the browser policy a reload rebuilds.
    listen_addrs: Vec<SocketAddr>,
    /// Per-key and per-client request limits.
    pub limiter: Arc<crate::http::limits::Limiter>,
    /// Signs the media file URLs the Desk hands out.
    pub signer: crate::http::urls::UrlSigner,
    /// Connection counters of the server loop.
    pub server_stats: Arc<crate::http::serve::ServerStats>,
    /// What the last retention sweep removed.
    pub last_sweep: std::sync::Mutex<Option<crate::store::SweepReport>>,
    pub data_dir: PathBuf,
    /// Keys and trusted networks (reloadable).
    auth: ArcSwap<Auth>,
    /// What a config reload reads again (none: the config was built in memory).
    config_input: Option<ConfigInput>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// What the last discovery proposed (accepting names only these).
    last_discovery: std::sync::Mutex<Vec<crate::supervisor::discover::Found>>,
    /// `--insecure-no-auth`: a reload checks keys against the served addresses with it.
    insecure_no_auth: bool,
    extra_admin_keys: Vec<String>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub runtime: Arc<RuntimeSwitches>,
    /// Which providers are known to be down (the supervisor writes, the gateways read).
    pub provider_board: Arc<ProviderBoard>,
    /// Usage rows and request metrics, shared by every gateway and front.
    pub usage: UsageRecorder,
    /// The product-detail end-to-end check jobs.
    pub flows: crate::flow::jobs::FlowJobs,
    /// A random key the app uses to call its own API (never leaves the process).
    pub internal_key: String,
    /// Cancelled when the app shuts down; long-lived streams end with it.
    pub shutdown: CancellationToken,
    /// The Media Gateway (providers, jobs, file store).
    pub media: crate::media::MediaGateway,
    /// The LLM Gateway (providers, router, prompts).
    pub llm: Arc<crate::llm::LlmGateway>,
    /// Runs and watches the `[[services]]`; writes `provider_board`.
    pub supervisor: crate::supervisor::Supervisor,
    /// CPU, RAM, disk, GPU and their recent history.
    pub system: Arc<crate::system::SystemMonitor>,
    /// Notification topics muted from the dashboard or the tray.
    pub mutes: Arc<crate::notify::Mutes>,
    /// The notifications delivered lately (`GET /api/v1/notifications`).
    pub notifications: Arc<crate::notify::RecentNotifications>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// The effective config now (with where each value came from).
    pub fn config(&self) -> Arc<LoadedConfig> {
        self.loaded.load_full()
    }

    /// Keys and trusted networks now.
    pub fn auth(&self) -> Arc<Auth> {
        self.auth.load_full()
    }

    /// Allowed hosts and origins now.
    pub fn browser(&self) -> Arc<crate::http::browser::BrowserPolicy> {
        self.browser.load_full()
    }

    /// What a notifier watches in this app.
    pub fn notifier_inputs(&self) -> crate::notify::NotifierInputs {
        crate::notify::NotifierInputs {
            events: self.supervisor.events.clone(),
            store: self.store.clone(),
            shutdown: self.shutdown.clone(),
            mutes: self.mutes.clone(),
            recent: self.notifications.clone(),
        }
    }

    /// What the tray shows at a glance.
    pub fn glance(&self) -> crate::notify::Glance {
        let mut providers = self.llm.reach();
        providers.extend(self.media.reach());
        crate::notify::glance(&self.supervisor, &self.runtime, &providers)
    }
}

/// A started app: the server task and the state behind it.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: SharedState,
    server: JoinHandle<std::io::Result<()>>,
    /// Where connections run; stopped at the end of [`Self::wait`] (or when this is
    /// dropped), after everything else.
    connection_threads: Arc<crate::http::connection_threads::ConnectionThreads>,
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
                tracing::warn!(
                    "connections still open after {SHUTDOWN_GRACE:?}; they are closed once the services have stopped"
                );
                self.server.abort();
            }
        }
        // Services stop (unless detach = true) before we return.
        self.state.supervisor.join().await;
        // Every request has ended: write the usage rows still queued.
        self.state.store.close_usage_log().await;
        // Last: a connection still open after the grace period ends here.
        self.connection_threads.stop();
        tracing::info!(
            usage_rows_written = self.state.store.usage_rows_written(),
            usage_rows_dropped = self.state.store.usage_rows_dropped(),
            "shutdown complete"
        );
        Ok(())
    }
}

/// Start the HTTP server and every configured service.
pub async fn start(loaded: LoadedConfig, opts: StartOptions) -> anyhow::Result<RunningApp> {
    let config = &loaded.config;
    let binds: Vec<SocketAddr> = config
        .server
        .bind
        .addresses()
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("server.bind {a:?} is not an address"))
        })
        .collect::<anyhow::Result<_>>()?;
    for bind in &binds {
        check_bind(*bind, &config.server, opts.insecure_no_auth).map_err(anyhow::Error::msg)?;
        if !bind.ip().is_loopback() && !config.server.has_gateway_keys() {
            tracing::warn!(%bind, "serving the network WITHOUT keys (--insecure-no-auth)");
        }
        if bind.ip().is_unspecified() && config.server.public_url.is_none() {
            tracing::warn!(
                %bind,
                "listening on every interface: list the addresses to serve in server.bind \
                 (e.g. loopback and the Tailscale address) or set server.public_url"
            );
        }
    }
    for r in &loaded.replaced_defaults {
        tracing::warn!(key = %r.key, "{r}");
    }
    for o in &loaded.env_overrides {
        tracing::warn!(
            key = %o.key,
            var = %o.var,
            replaced = %o.replaced,
            "the process environment overrides this setting (check for a stale OS variable)"
        );
    }

    // Before anything is spawned: a failure here leaves nothing running.
    let connection_threads = Arc::new(
        crate::http::connection_threads::ConnectionThreads::start(
            config.server.limits.connection_threads(),
            config.server.limits.busy_poll(),
        )
        .context("cannot start the connection threads")?,
    );
    let data_dir = config.storage.resolved_data_dir();
    let store = Store::open(&data_dir)?;
    let mut listeners = Vec::new();
    for bind in &binds {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind} (server.bind)"))?;
        listeners.push(listener);
    }
    // `[fronts.comfyui] bind`: an extra listener for ComfyUI clients without a path prefix.
    let comfy_listener =
        match crate::http::fronts::comfyui::listener_address(config, opts.insecure_no_auth)? {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (fronts.comfyui.bind)"))?,
            ),
            None => None,
        };
    // `[fronts.ollama] bind`: Ollama's API on a port of its own.
    let ollama_listener =
        match crate::http::fronts::ollama::listener_address(config, opts.insecure_no_auth)? {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (fronts.ollama.bind)"))?,
            ),
            None => None,
        };
    let bound_all: Vec<SocketAddr> = listeners
        .iter()
        .map(tokio::net::TcpListener::local_addr)
        .collect::<std::io::Result<_>>()?;
    let bound = bound_all[0];
    let signer =
        crate::http::urls::UrlSigner::open(&data_dir, Duration::from_secs(config.media.url_ttl_s))
            .context("the URL signing secret in the data folder")?;

    let internal_key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let shutdown = CancellationToken::new();
    let runtime = Arc::new(RuntimeSwitches::new(config.mode()));
    let provider_board = Arc::new(ProviderBoard::default());
    let metrics = Arc::new(Metrics::with_usage_dropped(store.usage_dropped_counter()));
    let usage = UsageRecorder::new(store.clone(), metrics.clone(), config);
    // NVML's reading comes from the system sampler once it runs.
    let system_for_gpu: Arc<std::sync::OnceLock<Arc<crate::system::SystemMonitor>>> =
        Arc::default();
    let gpu = {
        let system = system_for_gpu.clone();
        Arc::new(crate::gpu::Arbiter::new(
            config.gpu.clone(),
            Box::new(move || {
                let sample = system.get()?.latest()?;
                let g = sample.gpus.first()?;
                Some((g.memory_used_bytes?, g.memory_total_bytes?))
            }),
        ))
    };
    let links = crate::gateway::GatewayLinks {
        runtime: runtime.clone(),
        board: provider_board.clone(),
        usage: usage.clone(),
        shutdown: shutdown.clone(),
        gpu: gpu.clone(),
    };
    let llm = Arc::new(
        crate::llm::LlmGateway::from_config(&config.llm, links.clone()).context("LLM gateway")?,
    );
    let media = crate::media::MediaGateway::new(config, &data_dir, store.clone(), links)?;
    let flows = crate::flow::jobs::FlowJobs::open(store.clone(), &config.flows).await?;
    let supervisor = crate::supervisor::Supervisor::new(config, store.clone(), &data_dir);
    let system = Arc::new(crate::system::SystemMonitor::new(&config.system, &data_dir));
    let _ = system_for_gpu.set(system.clone());
    gpu.attach(llm.gpu_side(), media.gpu_side(), supervisor.events.clone());

    let mut policy_addrs = bound_all.clone();
    policy_addrs.extend(comfy_listener.as_ref().and_then(|l| l.local_addr().ok()));
    policy_addrs.extend(ollama_listener.as_ref().and_then(|l| l.local_addr().ok()));
    let browser = crate::http::browser::BrowserPolicy::new(
        &policy_addrs,
        &config.server.allowed_hosts,
        &config.server.cors_origins,
    );
    let limiter = crate::http::limits::Limiter::new(config.server.client_limits.clone());
    let state = Arc::new(AppState {
        auth: ArcSwap::from_pointee(Auth::new(&config.server).with_internal_key(&internal_key)),
        internal_key,
        config_input: opts.config_input.clone(),
        reloading: tokio::sync::Mutex::new(()),
        last_discovery: std::sync::Mutex::default(),
        insecure_no_auth: opts.insecure_no_auth,
        extra_admin_keys: opts.extra_admin_keys.clone(),
        listen_addrs: policy_addrs,
        flows,
        supervisor,
        system,
        mutes: Arc::default(),
        notifications: Arc::default(),
        runtime,
        loaded: ArcSwap::from_pointee(loaded),
        started_at: Instant::now(),
        browser: ArcSwap::from_pointee(browser),
        limiter,
        signer,
        server_stats: Arc::default(),
        last_sweep: std::sync::Mutex::default(),
        bound,
        bound_all,
        data_dir,
        store,
        metrics,
        usage,
        provider_board,
        shutdown,
        media,
        llm,
    });
    match state.media.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("resuming {n} unfinished media job(s)"),
        Err(e) => tracing::warn!("cannot look for unfinished media jobs: {e:#}"),
    }

    state
        .supervisor
        .start(state.provider_board.clone(), state.shutdown.clone());
    state.system.spawn_sampler(state.shutdown.clone());
    spawn_retention(state.clone());
    if state.config().server.watch_config {
        watch::spawn(state.clone());
    }

    let router = crate::http::router(state.clone());
    let limits = &state.config().server.limits;
    let connection_limits = crate::http::serve::ConnectionLimits {
        max_connections: limits.max_connections,
        loopback_reserve: limits.loopback_reserve,
        header_timeout: Duration::from_secs_f64(limits.header_timeout_s),
    };
    let comfy_server = comfy_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "ComfyUI's API (the /comfyui front) is also served on http://{addr}/");
        }
        crate::http::serve::serve(
            vec![l],
            crate::http::fronts::comfyui::listener_router(router.clone()),
            connection_limits,
            state.server_stats.clone(),
            connection_threads.clone(),
            state.shutdown.clone(),
        )
    });
    let ollama_server = ollama_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "Ollama's API (the /api front) is also served on http://{addr}/");
        }
        crate::http::serve::serve(
            vec![l],
            crate::http::fronts::ollama::listener_router(router.clone()),
            connection_limits,
            state.server_stats.clone(),
            connection_threads.clone(),
            state.shutdown.clone(),
        )
    });
    let main_server = crate::http::serve::serve(
        listeners,
        router,
        connection_limits,
        state.server_stats.clone(),
        connection_threads.clone(),
        state.shutdown.clone(),
    );
    let server = tokio::spawn(async move {
        let comfy = async {
            match comfy_server {
                Some(s) => s.await,
                None => Ok(()),
            }
        };
        let ollama = async {
            match ollama_server {
                Some(s) => s.await,
                None => Ok(()),
            }
        };
        let (main, comfy, ollama) = tokio::join!(main_server, comfy, ollama);
        main.and(comfy).and(ollama)
    });
    for addr in &state.bound_all {
        tracing::info!(
            %addr,
            mode = state.runtime.mode().as_str(),
            data_dir = %state.data_dir.display(),
            "Sparklio Desk is serving on http://{addr}/"
        );
    }
    record_addresses(&state.data_dir, &state.bound_all);
    Ok(RunningApp {
        addr: bound,
        state,
        server,
        connection_threads,
    })
}

/// The file in the data folder naming where the Desk last started serving, one URL a line:
/// after `server.bind` is edited (restart-only), `config reload` finds the running Desk by it.
const ADDRESS_FILE: &str = "serving-at.txt";

fn record_addresses(data_dir: &std::path::Path, addrs: &[SocketAddr]) {
    let text: String = addrs
        .iter()
        .map(|a| {
            // A wildcard is reached on loopback.
            let ip = match a.ip() {
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                    std::net::Ipv4Addr::LOCALHOST.into()
                }
                std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                    std::net::Ipv6Addr::LOCALHOST.into()
                }
                ip => ip,
            };
            format!("http://{}\n", SocketAddr::new(ip, a.port()))
        })
        .collect();
    if let Err(e) = std::fs::write(data_dir.join(ADDRESS_FILE), text) {
        tracing::warn!(
            "cannot record the serving address in {}: {e}",
            data_dir.display()
        );
    }
}

/// Where a Desk using `data_dir` last started serving (it may have stopped since).
pub fn recorded_addresses(data_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join(ADDRESS_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// How often retention runs after the sweep at start.
const SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Apply `[storage.retention]` now and once a day.
fn spawn_retention(state: SharedState) {
    tokio::spawn(async move {
        loop {
            let policy = state.config().storage.retention.clone();
            match state.store.sweep(policy).await {
                Ok((report, orphans)) => {
                    let files = state.media.files().delete_orphans(orphans).await;
                    if report.usage_rows + report.event_rows + report.job_rows + report.media_rows
                        > 0
                    {
                        tracing::info!(
                            usage = report.usage_rows,
                            events = report.event_rows,
                            jobs = report.job_rows,
                            images = report.media_rows,
                            files,
                            "retention sweep"
                        );
                    }
                    *state
                        .last_sweep
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report);
                }
                Err(e) => tracing::warn!("retention sweep failed: {e:#}"),
            }
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    });
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
