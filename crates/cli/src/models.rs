//! `sparklio-desk models list|pull|cancel|rm|load|unload`: through the running Desk when
//! one answers at the configured address (so the dashboard and the event log see the
//! action), else straight to the provider's Ollama. Pull progress is a bar on a terminal
//! and one plain line per 10 % otherwise (logs, CI).

use clap::Subcommand;
use serde_json::{json, Value};
use sparklio_core::config::LoadedConfig;
use sparklio_core::llm::pulls::Tally;
use sparklio_core::llm::router::Router;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Installed and loaded models of every LLM provider (or of --provider), and routed
    /// models that are missing. Exit code 1 when a provider is unreachable or unknown.
    List,
    /// Download a model (a second pull of the same model joins the first). Through the
    /// Desk, Ctrl-C cancels the pull this command started (exit code 130).
    Pull { model: String },
    /// Stop a pull running on the Desk, whoever started it (the dashboard, another
    /// `models pull`).
    Cancel { model: String },
    /// Delete a model; refused while a route uses it unless --force.
    Rm {
        model: String,
        #[arg(long)]
        force: bool,
    },
    /// Load a model into memory (kept warm for 30 minutes).
    Load { model: String },
    /// Free a model's memory (keep_alive 0).
    Unload { model: String },
}

#[derive(clap::Args)]
pub struct Target {
    /// The LLM provider (default: the default route's).
    #[arg(long, global = true)]
    pub provider: Option<String>,
    /// A running Desk (default: the configured bind address).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Its admin key (default: $SPARKLIO_DESK_ADMIN_KEY, else the service's admin.key;
    /// none needed on a trusted network such as loopback).
    #[arg(
        long,
        global = true,
        env = "SPARKLIO_DESK_ADMIN_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,
}

enum Via {
    Desk { base: String, key: Option<String> },
    Ollama { base: String },
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .expect("http client")
}

/// The address of the Desk this config runs: `--url`, else the first bind address
/// (a wildcard becomes loopback).
pub(crate) fn desk_base(loaded: &LoadedConfig, url: Option<String>) -> String {
    url.unwrap_or_else(|| {
        let addr = loaded
            .config
            .server
            .bind
            .addresses()
            .first()
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:11500".into())
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        format!("http://{addr}")
    })
}

/// Whether a Desk answers at `base` (its liveness route, within 2 s).
pub(crate) async fn desk_up(base: &str) -> bool {
    client()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The admin key to send: the given one, else the Windows service's key file.
pub(crate) fn admin_key(loaded: &LoadedConfig, key: Option<String>) -> Option<String> {
    key.or_else(|| {
        sparklio_core::platform::keyfile::read_admin_key(&loaded.config.storage.resolved_data_dir())
    })
}

/// The running Desk if it answers, else the provider's own URL.
async fn via(loaded: &LoadedConfig, target: &Target, provider: &str) -> Result<Via, String> {
    let base = desk_base(loaded, target.url.clone());
    if desk_up(&base).await {
        let key = admin_key(loaded, target.key.clone());
        return Ok(Via::Desk { base, key });
    }
    if target.url.is_some() {
        return Err(format!("no Desk answers at {base}"));
    }
    let p = loaded
        .config
        .llm
        .providers
        .get(provider)
        .ok_or_else(|| unknown_provider(provider, loaded.config.llm.providers.keys()))?;
    let url = p
        .base_url
        .clone()
        .or_else(|| p.instances.first().map(|i| i.url.clone()))
        .ok_or_else(|| format!("provider {provider} has no base_url"))?;
    eprintln!("(no Desk answers at {base}: talking to {provider} at {url} directly)");
    Ok(Via::Ollama {
        base: url.trim_end_matches('/').to_string(),
    })
}

fn with_key(r: reqwest::RequestBuilder, key: &Option<String>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => r.bearer_auth(k),
        None => r,
    }
}

async fn json_of(r: reqwest::Response) -> Result<Value, String> {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or("no message");
    let mut text = format!("{status}: {message}");
    if let Some(routes) = body["error"]["routes"].as_array() {
        let names: Vec<&str> = routes.iter().filter_map(Value::as_str).collect();
        text.push_str(&format!(" (routes: {}; add --force)", names.join(", ")));
    }
    Err(text)
}

/// Why a command failed: a message to print, or an exit code whose story is told already.
enum Failure {
    Error(String),
    Quiet(ExitCode),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Error(e)
    }
}

/// The shell's code for a command stopped by Ctrl-C.
const INTERRUPTED: u8 = 130;

