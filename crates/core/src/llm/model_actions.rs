//! What the owner can do with an Ollama provider's models besides pulling them: delete
//! (naming the routes that use the model first), load (warm up with `keep_alive`) and
//! unload (`keep_alive: 0`), and which routed models are missing.

use super::front::{read_json, FrontCall};
use super::providers::ollama::forward::Forward;
use super::{Error, LlmGateway};
use bytes::Bytes;
use serde::Serialize;
use std::time::Instant;

/// The event log's name for model actions (pulls, deletes, loads).
pub const MODELS_SERVICE: &str = "models";
/// A pull that took this long is worth a notification when it ends.
pub const LONG_PULL: std::time::Duration = std::time::Duration::from_secs(30);
/// Marks a long pull's end event, so the notifier tells the owner about it.
pub const LONG_PULL_MARK: &str = "(long pull)";

/// How long a loaded model stays warm after `load` (Ollama's default is 5 minutes).
pub const LOAD_KEEP_ALIVE: &str = "30m";

/// A model a route sends requests to that its provider does not have.
#[derive(Debug, Clone, Serialize)]
pub struct MissingModel {
    pub provider: String,
    pub model: String,
    pub routes: Vec<String>,
}

/// What one action did, per instance.
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub provider: String,
    pub model: String,
    pub action: &'static str,
    /// `instance → "ok"` or the instance's error.
    pub instances: Vec<(String, String)>,
}

/// One call made on every instance of a provider.
struct InstanceCall {
    action: &'static str,
    method: reqwest::Method,
    path: &'static str,
    body: serde_json::Value,
    /// An instance's 404 (it does not have the model) is nothing to do, not a failure.
    ok_if_absent: bool,
}

impl LlmGateway {
    /// The routes that would break if `model` left `provider`.
    pub fn routes_using(&self, provider: &str, model: &str) -> Vec<String> {
        self.setup().router.routes_using(provider, model)
    }

    /// Routed models their provider's instances do not list (known only once an
    /// instance has listed its models).
    pub fn missing_models(&self) -> Vec<MissingModel> {
        let setup = self.setup();
        setup
            .router
            .routed_models()
            .into_iter()
            .filter(|(provider, model)| {
                self.ollama_backends()
                    .iter()
                    .find(|(n, _)| n == provider)
                    .and_then(|(_, p)| Self::ollama(p))
                    .and_then(|o| o.model_known(model))
                    == Some(false)
            })
            .map(|(provider, model)| MissingModel {
                routes: setup.router.routes_using(&provider, &model),
                provider,
                model,
            })
            .collect()
    }

