//! `sparklio-desk check e2e`: the product-detail flow from the command line.

use sparklio_core::client::{GatewayClient, Timeouts};
use sparklio_core::config::{ConfigInput, GeneratorMode};
use sparklio_core::flow::{self, FlowEvent, FlowInput, FlowReport};
use std::path::PathBuf;
use std::process::ExitCode;

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
        Ok(report) if report.ok => ExitCode::SUCCESS,
        Ok(report) => {
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

async fn run_inner(args: Args) -> anyhow::Result<FlowReport> {
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
            loaded.config.server.bind = "127.0.0.1:0".into();
            loaded.config.generator_mode = Some(if args.live {
                GeneratorMode::Live
            } else {
                GeneratorMode::Mock
            });
            let app = sparklio_core::start(loaded, Default::default()).await?;
            let client = GatewayClient::new(
                format!("http://{}", app.addr),
                Some(app.state.internal_key.clone()),
                Timeouts::for_mode(args.live),
            );
            (client, Some(app))
        }
    };

    println!(
        "product-detail check, {} mode, against {}",
        if args.live { "live" } else { "mock" },
        client.base_url()
    );
    let mut report = flow::run(&client, &input, !args.live, |event| {
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

    // Keep the image beside the JSON.
    if let Some(url) = report.result["image"]["url"].as_str().map(str::to_string) {
        let image_path = args.out.with_extension("png");
        match client.download(&url).await {
            Ok((_, bytes)) => {
                if let Some(dir) = image_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&image_path, bytes)?;
                report.result["image"]["file"] = serde_json::json!(image_path);
            }
            Err(e) => eprintln!("warning: could not save the image: {e}"),
        }
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;

    println!(
        "{} in {:.2} s (budget {} s: {}); result: {}",
        if report.ok { "passed" } else { "failed" },
        report.total_ms / 1000.0,
        report.budget_s,
        if report.within_budget {
            "within"
        } else {
            "OVER"
        },
        args.out.display()
    );
    if let Some(app) = local {
        app.shutdown().await?;
    }
    Ok(report)
}
