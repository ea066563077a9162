//! `sparklio-desk discover`: find Ollama and ComfyUI on this machine (usual ports, Docker
//! containers of `ollama/ollama`, ComfyUI folders) and propose config entries for them;
//! `--write` adds them to the config file (comments kept). Nothing is started or changed
//! otherwise.

use sparklio_core::config::{ConfigInput, LoadedConfig};
use sparklio_core::supervisor::discover::{self, Found};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Ports of 127.0.0.1 to probe (default: 11434,11435,11436,8188).
    #[arg(long, value_delimiter = ',')]
    pub ports: Vec<u16>,
    /// Folders to look for ComfyUI in (and one level below), besides the usual places.
    #[arg(long = "dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Do not ask the Docker engine for containers.
    #[arg(long)]
    pub no_docker: bool,
    /// Add what was found to the config file (the one `config show` names).
    #[arg(long)]
    pub write: bool,
}

pub async fn run(loaded: &LoadedConfig, config_file: Option<PathBuf>, args: Args) -> ExitCode {
    let search = discover::Search {
        ports: args.ports.clone(),
        dirs: args.dirs.clone(),
        no_docker: args.no_docker,
    };
    let findings = discover::find_all(&loaded.config, &search).await;
    if let Some(e) = findings.docker_error.as_ref().filter(|_| !args.no_docker) {
        eprintln!("docker: {e}");
    }
    let found: Vec<Found> = findings.found;
    if found.is_empty() {
        println!(
            "nothing new found (probed ports {:?}, Docker, {} folder(s))",
            findings.ports, findings.folders
        );
        return ExitCode::SUCCESS;
    }
    for f in &found {
        println!("found {} — {}", f.what, f.how);
    }
    println!("\n# proposed config entries\n");
    for f in &found {
        println!("{}", f.service_toml);
        if let Some(p) = &f.provider_toml {
            println!("{p}");
        }
    }
    if !args.write {
        println!("(add them with `sparklio-desk discover --write`)");
        return ExitCode::SUCCESS;
    }
    let Some(path) = crate::config_path(config_file) else {
        eprintln!("error: no config file location (use --config FILE)");
        return ExitCode::FAILURE;
    };
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let (text, added) = match discover::write_into(&current, &found) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Checked as the next load reads it (over the defaults, with this environment): a
    // result that would not load is not written.
    let input = ConfigInput::from_process(Some(path.clone()));
    if let Err(problems) = sparklio_core::load_config_edit(&input, &path, &text) {
        eprintln!(
            "error: not written: {} would not load with these entries:",
            path.display()
        );
        for p in problems {
            eprintln!("  {p}");
        }
        return ExitCode::FAILURE;
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("added to {}: {}", path.display(), added.join(", "));
    // A running Desk supervises them at once; otherwise they start with it.
    match crate::reload::ask(loaded, None, None).await {
        Ok(Some(report)) => println!(
            "the running Sparklio Desk applied it: {}",
            crate::reload::describe(&report)
        ),
        Ok(None) => println!("Sparklio Desk supervises them when it starts (`sparklio-desk config check` shows the result)"),
        Err(e) => eprintln!("the running Sparklio Desk did not apply it: {e}\n(run `sparklio-desk config reload` once fixed)"),
    }
    ExitCode::SUCCESS
}
