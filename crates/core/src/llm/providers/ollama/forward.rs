//! Ollama's own API forwarded to one of this provider's instances (the Ollama front):
//! the request goes as it came to the instance holding the model, the answer comes
//! back as it comes — status, headers and NDJSON chunks — under the same instance
//! choice, breaker, first-byte and idle limits as the gateway's own calls.

use super::{pick_error, Attempts, OllamaProvider};
use crate::llm::provider::{FailureKind, ProviderError};
use crate::resilience::pool::Preference;
use crate::resilience::{Instance, Lease, Outcome};
use crate::upstream::{Http1Response, SendError};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::time::{Duration, Instant};

/// One request for an instance.
#[derive(Debug, Clone)]
pub struct Forward {
    pub method: reqwest::Method,
    /// `/api/chat`, `/api/tags`, …
    pub path: String,
    pub body: Option<Bytes>,
    /// Picks the instance: one that has it loaded, else installed.
    pub model: Option<String>,
    /// A named instance (`main`), when the caller asks for one.
    pub instance: Option<String>,
    pub deadline: Instant,
}

impl Forward {
    /// Whether the instance works for this call (a generation, an embedding): only then
    /// does it take one of its `max_concurrent` slots.
    fn generates(&self) -> bool {
        matches!(
            self.path.as_str(),
            "/api/chat" | "/api/generate" | "/api/embed" | "/api/embeddings"
        )
    }

    /// A generation asked for with `"stream": false`: Ollama answers it whole when it is
    /// done, so its first byte is its last. Read from the body itself, whoever built it
    /// (a front, a model load); only the `stream` key is kept, the rest skimmed.
    fn answered_whole(&self) -> bool {
        #[derive(serde::Deserialize)]
        struct Streamed {
            stream: Option<bool>,
        }
        self.generates()
            && self.body.as_deref().is_some_and(|b| {
                serde_json::from_slice::<Streamed>(b).is_ok_and(|s| s.stream == Some(false))
            })
    }
}

/// The instance's answer, streaming.
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    /// `ollama/main`.
    pub instance: String,
    /// The body as it arrives; holds the instance's slot until it ends or is dropped.
    pub body: BoxStream<'static, Result<Bytes, ProviderError>>,
}

/// Chunks in flight between the instance and the client: a slow client slows the read.
const CHUNKS_IN_FLIGHT: usize = 8;