    /// Run one Ollama call on every instance of `provider`; `ok_if_absent` treats an
    /// instance's 404 (it does not have the model) as nothing to do.
    async fn on_every_instance(
        &self,
        call: &FrontCall,
        provider: &str,
        model: &str,
        action: InstanceCall,
    ) -> Result<ActionReport, Error> {
        let InstanceCall {
            action,
            method,
            path,
            body,
            ok_if_absent,
        } = action;
        let (name, p) = self.ollama_backend(provider)?;
        let ollama = Self::ollama(&p).expect("Ollama backends are Ollama providers");
        if let Some(reason) = self.links.board.down_reason(&name) {
            return Err(Error::Unavailable {
                target: super::error::Target::new(name.clone(), model),
                message: format!("provider {name} is down: {reason}"),
                instance: None,
                retry_after_s: None,
            });
        }
        let started = Instant::now();
        let mut instances = Vec::new();
        let mut any_ok = false;
        let mut first_error = None;
        for instance in ollama.instance_names() {
            let result = ollama
                .forward(Forward {
                    method: method.clone(),
                    path: path.to_string(),
                    body: Some(Bytes::from(body.to_string())),
                    model: Some(model.to_string()),
                    instance: Some(instance.clone()),
                    deadline: Instant::now() + ollama.overall_timeout(),
                })
                .await;
            let outcome = match result {
                Ok(fwd) => match read_json_or_empty(fwd).await {
                    Ok(()) => Ok(()),
                    Err(e) if ok_if_absent && e.upstream_status == Some(404) => {
                        instances.push((instance, "not there".to_string()));
                        continue;
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    any_ok = true;
                    instances.push((instance, "ok".into()));
                }
                Err(e) => {
                    instances.push((instance, e.message.clone()));
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut f = call.finished();
        f.provider = Some(name.clone());
        f.model = Some(model.to_string());
        f.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let result = match (any_ok, first_error) {
            (false, Some(e)) => Err(super::front::provider_error(
                super::error::Target::new(name.clone(), model),
                e,
            )),
            (false, None) if !ok_if_absent => Err(Error::ModelNotFound {
                target: super::error::Target::new(name.clone(), model),
                message: format!("no instance of {name} has {model:?}"),
                upstream_status: Some(404),
            }),
            _ => Ok(ActionReport {
                provider: name,
                model: model.to_string(),
                action,
                instances,
            }),
        };
        if let Err(e) = &result {
            f.error_code = Some(e.code().to_string());
            f.status = e.status();
        }
        self.links.usage.record(f).await;
        result
    }

    /// Delete `model` from every instance of `provider` that has it.
    pub async fn delete_model(
        &self,
        call: &FrontCall,
        provider: &str,
        model: &str,
    ) -> Result<ActionReport, Error> {
        let report = self
            .on_every_instance(
                call,
                provider,
                model,
                InstanceCall {
                    action: "delete",
                    method: reqwest::Method::DELETE,
                    path: "/api/delete",
                    body: serde_json::json!({ "model": model }),
                    ok_if_absent: true,
                },
            )
            .await?;
        // The instances' model lists change now, not at their next listing.
        if let Ok((_, p)) = self.ollama_backend(provider) {
            let _ = p.list_models().await;
        }
        if report.instances.iter().all(|(_, r)| r != "ok") {
            return Err(Error::ModelNotFound {
                target: super::error::Target::new(provider, model),
                message: format!("no instance of {provider} has {model:?}"),
                upstream_status: Some(404),
            });
        }
        Ok(report)
    }

    /// Load `model` into memory on `provider` (kept warm for [`LOAD_KEEP_ALIVE`]).
    pub async fn load_model(
        &self,
        call: &FrontCall,
        provider: &str,
        model: &str,
    ) -> Result<ActionReport, Error> {
        let body =
            serde_json::json!({ "model": model, "keep_alive": LOAD_KEEP_ALIVE, "stream": false });
        let stream = self
            .ollama_forward_to(
                call,
                provider,
                reqwest::Method::POST,
                "/api/generate",
                Some(Bytes::from(body.to_string())),
                Some(model.to_string()),
            )
            .await?;
        let (status, instance) = (stream.status, stream.instance.clone());
        let answer = collect(stream.body).await?;
        if status >= 400 {
            let message = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("the instance answered {status}"));
            let target = super::error::Target::new(provider, model);
            return Err(if status == 404 {
                Error::ModelNotFound {
                    target,
                    message,
                    upstream_status: Some(404),
                }
            } else {
                Error::Upstream {
                    target,
                    message,
                    upstream_status: Some(status),
                }
            });
        }
        Ok(ActionReport {
            provider: provider.to_string(),
            model: model.to_string(),
            action: "load",
            instances: vec![(instance, "ok".into())],
        })
    }

    /// Unload `model` from every instance of `provider` (`keep_alive: 0`).
    pub async fn unload_model(
        &self,
        call: &FrontCall,
        provider: &str,
        model: &str,
    ) -> Result<ActionReport, Error> {
        self.on_every_instance(
            call,
            provider,
            model,
            InstanceCall {
                action: "unload",
                method: reqwest::Method::POST,
                path: "/api/generate",
                body: serde_json::json!({ "model": model, "keep_alive": 0, "stream": false }),
                ok_if_absent: true,
            },
        )
        .await
    }
}

async fn collect(
    mut body: futures::stream::BoxStream<'static, Result<Bytes, Error>>,
) -> Result<Vec<u8>, Error> {
    use futures::StreamExt;
    const MAX: usize = 1024 * 1024;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() <= MAX {
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

/// A control answer read whole; an empty 200 body (delete, copy) is fine.
async fn read_json_or_empty(
    fwd: super::providers::ollama::forward::Forwarded,
) -> Result<(), super::provider::ProviderError> {
    match read_json(fwd).await {
        Ok(_) => Ok(()),
        Err(e) if e.upstream_status.is_none() && e.message.contains("unreadable answer") => Ok(()),
        Err(e) => Err(e),
    }
}
