//! `sparklio-desk check e2e`: the product-detail flow from the command line.

use sparklio_core::client::{GatewayClient, Timeouts};
use sparklio_core::config::{Config, ConfigInput, GeneratorMode};
use sparklio_core::flow::{self, FlowEvent, FlowInput, FlowReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit code of a check stopped by Ctrl-C or SIGTERM (as a shell reports SIGINT).
const INTERRUPTED: u8 = 130;

pub struct Args {
    pub config: Option<PathBuf>,
    pub live: bool,
    pub input: Option<PathBuf>,
    pub out: PathBuf,
    pub url: Option<String>,
    pub key: Option<String>,
}

pub async fn run(args: Args) -> ExitCode {
    match run_inner(args).await {
        Ok(None) => {
            eprintln!("interrupted: the check was stopped before it finished");
            ExitCode::from(INTERRUPTED)
        }
        Ok(Some(report)) if report.ok => ExitCode::SUCCESS,
        Ok(Some(report)) => {
            eprintln!(
                "FAILED at step {}: {}",
                report.failed_step.as_deref().unwrap_or("?"),
                report.error.map(|e| e.to_string()).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The app a check starts here runs the gateway only: none of the config's services
/// (a mock check must not start ComfyUI or containers, nor leave them behind when
/// stopped), no front listeners of its own, and a scratch data folder, so a Desk serving
/// from the same config keeps its database and jobs to itself.
fn isolate(config: &mut Config, scratch: &Path, live: bool) {
    config.server.bind = "127.0.0.1:0".into();
    config.generator_mode = Some(if live {
        GeneratorMode::Live
    } else {
        GeneratorMode::Mock
    });
    config.services.clear();
    config.storage.data_dir = Some(scratch.to_path_buf());
    config.fronts.ollama.bind = None;
    config.fronts.comfyui.bind = None;
}

/// `Ok(None)`: stopped by a signal, after the app started here was shut down.
async fn run_inner(args: Args) -> anyhow::Result<Option<FlowReport>> {
    let input = match &args.input {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str::<FlowInput>(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a flow input ({{\"brand\", \"product\"}}): {e}",
                    path.display()
                )
            })?
        }
        None => FlowInput::sample(),
    };

    // Against a running instance, or one started here on a free loopback port.
    let (client, local) = match &args.url {
        Some(url) => (
            GatewayClient::new(url.clone(), args.key.clone(), Timeouts::for_mode(args.live)),
            None,
        ),
        None => {
            let mut loaded =
                sparklio_core::load_config(&ConfigInput::from_process(args.config.clone()))
                    .map_err(|problems| {
                        anyhow::anyhow!(
                            "config problems:\n  {}",
                            problems
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("\n  ")
                        )
                    })?;
            let scratch = tempfile::Builder::new()
                .prefix("sparklio-desk-check-")
                .tempdir()
                .map_err(|e| anyhow::anyhow!("cannot make a scratch data folder: {e}"))?;
            isolate(&mut loaded.config, scratch.path(), args.live);
            let app = sparklio_core::start(loaded, Default::default()).await?;
            let client = GatewayClient::new(
                format!("http://{}", app.addr),
                Some(app.state.internal_key.clone()),
                Timeouts::for_mode(args.live),
            );
            (client, Some((app, scratch)))
        }
    };
    let outcome = tokio::select! {
        checked = check(&client, &input, &args) => Some(checked),
        () = sparklio_core::app::shutdown_signal() => None,
    };
    // Whatever happened, the app started here stops (and its scratch folder goes).
    if let Some((app, scratch)) = local {
        app.shutdown().await?;
        drop(scratch);
    }
    let Some((report, image)) = outcome else {
        return Ok(None);
    };
    save(&args.out, report, image).map(Some)
}

/// The flow, printed step by step, and the image's bytes.
async fn check(
    client: &GatewayClient,
    input: &FlowInput,
    args: &Args,
) -> (FlowReport, Option<Vec<u8>>) {
    println!(
        "product-detail check, {} mode, against {}",
        if args.live { "live" } else { "mock" },
        client.base_url()
    );
    let report = flow::run(client, input, !args.live, |event| {
        if let FlowEvent::StepFinished { step, .. } = event {
            let mark = if step.status == sparklio_core::flow::StepStatus::Succeeded {
                "ok  "
            } else {
                "FAIL"
            };
            let who = format!(
                "{}/{}",
                step.provider.as_deref().unwrap_or("-"),
                step.model.as_deref().unwrap_or("-")
            );
            println!(
                "  {mark} {:<18} {:<28} {:<32} {:>8.1} ms",
                step.name,
                format!("{}/{}", step.role, step.task),
                who,
                step.ms
            );
            if let Some(err) = &step.error {
                println!("       {err}");
            }
        }
    })
    .await;
    let image = match report.result["image"]["url"].as_str() {
        Some(url) => match client.download(url).await {
            Ok((_, bytes)) => Some(bytes),
            Err(e) => {
                eprintln!("warning: could not fetch the image: {e}");
                None
            }
        },
        None => None,
    };
    (report, image)
}

/// The report as JSON at `out`, the image beside it (`.png`); errors name the file.
fn save(out: &Path, mut report: FlowReport, image: Option<Vec<u8>>) -> anyhow::Result<FlowReport> {
    let write = |path: &Path, bytes: &[u8]| -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot make the folder {}: {e}", dir.display()))?;
        }
        std::fs::write(path, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    if let Some(bytes) = image {
        let image_path = out.with_extension("png");
        write(&image_path, &bytes)?;
        report.result["image"]["file"] = serde_json::json!(image_path);
    }
    write(out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let seconds = report.total_ms / 1000.0;
    if report.ok {
        println!(
            "passed in {seconds:.2} s (budget {} s: {}); result: {}",
            report.budget_s,
            if report.within_budget {
                "within"
            } else {
                "OVER"
            },
            out.display()
        );
    } else {
        println!("failed after {seconds:.2} s; result: {}", out.display());
    }
    Ok(report)
}
