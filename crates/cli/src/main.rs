//! `sparklio-desk`: the headless app. Runs exactly the services the tray app runs.

mod e2e;

use clap::{Parser, Subcommand};
use sparklio_core::config::{self, ConfigInput, LoadedConfig, Problem};
use sparklio_core::llm::router::{RouteQuery, Router};
use sparklio_core::llm::wire::GenerateBody;
use sparklio_core::telemetry::{init_tracing, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    },
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
        /// Bearer key for --url when this machine is not on its trusted networks.
        #[arg(
            long,
            value_name = "KEY",
            env = "SPARKLIO_DESK_KEY",
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
    /// Print the built-in default config file, a documented starting point.
    Default,
}

fn main() -> ExitCode {
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
                key,
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
        } => {
            init_tracing(log_format);
            let loaded = match load(cli.config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(serve(loaded, bind, insecure_no_auth)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
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
        ConfigCommand::Default => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        ConfigCommand::Check => match load(file) {
            Ok(l) => {
                match &l.file {
                    Some(f) => println!("config ok: {}", f.display()),
                    None => println!("config ok: built-in defaults (no config file)"),
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
        ConfigCommand::Show => match load(file) {
            Ok(l) => {
                print!("{}", config::render_show(&l));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
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
    let decision = Router::new(&loaded.config.llm).route(&RouteQuery {
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
    println!("why:      {}", decision.reason);
    if loaded.config.mode() == sparklio_core::config::GeneratorMode::Mock {
        println!(
            "note:     generator_mode is mock: the mock provider answers, reporting this model"
        );
    }
    if !loaded.config.llm.providers.contains_key(&decision.provider) {
        eprintln!("error: provider {:?} is not configured", decision.provider);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn serve(
    mut loaded: LoadedConfig,
    bind: Option<SocketAddr>,
    insecure_no_auth: bool,
) -> anyhow::Result<()> {
    if let Some(addr) = bind {
        loaded.config.server.bind =
            sparklio_core::config::BindList::from(addr.to_string().as_str());
        loaded.set_from_cli("server.bind", "--bind");
    }
    // Listen for signals before anything starts, so none is missed.
    let signal = sparklio_core::app::shutdown_signal();
    let app =
        sparklio_core::start(loaded, sparklio_core::StartOptions { insecure_no_auth }).await?;
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
