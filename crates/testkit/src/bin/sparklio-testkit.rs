//! `sparklio-testkit`: the Ollama or ComfyUI double as its own process, for tests that
//! drive Sparklio Desk from outside (official SDKs, fault matrices, benchmarks).

use clap::{Parser, Subcommand};
use sparklio_testkit::control::serve_control;
use sparklio_testkit::{ollama, ComfyDouble, FaultSwitch, OllamaDouble};
use std::io::Write;

const CONTROL_HELP: &str = "\
Once ready it prints one line:
  listening on 127.0.0.1:<port> control 127.0.0.1:<control-port>

Control API (JSON, on the control port, which keeps answering while the double fails):
  GET    /fault      the fault in force, e.g. {\"fault\":\"none\"}
  PUT    /fault      put one in force:
                       {\"fault\":\"hang_after_accept\"}
                       {\"fault\":\"status\",\"status\":503,\"path\":\"/api/chat\",\"times\":1}
  DELETE /fault      healthy again
  POST   /restart    {\"down_ms\":500}: drop connections, refuse the port, come back empty
  GET    /requests   what the double received (method, path, query, body), oldest first
  DELETE /requests   forget them

Faults (\"path\": only requests under that prefix; \"times\": only the next N):
  none, refuse, hang_after_accept, hang_before_headers,
  stall_mid_stream {after_chunks}, trickle {bytes, interval_ms}, status {status},
  bad_json, truncated, reset, reset_mid_stream, restart {down_ms}

Everything binds 127.0.0.1 only. Stop it with Ctrl-C or SIGTERM.";

/// Ollama and ComfyUI test doubles with faults switchable at run time.
#[derive(Parser)]
#[command(name = "sparklio-testkit", version, after_long_help = CONTROL_HELP)]
struct Cli {
    #[command(subcommand)]
    double: Double,
}

#[derive(Subcommand)]
enum Double {
    /// An Ollama double: /api/chat, /api/generate, /api/tags, /api/ps, /api/version,
    /// /api/show, /api/embed, /api/embeddings, /api/pull, /api/delete, /api/copy.
    #[command(after_long_help = CONTROL_HELP)]
    Ollama {
        #[command(flatten)]
        ports: Ports,
        /// Installed models (`/api/tags`), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = ollama::INSTALLED.iter().map(|m| m.to_string()))]
        models: Vec<String>,
        /// Loaded models (`/api/ps`), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "qwen2.5:7b")]
        loaded: Vec<String>,
    },
    /// A ComfyUI double built from recordings of ComfyUI 0.3.64: /prompt, /queue,
    /// /history, /interrupt, /free, /view, /upload/image, /object_info, /models,
    /// /system_stats, /ws (each also under /api).
    #[command(after_long_help = CONTROL_HELP)]
    Comfyui {
        #[command(flatten)]
        ports: Ports,
        /// Installed checkpoint files, comma-separated.
        #[arg(long, value_delimiter = ',')]
        checkpoints: Vec<String>,
        /// Time each node of a workflow takes, in milliseconds.
        #[arg(long, default_value_t = 0)]
        node_ms: u64,
    },
    /// A fixed-reply upstream for benchmarks: each `--reply PATH=FILE` path answers the
    /// file's bytes to every request (`.json` as application/json, anything else as
    /// application/x-ndjson); other paths answer 404. No parsing, logging or faults.
    Fixed {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long)]
        port: u16,
        /// `PATH=FILE`, e.g. `/api/chat=chat.ndjson` (repeatable).
        #[arg(long = "reply", required = true)]
        replies: Vec<String>,
    },
}

#[derive(clap::Args)]
struct Ports {
    /// Port of the double on 127.0.0.1 (0: any free port).
    #[arg(long)]
    port: u16,
    /// Port of the control API on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    control_port: u16,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> std::io::Result<()> {
    match cli.double {
        Double::Ollama {
            ports,
            models,
            loaded,
        } => {
            let names = |v: &[String]| {
                v.iter()
                    .filter(|m| !m.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let (models, loaded) = (names(&models), names(&loaded));
            let models: Vec<&str> = models.iter().map(String::as_str).collect();
            let loaded: Vec<&str> = loaded.iter().map(String::as_str).collect();
            let double = OllamaDouble::start_on(ports.port, &models, &loaded).await?;
            serve_until_stopped(double.faults(), ports.control_port, "ollama").await
        }
        Double::Fixed { port, replies } => {
            let mut table = std::collections::HashMap::new();
            for r in &replies {
                let (path, file) = r.split_once('=').ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("--reply {r:?}: expected PATH=FILE"),
                    )
                })?;
                let content_type = if file.ends_with(".json") {
                    "application/json"
                } else {
                    "application/x-ndjson"
                };
                let reply = sparklio_testkit::fixed::FixedReply {
                    content_type: content_type.into(),
                    body: std::fs::read(file)?.into(),
                };
                table.insert(path.to_string(), reply);
            }
            let (addr, _task) = sparklio_testkit::fixed::serve_fixed(port, table).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on {addr}")?;
            out.flush()?;
            drop(out);
            sparklio_core::app::shutdown_signal().await;
            Ok(())
        }
        Double::Comfyui {
            ports,
            checkpoints,
            node_ms,
        } => {
            let double = ComfyDouble::start_on(ports.port).await?;
            let checkpoints: Vec<&str> = checkpoints
                .iter()
                .map(String::as_str)
                .filter(|c| !c.is_empty())
                .collect();
            if !checkpoints.is_empty() {
                double.set_checkpoints(&checkpoints);
            }
            double.node_ms(node_ms);
            serve_until_stopped(double.faults(), ports.control_port, "comfyui").await
        }
    }
}

async fn serve_until_stopped(
    switch: &FaultSwitch,
    control_port: u16,
    name: &'static str,
) -> std::io::Result<()> {
    let control = serve_control(control_port, switch.clone(), name).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "listening on {} control {}",
        switch.addr(),
        control.addr
    )?;
    out.flush()?;
    drop(out);
    stopped().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