fn unknown_provider<'a>(provider: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    format!(
        "unknown provider {provider:?} (known: {})",
        known.join(", ")
    )
}

pub async fn run(loaded: LoadedConfig, cmd: ModelsCommand, target: Target) -> ExitCode {
    let provider = target
        .provider
        .clone()
        .unwrap_or_else(|| loaded.config.llm.default_route.provider.clone());
    let result = match via(&loaded, &target, &provider).await {
        Ok(v) => match cmd {
            ModelsCommand::List => list(&v, target.provider.as_deref()).await,
            ModelsCommand::Pull { model } => pull(&v, &provider, &model).await,
            ModelsCommand::Cancel { model } => cancel(&v, target.provider.as_deref(), &model).await,
            ModelsCommand::Rm { model, force } => rm(&loaded, &v, &provider, &model, force)
                .await
                .map_err(Failure::from),
            ModelsCommand::Load { model } => load(&v, &provider, &model, true)
                .await
                .map_err(Failure::from),
            ModelsCommand::Unload { model } => load(&v, &provider, &model, false)
                .await
                .map_err(Failure::from),
        },
        Err(e) => Err(Failure::Error(e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Error(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Quiet(code)) => code,
    }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Exit code 1 when a provider could not be listed (unreachable), after listing the others.
async fn list(via: &Via, only: Option<&str>) -> Result<(), Failure> {
    let mut unreachable = Vec::new();
    match via {
        Via::Desk { base, key } => {
            let r = with_key(client().get(format!("{base}/api/v1/models")), key)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body = json_of(r).await?;
            let providers: Vec<&Value> = body["llm"].as_array().into_iter().flatten().collect();
            let names: Vec<String> = providers
                .iter()
                .filter_map(|p| p["provider"].as_str().map(String::from))
                .collect();
            if let Some(name) = only.filter(|n| !names.iter().any(|k| k == n)) {
                return Err(unknown_provider(name, names.iter()).into());
            }
            for p in providers {
                let name = p["provider"].as_str().unwrap_or("?");
                if only.is_some_and(|n| n != name) {
                    continue;
                }
                println!("{name} ({})", p["kind"].as_str().unwrap_or("?"));
                if let Some(e) = p["error"].as_str() {
                    println!("  unreachable: {e}");
                    unreachable.push(name.to_string());
                }
                for m in p["models"].as_array().into_iter().flatten() {
                    let loaded = if m["loaded"] == true { "  loaded" } else { "" };
                    println!(
                        "  {:<32} {:>9}{loaded}",
                        m["name"].as_str().unwrap_or("?"),
                        m["size_bytes"].as_u64().map(gib).unwrap_or_default()
                    );
                }
                for m in p["missing"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<32} missing (a route needs it)",
                        m.as_str().unwrap_or("?")
                    );
                }
            }
        }
        Via::Ollama { base } => {
            let tags = json_of(
                client()
                    .get(format!("{base}/api/tags"))
                    .send()
                    .await
                    .map_err(|e| format!("{base} is unreachable: {e}"))?,
            )
            .await?;
            let ps = json_of(
                client()
                    .get(format!("{base}/api/ps"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?,
            )
            .await
            .unwrap_or(Value::Null);
            let loaded: Vec<&str> = ps["models"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["name"].as_str())
                .collect();
            for m in tags["models"].as_array().into_iter().flatten() {
                let name = m["name"].as_str().unwrap_or("?");
                let l = if loaded.contains(&name) {
                    "  loaded"
                } else {
                    ""
                };
                println!(
                    "  {name:<32} {:>9}{l}",
                    m["size"].as_u64().map(gib).unwrap_or_default()
                );
            }
        }
    }
    if unreachable.is_empty() {
        Ok(())
    } else {
        Err(format!("unreachable: {}", unreachable.join(", ")).into())
    }
}

/// A bar on a terminal; otherwise one line per 10 %.
struct Progress {
    model: String,
    terminal: bool,
    last_step: i64,
    ended: bool,
}

impl Progress {
    fn show(
        &mut self,
        percent: Option<f64>,
        done: u64,
        total: u64,
        speed: Option<f64>,
        status: &str,
    ) {
        let Some(p) = percent else {
            if self.terminal {
                eprint!("\r{}: {status:<60}", self.model);
            }
            return;
        };
        if self.terminal {
            let filled = (p / 100.0 * 30.0).round() as usize;
            let eta = speed
                .filter(|s| *s > 0.0 && total >= done)
                .map(|s| format!(" ETA {:.0} s", (total - done) as f64 / s))
                .unwrap_or_default();
            let speed = speed
                .map(|s| format!(" {:.1} MiB/s", s / 1_048_576.0))
                .unwrap_or_default();
            eprint!(
                "\r{} [{}{}] {p:5.1} % {} / {}{speed}{eta}   ",
                self.model,
                "#".repeat(filled.min(30)),
                " ".repeat(30 - filled.min(30)),
                gib(done),
                gib(total)
            );
            let _ = std::io::stderr().flush();
        } else {
            let step = (p / 10.0).floor() as i64;
            if step > self.last_step {
                self.last_step = step;
                println!(
                    "{}: {:.0} % ({} of {})",
                    self.model,
                    (step * 10) as f64,
                    gib(done),
                    gib(total)
                );
            }
        }
    }

    fn end(&mut self, ok: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if self.terminal {
            eprintln!();
        }
        if ok && !self.terminal && self.last_step < 10 {
            println!("{}: 100 %", self.model);
        }
    }
}

async fn pull(via: &Via, provider: &str, model: &str) -> Result<(), Failure> {
    let mut progress = Progress {
        model: model.to_string(),
        terminal: std::io::stderr().is_terminal(),
        last_step: -1,
        ended: false,
    };
    let result = match via {
        Via::Desk { base, key } => pull_on_desk(base, key, provider, model, &mut progress).await,
        Via::Ollama { base } => pull_direct(base, model, &mut progress)
            .await
            .map_err(Failure::from),
    };
    progress.end(result.is_ok());
    if result.is_ok() {
        println!("{model}: pulled");
    }
    result
}

/// Follow the Desk's pull to its end. Ctrl-C (or SIGTERM) cancels it when this command
/// started it: the download runs on the Desk, so leaving would not stop it.
async fn pull_on_desk(
    base: &str,
    key: &Option<String>,
    provider: &str,
    model: &str,
    progress: &mut Progress,
) -> Result<(), Failure> {
    // Listening before the pull starts, so a Ctrl-C during the request is not lost.
    let interrupted = sparklio_core::app::shutdown_signal();
    let r = with_key(
        client().post(format!("{base}/api/v1/models/{provider}/pull")),
        key,
    )
    .json(&json!({ "model": model }))
    .send()
    .await
    .map_err(|e| e.to_string())?;
    let started = json_of(r).await?;
    let joined = started["joined"] == true;
    if joined {
        eprintln!("{model}: a pull of it is already running; following it");
    }
    let id = started["id"].as_str().unwrap_or_default().to_string();
    let follow = async {
        let r = with_key(
            client().get(format!("{base}/api/v1/models/pulls/{id}/events")),
            key,
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
        let mut last = Value::Null;
        read_lines(r, |line| {
            if let Some(data) = line.strip_prefix("data: ") {
                if let Ok(p) = serde_json::from_str::<Value>(data) {
                    progress.show(
                        p["percent"].as_f64(),
                        p["completed_bytes"].as_u64().unwrap_or(0),
                        p["total_bytes"].as_u64().unwrap_or(0),
                        p["bytes_per_s"].as_f64(),
                        p["status"].as_str().unwrap_or(""),
                    );
                    last = p;
                }
            }
        })
        .await?;
        match last["state"].as_str() {
            Some("succeeded") => Ok(()),
            Some(other) => Err(format!(
                "{model}: {other}: {}",
                last["error"].as_str().unwrap_or("")
            )),
            None => Err(format!("{model}: the progress stream ended early")),
        }
    };
    let followed = tokio::select! {
        result = follow => Some(result),
        () = interrupted => None,
    };
    if let Some(result) = followed {
        return result.map_err(Failure::from);
    }
    progress.end(false);
    let how = format!("sparklio-desk models cancel {model}");
    if joined {
        eprintln!(
            "{model}: stopped following; the pull someone else started keeps running on the Desk ({how} stops it)"
        );
    } else {
        match cancel_pull(base, key, &id).await {
            Ok(()) => eprintln!("{model}: interrupted: the pull is cancelled on the Desk"),
            Err(e) => eprintln!(
                "{model}: interrupted, but the Desk did not cancel the pull ({e}); it keeps running: {how}"
            ),
        }
    }
    Err(Failure::Quiet(ExitCode::from(INTERRUPTED)))
}

async fn cancel_pull(base: &str, key: &Option<String>, id: &str) -> Result<(), String> {
    let r = with_key(
        client().delete(format!("{base}/api/v1/models/pulls/{id}")),
        key,
    )
    .timeout(Duration::from_secs(10))
    .send()
    .await
    .map_err(|e| e.to_string())?;
    let p = json_of(r).await?;
    match p["state"].as_str() {
        Some("cancelled") => Ok(()),
        other => Err(format!("its state is {}", other.unwrap_or("unknown"))),
    }
}

/// `models cancel`: the running pull of `model` on the Desk, stopped.
async fn cancel(via: &Via, provider: Option<&str>, model: &str) -> Result<(), Failure> {
    let Via::Desk { base, key } = via else {
        return Err(
            "no Desk answers: a pull straight to Ollama runs in its own `models pull`, which Ctrl-C stops"
                .to_string()
                .into(),
        );
    };
    let r = with_key(client().get(format!("{base}/api/v1/models/pulls")), key)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let pulls = json_of(r).await?;
    let running = pulls["pulls"].as_array().into_iter().flatten().find(|p| {
        p["state"] == "running"
            && p["model"]
                .as_str()
                .is_some_and(|m| sparklio_core::llm::same_model(m, model))
            && provider.is_none_or(|name| p["provider"] == name)
    });
    let Some(p) = running else {
        return Err(format!("no pull of {model} is running on the Desk at {base}").into());
    };
    cancel_pull(base, key, p["id"].as_str().unwrap_or_default()).await?;
    println!(
        "{model}: pull cancelled on {}",
        p["provider"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn pull_direct(base: &str, model: &str, progress: &mut Progress) -> Result<(), String> {
    let r = client()
        .post(format!("{base}/api/pull"))
        .json(&json!({ "model": model, "stream": true }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(json_of(r).await.err().unwrap_or_default());
    }
    let mut tally = Tally::default();
    let mut error = None;
    let mut success = false;
    read_lines(r, |line| {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if let Some(e) = v["error"].as_str() {
            error = Some(e.to_string());
        }
        tally.feed(&v);
        success |= v["status"] == "success";
        let (done, total) = (tally.completed(), tally.total());
        let percent = (total > 0).then(|| done as f64 * 100.0 / total as f64);
        progress.show(percent, done, total, tally.speed(), tally.status());
    })
    .await?;
    match (error, success) {
        (Some(e), _) => Err(e),
        (None, true) => Ok(()),
        (None, false) => Err("the pull stream ended before success".into()),
    }
}

/// Call `each` for every line of a streamed body.
async fn read_lines(mut r: reqwest::Response, mut each: impl FnMut(&str)) -> Result<(), String> {
    let mut partial = String::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        partial.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            each(line.trim_end());
        }
        if partial.len() > 1 << 20 {
            partial.clear();
        }
    }
    if !partial.trim().is_empty() {
        each(partial.trim_end());
    }
    Ok(())
}

async fn rm(
    loaded: &LoadedConfig,
    via: &Via,
    provider: &str,
    model: &str,
    force: bool,
) -> Result<(), String> {
    match via {
        Via::Desk { base, key } => {
            let q = if force { "?force=true" } else { "" };
            let r = with_key(
                client().delete(format!("{base}/api/v1/models/{provider}/{model}{q}")),
                key,
            )
            .send()
            .await
            .map_err(|e| e.to_string())?;
            json_of(r).await?;
        }
        Via::Ollama { base } => {
            let routes = Router::new(&loaded.config.llm).routes_using(provider, model);
            if !routes.is_empty() && !force {
                return Err(format!(
                    "{model} is used by {} (add --force)",
                    routes.join(", ")
                ));
            }
            let r = client()
                .delete(format!("{base}/api/delete"))
                .json(&json!({ "model": model }))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(json_of(r).await.err().unwrap_or_default());
            }
        }
    }
    println!("{model}: deleted from {provider}");
    Ok(())
}

async fn load(via: &Via, provider: &str, model: &str, load: bool) -> Result<(), String> {
    let action = if load { "load" } else { "unload" };
    match via {
        Via::Desk { base, key } => {
            let r = with_key(
                client().post(format!("{base}/api/v1/models/{provider}/{model}/{action}")),
                key,
            )
            .send()
            .await
            .map_err(|e| e.to_string())?;
            json_of(r).await?;
        }
        Via::Ollama { base } => {
            let keep_alive = if load { json!("30m") } else { json!(0) };
            let r = client()
                .post(format!("{base}/api/generate"))
                .json(&json!({ "model": model, "keep_alive": keep_alive, "stream": false }))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            json_of(r).await?;
        }
    }
    println!("{model}: {action}ed on {provider}");
    Ok(())
}
