//! `sparklio-desk models list|pull|rm|load|unload`: through the running Desk when one
//! answers at the configured address (so the dashboard and the event log see the
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
    /// Installed and loaded models of every LLM provider, and routed models that are missing.
    List,
    /// Download a model (a second pull of the same model joins the first).
    Pull { model: String },
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
        .ok_or_else(|| format!("provider {provider:?} is not configured"))?;
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

pub async fn run(loaded: LoadedConfig, cmd: ModelsCommand, target: Target) -> ExitCode {
    let provider = target
        .provider
        .clone()
        .unwrap_or_else(|| loaded.config.llm.default_route.provider.clone());
    let result = match via(&loaded, &target, &provider).await {
        Ok(v) => match cmd {
            ModelsCommand::List => list(&v).await,
            ModelsCommand::Pull { model } => pull(&v, &provider, &model).await,
            ModelsCommand::Rm { model, force } => rm(&loaded, &v, &provider, &model, force).await,
            ModelsCommand::Load { model } => load(&v, &provider, &model, true).await,
            ModelsCommand::Unload { model } => load(&v, &provider, &model, false).await,
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

async fn list(via: &Via) -> Result<(), String> {
    match via {
        Via::Desk { base, key } => {
            let r = with_key(client().get(format!("{base}/api/v1/models")), key)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body = json_of(r).await?;
            for p in body["llm"].as_array().into_iter().flatten() {
                println!(
                    "{} ({})",
                    p["provider"].as_str().unwrap_or("?"),
                    p["kind"].as_str().unwrap_or("?")
                );
                if let Some(e) = p["error"].as_str() {
                    println!("  unreachable: {e}");
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
                    .map_err(|e| e.to_string())?,
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
    Ok(())
}

/// A bar on a terminal; otherwise one line per 10 %.
struct Progress {
    model: String,
    terminal: bool,
    last_step: i64,
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
        if self.terminal {
            eprintln!();
        }
        if ok && !self.terminal && self.last_step < 10 {
            println!("{}: 100 %", self.model);
        }
    }
}

async fn pull(via: &Via, provider: &str, model: &str) -> Result<(), String> {
    let mut progress = Progress {
        model: model.to_string(),
        terminal: std::io::stderr().is_terminal(),
        last_step: -1,
    };
    let result = match via {
        Via::Desk { base, key } => {
            let r = with_key(
                client().post(format!("{base}/api/v1/models/{provider}/pull")),
                key,
            )
            .json(&json!({ "model": model }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
            let started = json_of(r).await?;
            if started["joined"] == true {
                eprintln!("{model}: a pull of it is already running; following it");
            }
            let id = started["id"].as_str().unwrap_or_default().to_string();
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
        }
        Via::Ollama { base } => {
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
    };
    progress.end(result.is_ok());
    if result.is_ok() {
        println!("{model}: pulled");
    }
    result
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