impl OllamaProvider {
    /// Forward one request. Fails fast (no network) when no instance can take it; an
    /// instance's own error answer (404 model not found, 400, 500) is passed through.
    pub async fn forward(&self, req: Forward) -> Result<Forwarded, ProviderError> {
        let mut tried: Vec<String> = Vec::new();
        if let Some(name) = &req.instance {
            if self.pool.get(name).is_none() {
                return Err(ProviderError::new(
                    FailureKind::ModelNotFound,
                    format!("{} has no instance named {name:?}", self.name),
                ));
            }
            tried.extend(
                self.pool
                    .instances
                    .iter()
                    .filter(|i| &i.spec.name != name)
                    .map(|i| i.spec.name.clone()),
            );
        }
        let mut attempts = Attempts::new(tried);
        loop {
            let lease = match self.forward_lease(&req, &attempts.tried).await {
                Ok(l) => l,
                Err(e) => return Err(attempts.exhausted(e)),
            };
            match self.forward_once(&lease, &req).await {
                Ok(resp) => return Ok(self.stream_back(lease, resp, req.deadline)),
                Err((e, outcome)) => {
                    if let Some(e) = attempts.failed(lease, e, outcome) {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn forward_lease(&self, req: &Forward, tried: &[String]) -> Result<Lease, ProviderError> {
        let model = req.model.clone().unwrap_or_default();
        let prefer: Preference<'_> = &|i: &Instance| {
            let f = i.facts();
            if model.is_empty() || f.loaded.iter().any(|m| crate::llm::same_model(m, &model)) {
                0
            } else if f
                .installed
                .iter()
                .any(|m| crate::llm::same_model(m, &model))
            {
                1
            } else {
                2
            }
        };
        let picked = if req.generates() {
            self.pool
                .acquire_excluding(prefer, req.deadline, tried)
                .await
        } else {
            self.pool
                .acquire_unslotted(prefer, req.deadline, tried)
                .await
        };
        picked.map_err(|e| pick_error(&self.name, e))
    }

    /// Send and wait for the answer's headers (first-byte limit, deadline, wedged).
    async fn forward_once(
        &self,
        lease: &Lease,
        req: &Forward,
    ) -> Result<Http1Response, (ProviderError, Outcome)> {
        let inst = &lease.instance;
        // A whole answer is bounded by the request's deadline (`timeout_s`), not by the
        // first-byte limit: a 100 s generation asked for unstreamed is not wedged.
        let left = req.deadline.saturating_duration_since(Instant::now());
        let limit = if req.answered_whole() {
            left
        } else {
            self.timeouts.first_byte.min(left)
        };
        let started = async {
            let not_sent = |why: String| self.transport_error(inst, &SendError::NotSent(why));
            let target = self.upstream(inst).map_err(not_sent)?;
            let uri = target
                .client
                .uri(&req.path)
                .map_err(|e| not_sent(format!("{}: {e}", req.path)))?;
            target
                .client
                .send(req.method.clone(), &uri, req.body.clone())
                .await
                .map_err(|e| self.transport_error(inst, &e))
        };
        let resp = tokio::select! {
            r = tokio::time::timeout(limit, started) => r.unwrap_or_else(|_| Err((
                self.timeout_error(inst, "no answer", limit),
                Outcome::Timeout,
            ))),
            () = inst.wedged_after(lease.epoch()) => Err(super::wedged_error(inst)),
        }?;
        Ok(resp)
    }

    /// The body, chunk by chunk, each within the idle limit and all by the deadline.
    fn stream_back(&self, lease: Lease, resp: Http1Response, deadline: Instant) -> Forwarded {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let instance = lease.instance.label();
        let idle = self.timeouts.idle;
        let outcome = match status {
            200..=299 => Outcome::Success,
            500..=599 => Outcome::ServerError,
            _ => Outcome::ClientError,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let label = instance.clone();
        tokio::spawn(async move {
            let mut resp = resp;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = idle.min(left).max(Duration::from_millis(1));
                let chunk = tokio::select! {
                    r = tokio::time::timeout(wait, resp.next()) => r,
                    () = lease.instance.wedged_after(lease.epoch()) => {
                        let _ = tx.send(Err(ProviderError::new(
                            FailureKind::Unavailable,
                            format!("{label} stopped answering (wedged: its health probe timed out)"),
                        ).on_instance(label.clone()))).await;
                        return;
                    }
                };
                match chunk {
                    Ok(Some(Ok(bytes))) => {
                        if tx.send(Ok(bytes)).await.is_err() {
                            // The client went away: dropping the response cancels upstream.
                            lease.report(Outcome::Success, "the caller went away");
                            return;
                        }
                    }
                    Ok(None) => {
                        lease.report(outcome, "forwarded");
                        return;
                    }
                    Ok(Some(Err(e))) => {
                        lease.report(Outcome::ServerError, &e.to_string());
                        let _ = tx
                            .send(Err(ProviderError::new(
                                FailureKind::Upstream,
                                format!("{label} dropped the answer: {e}"),
                            )
                            .on_instance(label.clone())))
                            .await;
                        return;
                    }
                    Err(_) => {
                        let why = if wait >= left {
                            "did not finish within the request's time"
                        } else {
                            "stalled mid-answer"
                        };
                        lease.report(Outcome::Timeout, why);
                        let _ = tx
                            .send(Err(ProviderError::new(
                                FailureKind::Timeout,
                                format!("{label} {why} (nothing for {:.1} s)", wait.as_secs_f64()),
                            )
                            .on_instance(label.clone())))
                            .await;
                        return;
                    }
                }
            }
        });
        Forwarded {
            status,
            content_type,
            instance,
            body: tokio_stream::wrappers::ReceiverStream::new(rx).boxed(),
        }
    }

    /// The instances, with their names, for merged listings.
    pub fn instance_names(&self) -> Vec<String> {
        self.pool
            .instances
            .iter()
            .map(|i| i.spec.name.clone())
            .collect()
    }

    /// Whether an instance reported the model installed (from its last probe).
    pub fn has_model(&self, model: &str) -> bool {
        self.pool.instances.iter().any(|i| {
            let f = i.facts();
            f.installed
                .iter()
                .chain(f.loaded.iter())
                .any(|m| crate::llm::same_model(m, model))
        })
    }

    /// Whether an instance holds the model in memory now (from its last listing).
    pub fn model_loaded(&self, model: &str) -> bool {
        self.pool.instances.iter().any(|i| {
            i.facts()
                .loaded
                .iter()
                .any(|m| crate::llm::same_model(m, model))
        })
    }

    /// Whether an instance has the model, once some instance has listed its models
    /// (`None` before the first listing: unknown, not missing).
    pub fn model_known(&self, model: &str) -> Option<bool> {
        let listed = self
            .pool
            .instances
            .iter()
            .any(|i| i.facts().installed_at.is_some());
        listed.then(|| self.has_model(model))
    }

    /// The longest a forwarded call may take.
    pub fn overall_timeout(&self) -> Duration {
        self.timeouts.overall
    }

    pub fn control_timeout(&self) -> Duration {
        self.timeouts.control
    }
}
