//! `sparklio-desk`: the headless app. Runs exactly the services the tray app runs.

mod discover;
mod e2e;
mod listen;
mod models;
mod profile;
mod reload;
mod winservice;

use clap::{Parser, Subcommand};
use sparklio_core::config::{self, ConfigInput, LoadedConfig, Problem};
use sparklio_core::llm::router::{RouteQuery, Router};
use sparklio_core::llm::wire::GenerateBody;
use sparklio_core::telemetry::{init_tracing, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: lower CPU per request and an RSS that
/// stays flat under load (docs/performance.md); without transparent huge pages (`main`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sparklio-desk",
    version,
    about = "Sparklio Desk: the LLM and Media gateway and supervisor for Sparklio's GPU desktop",
    long_about = "Sparklio Desk runs on the GPU desktop. It serves the LLM Gateway and Media Gateway \
that Sparklio's backend calls over the LAN, keeps Ollama and ComfyUI running, and serves a dashboard.\n\n\
With no config it runs in mock mode on 127.0.0.1:11500: every answer has the live shape, no network needed.\n\n\
Config: --config FILE, else $SPARKLIO_DESK_CONFIG, else the OS config folder; then ./.env; then the \
environment (GENERATOR_MODE, OLLAMA_BASE_URL, COMFYUI_BASE_URL, ...). `config show` tells where each value came from."
)]
struct Cli {
    /// Config file (TOML). Default: $SPARKLIO_DESK_CONFIG, else the OS config folder.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway, the supervisor and the dashboard until Ctrl-C / SIGTERM.
    Serve {
        /// Listen here instead of server.bind (e.g. 0.0.0.0:11500; needs api_keys).
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        /// Log format: human or json.
        #[arg(long, default_value = "human", value_name = "FORMAT")]
        log_format: LogFormat,
        /// Serve a non-loopback address even though no api_keys are configured.
        #[arg(long)]
        insecure_no_auth: bool,
        /// Data folder (database, media, logs) instead of storage.data_dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run as a Windows service, so the gateway and supervision come back after a reboot
    /// without anyone logging in (install/uninstall need an elevated prompt).
    #[command(subcommand)]
    Service(winservice::ServiceCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show which LLM provider and model a request would get, and which rule decided.
    Route {
        /// Agent role (aliases such as brief_agent are resolved).
        #[arg(long)]
        role: String,
        /// Business task (e.g. product_detail).
        #[arg(long)]
        task: String,
        /// json, text or chat.
        #[arg(long, default_value = "json")]
        mode: String,
        /// Force a provider, as options.provider does.
        #[arg(long)]
        provider: Option<String>,
        /// Force a model, as options.model / override_model do.
        #[arg(long)]
        model: Option<String>,
    },
    /// Checks of the whole stack.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Secrets the Desk keeps in its data folder.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Find Ollama and ComfyUI on this machine (ports, Docker, folders) and propose config
    /// entries; --write adds them to the config file.
    Discover(discover::Args),
    /// Act on the LLM providers' models: list, pull (with progress), cancel, rm, load, unload.
    Models {
        #[command(subcommand)]
        action: models::ModelsCommand,
        #[command(flatten)]
        target: models::Target,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new secret for signed image URLs. URLs signed with the previous secret keep
    /// working for one media.url_ttl_s (the backend stores URLs); a running Desk picks the
    /// new secret up within seconds.
    RotateUrlSecret,
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Run the product-detail flow (six agent roles and one image) through the gateway's
    /// HTTP API and report each step. Exit code 1 names the failed step.
    E2e {
        /// Use the live providers (Ollama, ComfyUI) instead of mock answers.
        #[arg(long)]
        live: bool,
        /// Brand and product as JSON ({"brand": {...}, "product": {...}}). Default: the team's sample.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Where to write the result JSON; the image is saved beside it (same name, .png).
        #[arg(long, value_name = "FILE", default_value = "e2e-result.json")]
        out: PathBuf,
        /// Check a running Sparklio Desk (e.g. http://100.120.180.42:11500) instead of starting one here.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Bearer key for --url when this machine is not on its trusted networks (default:
        /// $SPARKLIO_DESK_API_KEY, as the backend's .env and the Python client name it, else
        /// the older $SPARKLIO_DESK_KEY).
        #[arg(
            long,
            value_name = "KEY",
            env = "SPARKLIO_DESK_API_KEY",
            hide_env_values = true
        )]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate; print each problem with its key and line; exit 1 on any problem.
    Check,
    /// Print every effective value (secrets redacted) and where it came from.
    Show,
    /// Print the built-in default config file, a documented starting point (or a profile's
    /// template with --profile).
    Default {
        /// A machine profile: gpu-desktop.
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
    },
    /// Write a profile's config template where the config file is read (--config, else
    /// $SPARKLIO_DESK_CONFIG, else the OS config folder). An existing file is kept.
    Init {
        /// The machine profile: gpu-desktop (Windows 11 desktop, Docker Desktop, ComfyUI portable).
        #[arg(long, value_name = "NAME", default_value = "gpu-desktop")]
        profile: String,
        /// The portable ComfyUI folder (holding python_embeded and ComfyUI); default D:\AI\ComfyUI.
        #[arg(long, value_name = "DIR")]
        comfyui_dir: Option<PathBuf>,
        /// This machine's Tailscale address (`tailscale ip -4`), written into the bind examples.
        #[arg(long, value_name = "IP")]
        tailscale_ip: Option<std::net::IpAddr>,
        /// A client address or network that needs no key (repeatable), e.g. the Mac mini's
        /// Tailscale address.
        #[arg(long, value_name = "NET")]
        trust: Vec<String>,
        /// Replace an existing config file.
        #[arg(long)]
        force: bool,
    },
    /// Ask the running Desk to apply the edited config file now (services, providers,
    /// routes, keys) without a restart; bind addresses and data_dir still need one.
    /// When no Desk answers, it names the address tried and, after an edit of
    /// server.bind, the address a Desk started from this file still answers on.
    Reload {
        /// The running Desk (default: the configured bind address).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Its admin key (default: $SPARKLIO_DESK_ADMIN_KEY, else the service's admin.key;
        /// none needed from loopback).
        #[arg(long, env = "SPARKLIO_DESK_ADMIN_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

fn main() -> ExitCode {
    sparklio_core::platform::small_pages_only();
    let cli = Cli::parse();
    match cli.command {
        Command::Config(cmd) => config_command(cli.config, cmd),
        Command::Check(CheckCommand::E2e {
            live,
            input,
            out,
            url,
            key,
        }) => {
            init_tracing(LogFormat::Human);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(e2e::run(e2e::Args {
                config: cli.config,
                live,
                input,
                out,
                url,
                key: key.or_else(|| {
                    std::env::var("SPARKLIO_DESK_KEY")
                        .ok()
                        .filter(|k| !k.is_empty())
                }),
            }))
        }
        Command::Keys(KeysCommand::RotateUrlSecret) => match load(cli.config) {
            Ok(l) => {
                let dir = l.storage.resolved_data_dir();
                let ttl = std::time::Duration::from_secs(l.media.url_ttl_s);
                match sparklio_core::http::urls::UrlSigner::rotate(&dir, ttl) {
                    Ok(()) => {
                        println!(
                            "new URL signing secret in {}; URLs signed before stay valid for {} s",
                            dir.display(),
                            ttl.as_secs()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: cannot write the secret in {}: {e}", dir.display());
                        ExitCode::FAILURE
                    }
                }
            }
            Err(code) => code,
        },
        Command::Route {
            role,
            task,
            mode,
            provider,
            model,
        } => match load(cli.config) {
            Ok(l) => route_command(&l, role, task, mode, provider, model),
            Err(code) => code,
        },
        Command::Serve {
            bind,
            log_format,
            insecure_no_auth,
            data_dir,
        } => {
            init_tracing(log_format);
            let loaded = match load(cli.config.clone()) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let opts = ServeOptions {
                bind,
                insecure_no_auth,
                data_dir,
                admin_key_file: false,
                config_input: ConfigInput::from_process(cli.config),
            };
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(serve(loaded, opts, None)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Service(cmd) => winservice::command(cli.config, cmd),
        Command::Discover(args) => match load(cli.config.clone()) {
            Ok(l) => {
                let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
                runtime.block_on(discover::run(&l, cli.config, args))
            }
            Err(code) => code,
        },
        Command::Models { action, target } => match load(cli.config) {
            Ok(l) => {
                let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
                runtime.block_on(models::run(l, action, target))
            }
            Err(code) => code,
        },
    }
}

fn load(file: Option<PathBuf>) -> Result<LoadedConfig, ExitCode> {
    sparklio_core::load_config(&ConfigInput::from_process(file)).map_err(|problems| {
        print_problems(&problems);
        ExitCode::FAILURE
    })
}

fn print_problems(problems: &[Problem]) {
    eprintln!("config: {} problem(s):", problems.len());
    for p in problems {
        eprintln!("  {p}");
    }
}

fn config_command(file: Option<PathBuf>, cmd: ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Default { profile: None } => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        ConfigCommand::Default {
            profile: Some(name),
        } => match profile::template(&name) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        ConfigCommand::Init {
            profile,
            comfyui_dir,
            tailscale_ip,
            trust,
            force,
        } => {
            let answers = profile::Answers {
                comfyui_dir,
                tailscale_ip,
                trust,
            };
            init_command(file, &profile, &answers, force)
        }
        ConfigCommand::Check => match load(file) {
            Ok(l) => {
                match &l.file {
                    Some(f) => println!("config ok: {}", f.display()),
                    None => println!("config ok: built-in defaults (no config file)"),
                }
                for w in listen::warnings(&l.config) {
                    println!("warning: {w}");
                }
                for r in &l.replaced_defaults {
                    println!("warning: {r}");
                }
                for o in &l.env_overrides {
                    println!(
                        "note: {} is set by the environment variable {} (replacing {})",
                        o.key, o.var, o.replaced
                    );
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        ConfigCommand::Reload { url, key } => match load(file) {
            Ok(l) => tokio::runtime::Runtime::new()
                .expect("tokio runtime")
                .block_on(reload::run(&l, url, key)),
            Err(code) => code,
        },
        ConfigCommand::Show => match load(file) {
            Ok(l) => {
                print!("{}", config::render_show(&l));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

/// Where `config init` writes: --config, else $SPARKLIO_DESK_CONFIG, else the OS folder.
pub(crate) fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("SPARKLIO_DESK_CONFIG").map(PathBuf::from))
        .or_else(config::default_config_path)
}

fn init_command(
    file: Option<PathBuf>,
    name: &str,
    answers: &profile::Answers,
    force: bool,
) -> ExitCode {
    let text = match profile::render(name, answers) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(path) = config_path(file) else {
        eprintln!("error: no config folder on this system: pass --config FILE");
        return ExitCode::FAILURE;
    };
    match profile::write(&path, &text, force) {
        Ok(true) => {
            println!("wrote the {name} config: {}", path.display());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!(
                "kept the existing config: {} (--force replaces it)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn route_command(
    loaded: &LoadedConfig,
    role: String,
    task: String,
    mode: String,
    provider: Option<String>,
    model: Option<String>,
) -> ExitCode {
    let body = serde_json::json!({
        "role": role, "task": task, "mode": mode, "payload": {},
        "options": {"provider": provider, "model": model},
    });
    let request = match serde_json::from_value::<GenerateBody>(body)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.normalize(&loaded.config.llm.sampling)
                .map_err(|e| e.to_string())
        }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (decision, why) = Router::new(&loaded.config.llm).explain(&RouteQuery {
        role: &request.role,
        task: &request.task,
        mode: &request.mode,
        provider: request.provider.as_deref(),
        model: request.model.as_deref(),
    });
    if let Some(alias) = &request.requested_role {
        println!("role:     {} (alias of {alias})", request.role);
    }
    println!("provider: {}", decision.provider);
    println!(
        "model:    {}",
        decision
            .model
            .as_deref()
            .unwrap_or("<none: set a model or default_model>")
    );
    println!("matched:  {}", decision.matched);
    println!("why:      {why}");
    if loaded.config.mode() == sparklio_core::config::GeneratorMode::Mock {
        println!(
            "note:     generator_mode is mock: the mock provider answers, reporting this model"
        );
    }
    let Some(provider) = loaded.config.llm.providers.get(&decision.provider) else {
        eprintln!("error: provider {:?} is not configured", decision.provider);
        return ExitCode::FAILURE;
    };
    if let (Some(model), Some(url)) = (decision.model.as_deref(), provider.base_url.as_deref()) {
        if provider.kind == "ollama" {
            println!("{}", installed_line(url, &decision.provider, model));
        }
    }
    ExitCode::SUCCESS
}

/// Whether the routed model is installed, asked of the provider (briefly).
fn installed_line(url: &str, provider: &str, model: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let tags = runtime.block_on(async {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(1500))
            .no_proxy()
            .build()
            .ok()?
            .get(format!("{}/api/tags", url.trim_end_matches('/')))
            .send()
            .await
            .ok()?
            .json::<serde_json::Value>()
            .await
            .ok()
    });
    let Some(tags) = tags else {
        return format!("installed: unknown ({provider} at {url} does not answer)");
    };
    let has = tags["models"].as_array().into_iter().flatten().any(|m| {
        m["name"]
            .as_str()
            .is_some_and(|n| sparklio_core::llm::same_model(n, model))
    });
    if has {
        format!("installed: yes, on {provider}")
    } else {
        format!("installed: MISSING on {provider} (sparklio-desk models pull {model})")
    }
}

/// Command-line settings of `serve` (and of the Windows service, which runs the same).
pub(crate) struct ServeOptions {
    pub bind: Option<SocketAddr>,
    pub insecure_no_auth: bool,
    pub data_dir: Option<PathBuf>,
    /// Accept the key in `<data_dir>/admin.key` (created if missing) as an admin key: the
    /// Windows service does, so the tray app can control it.
    pub admin_key_file: bool,
    /// What the config was loaded from (a reload reads it again).
    pub config_input: ConfigInput,
}

/// Run until `stop` is notified, or (without one) until Ctrl-C / SIGTERM / console close.
pub(crate) async fn serve(
    mut loaded: LoadedConfig,
    opts: ServeOptions,
    stop: Option<std::sync::Arc<tokio::sync::Notify>>,
) -> anyhow::Result<()> {
    if let Some(addr) = opts.bind {
        loaded.config.server.bind =
            sparklio_core::config::BindList::from(addr.to_string().as_str());
        loaded.set_from_cli("server.bind", "--bind");
    }
    if let Some(dir) = opts.data_dir {
        loaded.config.storage.data_dir = Some(dir);
        loaded.set_from_cli("storage.data_dir", "--data-dir");
    }
    let mut extra_admin_keys = Vec::new();
    if opts.admin_key_file {
        let dir = loaded.config.storage.resolved_data_dir();
        let key = sparklio_core::platform::keyfile::ensure_admin_key(&dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the admin key file {}: {e}",
                sparklio_core::platform::keyfile::admin_key_path(&dir).display()
            )
        })?;
        loaded.config.server.admin_keys.push(key.clone());
        extra_admin_keys.push(key);
    }
    // The same doors `config check` reports: a service (or the Desk) open to the whole LAN.
    for w in listen::warnings(&loaded.config) {
        tracing::warn!("{w}");
    }
    if let Some(v) = sparklio_core::platform::wine_version() {
        tracing::info!(
            "running under Wine {v}: console control events are not delivered (see docs/windows.md)"
        );
    }
    // Listen for signals before anything starts, so none is missed.
    let signal: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match stop {
        Some(n) => Box::pin(async move { n.notified().await }),
        None => Box::pin(sparklio_core::app::shutdown_signal()),
    };
    let app = sparklio_core::start(
        loaded,
        sparklio_core::StartOptions {
            insecure_no_auth: opts.insecure_no_auth,
            config_input: Some(opts.config_input),
            extra_admin_keys,
        },
    )
    .await?;
    let waiter = app.state.shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        waiter.cancel();
    });
    // Headless: what the tray would show as a desktop notification goes to the log.
    sparklio_core::notify::Notifier::spawn(
        app.state.notifier_inputs(),
        Default::default(),
        |n: sparklio_core::notify::Notification| tracing::info!(level = ?n.level, body = %n.body, "notification: {}", n.title),
    );
    app.wait().await
}
