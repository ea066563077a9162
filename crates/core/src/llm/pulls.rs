//! Model pulls, one at a time per model: a second request for a model already being
//! pulled joins the first's progress instead of starting another download. Shared by
//! the Ollama front's `/api/pull` and the model actions.

use super::front::FrontCall;
use super::{Error, LlmGateway};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{broadcast, watch};

/// Progress lines kept for slow followers (each is a snapshot, so skipping is harmless).
const FOLLOWER_BUFFER: usize = 64;
/// The longest progress line kept.
const MAX_LINE: usize = 64 * 1024;

/// One running pull.
pub struct Pull {
    pub id: String,
    pub provider: String,
    pub model: String,
    lines: broadcast::Sender<Bytes>,
    last: Mutex<Option<Bytes>>,
    /// `None` while running; then `Ok` or the error.
    done: watch::Sender<Option<Result<(), String>>>,
}

impl Pull {
    /// The latest progress line, then every new one, until the pull ends.
    pub fn follow(self: &Arc<Self>) -> BoxStream<'static, Bytes> {
        let rx = self.lines.subscribe();
        let done = self.done.subscribe();
        let first = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let finished = done.borrow().is_some();
        futures::stream::iter(first)
            .chain(futures::stream::unfold(
                (finished, rx, done),
                move |(finished, mut rx, mut done)| async move {
                    if finished {
                        // Drain what was sent before the end.
                        return match rx.try_recv() {
                            Ok(line) => Some((line, (true, rx, done))),
                            Err(_) => None,
                        };
                    }
                    loop {
                        tokio::select! {
                            r = rx.recv() => match r {
                                Ok(line) => return Some((line, (false, rx, done))),
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => return None,
                            },
                            _ = done.changed() => {
                                return match rx.try_recv() {
                                    Ok(line) => Some((line, (true, rx, done))),
                                    Err(_) => None,
                                };
                            }
                        }
                    }
                },
            ))
            .boxed()
    }

    /// Wait for the end: `Ok` or the error message.
    pub async fn wait(&self) -> Result<(), String> {
        let mut done = self.done.subscribe();
        loop {
            if let Some(r) = done.borrow().clone() {
                return r;
            }
            if done.changed().await.is_err() {
                return Err("the pull was dropped".into());
            }
        }
    }

    pub fn last_line(&self) -> Option<Bytes> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, line: Bytes) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(line.clone());
        let _ = self.lines.send(line);
    }
}

/// The running pulls, by provider and model.
#[derive(Default)]
pub struct PullManager {
    running: Mutex<HashMap<(String, String), Arc<Pull>>>,
}

impl PullManager {
    pub fn running(&self) -> Vec<Arc<Pull>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

impl LlmGateway {
    /// Start pulling `model` on the provider that should hold it, or join the pull of
    /// it already running. Returns the pull and whether this request joined one.
    pub async fn pull(&self, call: &FrontCall, model: &str) -> Result<(Arc<Pull>, bool), Error> {
        let model = model.trim().to_string();
        if model.is_empty() || model.len() > 200 {
            return Err(Error::validation(
                "model",
                "a model name (at most 200 characters)",
            ));
        }
        let (provider, _) = self.backend_for(Some(&model))?;
        let key = (provider.clone(), model.clone());
        if let Some(p) = self
            .pulls
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok((p.clone(), true));
        }
        let body = serde_json::json!({"model": model, "stream": true}).to_string();
        let stream = self
            .ollama_forward(
                call,
                reqwest::Method::POST,
                "/api/pull",
                Some(Bytes::from(body)),
                Some(model.clone()),
            )
            .await?;
        let (lines, _) = broadcast::channel(FOLLOWER_BUFFER);
        let pull = Arc::new(Pull {
            id: uuid::Uuid::new_v4().simple().to_string(),
            provider: stream.provider.clone(),
            model: model.clone(),
            lines,
            last: Mutex::new(None),
            done: watch::channel(None).0,
        });
        {
            let mut running = self
                .pulls
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Another request may have started the same pull meanwhile: join it (ours
            // is dropped, which cancels its upstream request).
            if let Some(p) = running.get(&key) {
                return Ok((p.clone(), true));
            }
            running.insert(key.clone(), pull.clone());
        }
        let runner = pull.clone();
        let manager = self.pulls.clone();
        let status = stream.status;
        let mut body = stream.body;
        tokio::spawn(async move {
            let mut partial: Vec<u8> = Vec::new();
            let mut error: Option<String> = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        for piece in bytes.split_inclusive(|b| *b == b'\n') {
                            if partial.len() + piece.len() <= MAX_LINE {
                                partial.extend_from_slice(piece);
                            }
                            if piece.ends_with(b"\n") {
                                let line = Bytes::from(std::mem::take(&mut partial));
                                if let Some(e) = error_of(&line) {
                                    error = Some(e);
                                }
                                runner.publish(line);
                            }
                        }
                    }
                    Err(e) => {
                        let line = format!("{}\n", serde_json::json!({"error": e.to_string()}));
                        error = Some(e.to_string());
                        runner.publish(Bytes::from(line));
                        break;
                    }
                }
            }
            if !partial.is_empty() {
                let mut line = std::mem::take(&mut partial);
                line.push(b'\n');
                let line = Bytes::from(line);
                if let Some(e) = error_of(&line) {
                    error = Some(e);
                }
                runner.publish(line);
            }
            if status >= 400 && error.is_none() {
                error = Some(format!("the instance answered {status}"));
            }
            manager
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            let _ = runner.done.send(Some(error.map_or(Ok(()), Err)));
        });
        Ok((pull, false))
    }
}

fn error_of(line: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_string)
}
