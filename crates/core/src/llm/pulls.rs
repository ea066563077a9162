//! Model pulls, one at a time per model: a second request for a model already being
//! pulled joins the first's progress instead of starting another download. Shared by
//! the Ollama front's `/api/pull` and the model actions (`/api/v1/models/…/pull`, the
//! CLI, the dashboard). Each pull keeps its progress (bytes, percent, speed, ETA) and
//! can be cancelled; the last few finished pulls stay listed.

use super::front::FrontCall;
use super::{Error, LlmGateway};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Progress lines kept for slow followers (each is a snapshot, so skipping is harmless).
const FOLLOWER_BUFFER: usize = 64;
/// The longest progress line kept.
const MAX_LINE: usize = 64 * 1024;
/// Finished pulls kept for `GET /api/v1/models/pulls`.
const KEEP_FINISHED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// What a pull has done so far, as the API and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct PullProgress {
    pub id: String,
    pub provider: String,
    pub model: String,
    pub state: PullState,
    /// Ollama's last status line (`pulling 6a0746a1ec1a`, `verifying sha256 digest`, …).
    pub status: String,
    pub completed_bytes: u64,
    pub total_bytes: u64,
    /// 0–100, when the total is known.
    pub percent: Option<f64>,
    pub bytes_per_s: Option<f64>,
    pub eta_s: Option<f64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// Who started it (`key:…` or the client address).
    pub requested_by: String,
}

/// Byte counts per layer of an Ollama pull, and the speed over the last few seconds
/// (the CLI reads Ollama's stream with it too).
#[derive(Default)]
pub struct Tally {
    layers: BTreeMap<String, (u64, u64)>,
    status: String,
    /// (time, completed bytes) samples for the speed.
    samples: VecDeque<(Instant, u64)>,
}

impl Tally {
    /// One progress line of Ollama's `/api/pull` stream.
    pub fn feed(&mut self, line: &Value) {
        if let Some(s) = line.get("status").and_then(Value::as_str) {
            self.status = s.chars().take(200).collect();
        }
        if let (Some(digest), Some(total)) = (
            line.get("digest").and_then(Value::as_str),
            line.get("total").and_then(Value::as_u64),
        ) {
            let completed = line.get("completed").and_then(Value::as_u64).unwrap_or(0);
            if self.layers.len() < 256 || self.layers.contains_key(digest) {
                self.layers
                    .insert(digest.to_string(), (completed.min(total), total));
            }
        }
        let now = Instant::now();
        let done = self.completed();
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t).as_secs_f64() > 5.0)
        {
            self.samples.pop_front();
        }
    }

    pub fn completed(&self) -> u64 {
        self.layers.values().map(|(c, _)| c).sum()
    }

    pub fn total(&self) -> u64 {
        self.layers.values().map(|(_, t)| t).sum()
    }

    /// Ollama's last status (`pulling 6a0746a1ec1a`, `success`).
    pub fn status(&self) -> &str {
        &self.status
    }

    /// Bytes per second over the last few seconds.
    pub fn speed(&self) -> Option<f64> {
        let (t0, b0) = self.samples.front()?;
        let (t1, b1) = self.samples.back()?;
        let dt = t1.duration_since(*t0).as_secs_f64();
        (dt >= 0.2 && b1 >= b0).then(|| (b1 - b0) as f64 / dt)
    }
}

/// One pull.
pub struct Pull {
    pub id: String,
    pub provider: String,
    pub model: String,
    lines: broadcast::Sender<Bytes>,
    last: Mutex<Option<Bytes>>,
    /// `None` while running; then `Ok` or the error.
    done: watch::Sender<Option<Result<(), String>>>,
    tally: Mutex<Tally>,
    meta: Mutex<(PullState, Option<String>, Option<String>)>,
    started_at: String,
    requested_by: String,
    cancel: CancellationToken,
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

    /// The progress now, then after every line, until the pull ends (for SSE).
    pub fn progress_updates(self: &Arc<Self>) -> BoxStream<'static, PullProgress> {
        let me = self.clone();
        let after = self.follow().map(move |_| me.progress());
        let me = self.clone();
        futures::stream::iter([self.progress()])
            .chain(after)
            .chain(futures::stream::once(async move {
                let _ = me.wait().await;
                me.progress()
            }))
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

    pub fn progress(&self) -> PullProgress {
        let tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, finished_at, error) = self
            .meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (completed, total) = (tally.completed(), tally.total());
        let speed = tally.speed().filter(|_| state == PullState::Running);
        PullProgress {
            id: self.id.clone(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            state,
            status: tally.status.clone(),
            completed_bytes: completed,
            total_bytes: total,
            percent: match state {
                PullState::Succeeded => Some(100.0),
                _ => (total > 0).then(|| (completed as f64 * 1000.0 / total as f64).round() / 10.0),
            },
            bytes_per_s: speed.map(f64::round),
            eta_s: speed
                .filter(|s| *s > 0.0 && total >= completed)
                .map(|s| ((total - completed) as f64 / s).round()),
            started_at: self.started_at.clone(),
            finished_at,
            error,
            requested_by: self.requested_by.clone(),
        }
    }

    /// Stop it: the upstream request is dropped, which stops Ollama's download.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    fn publish(&self, line: Bytes) {
        if let Ok(v) = serde_json::from_slice::<Value>(&line) {
            self.tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .feed(&v);
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(line.clone());
        let _ = self.lines.send(line);
    }

    fn finish(&self, state: PullState, error: Option<String>) {
        *self.meta.lock().unwrap_or_else(PoisonError::into_inner) =
            (state, Some(crate::store::now_text()), error.clone());
        let _ = self.done.send(Some(error.map_or(Ok(()), Err)));
    }
}

/// The pulls: running ones by provider and model, and the last few finished.
#[derive(Default)]
pub struct PullManager {
    running: Mutex<HashMap<(String, String), Arc<Pull>>>,
    finished: Mutex<VecDeque<Arc<Pull>>>,
}

impl PullManager {
    /// Running pulls first, then the finished ones, newest first.
    pub fn all(&self) -> Vec<Arc<Pull>> {
        let mut out: Vec<Arc<Pull>> = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        out.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        out.extend(
            self.finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .rev()
                .cloned(),
        );
        out
    }

    pub fn get(&self, id: &str) -> Option<Arc<Pull>> {
        self.all().into_iter().find(|p| p.id == id)
    }

    fn retire(&self, key: &(String, String), pull: &Arc<Pull>) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        finished.push_back(pull.clone());
        while finished.len() > KEEP_FINISHED {
            finished.pop_front();
        }
    }
}

impl LlmGateway {
    pub fn pulls(&self) -> &PullManager {
        &self.pulls
    }

    /// Start pulling `model` on the provider that should hold it (or `provider`), or
    /// join the pull of it already running. Returns the pull and whether it was joined.
    pub async fn pull(
        &self,
        call: &FrontCall,
        model: &str,
        provider: Option<&str>,
    ) -> Result<(Arc<Pull>, bool), Error> {
        let model = model.trim().to_string();
        if model.is_empty() || model.len() > 200 {
            return Err(Error::validation(
                "model",
                "a model name (at most 200 characters)",
            ));
        }
        let provider = match provider {
            Some(p) => self.ollama_backend(p)?.0,
            None => self.backend_for(Some(&model))?.0,
        };
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
            .ollama_forward_to(
                call,
                &provider,
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
            tally: Mutex::new(Tally::default()),
            meta: Mutex::new((PullState::Running, None, None)),
            started_at: crate::store::now_text(),
            requested_by: call
                .requester
                .key_id
                .as_ref()
                .map_or_else(|| call.requester.client.clone(), |k| format!("key:{k}")),
            cancel: CancellationToken::new(),
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
        let backend = self.ollama_backend(&provider).ok().map(|(_, p)| p);
        let status = stream.status;
        let body = stream.body;
        tokio::spawn(async move {
            let (state, error) = tokio::select! {
                r = read_progress(&runner, body, status) => match r {
                    Ok(()) => (PullState::Succeeded, None),
                    Err(e) => (PullState::Failed, Some(e)),
                },
                () = runner.cancel.cancelled() => {
                    (PullState::Cancelled, Some("cancelled".to_string()))
                }
            };
            manager.retire(&key, &runner);
            if state == PullState::Succeeded {
                // Routes waiting for this model see it at once.
                if let Some(p) = backend {
                    let _ = p.list_models().await;
                }
            }
            runner.finish(state, error);
        });
        Ok((pull, false))
    }
}

/// Publish each NDJSON progress line; `Err` with Ollama's error when it failed.
async fn read_progress(
    pull: &Pull,
    mut body: BoxStream<'static, Result<Bytes, Error>>,
    status: u16,
) -> Result<(), String> {
    let mut partial: Vec<u8> = Vec::new();
    let mut error: Option<String> = None;
    let finish_line = |line: Vec<u8>, error: &mut Option<String>| {
        let line = Bytes::from(line);
        if let Some(e) = error_of(&line) {
            *error = Some(e);
        }
        pull.publish(line);
    };
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                for piece in bytes.split_inclusive(|b| *b == b'\n') {
                    if partial.len() + piece.len() <= MAX_LINE {
                        partial.extend_from_slice(piece);
                    }
                    if piece.ends_with(b"\n") {
                        finish_line(std::mem::take(&mut partial), &mut error);
                    }
                }
            }
            Err(e) => {
                let line = format!("{}\n", serde_json::json!({"error": e.to_string()}));
                finish_line(line.into_bytes(), &mut error);
                break;
            }
        }
    }
    if !partial.is_empty() {
        partial.push(b'\n');
        finish_line(partial, &mut error);
    }
    match error {
        Some(e) => Err(e),
        None if status >= 400 => Err(format!("the instance answered {status}")),
        None => Ok(()),
    }
}

fn error_of(line: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(line)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_sums_layers_and_reports_speed() {
        let mut t = Tally::default();
        t.feed(&json!({"status": "pulling manifest"}));
        t.feed(
            &json!({"status": "pulling a", "digest": "sha256:a", "total": 1000, "completed": 100}),
        );
        t.feed(&json!({"status": "pulling b", "digest": "sha256:b", "total": 10}));
        assert_eq!((t.completed(), t.total()), (100, 1010));
        t.feed(
            &json!({"status": "pulling a", "digest": "sha256:a", "total": 1000, "completed": 1000}),
        );
        assert_eq!(t.completed(), 1000);
        assert_eq!(t.status, "pulling a");
        // Completed never exceeds the total, even when the upstream says so.
        t.feed(&json!({"digest": "sha256:b", "total": 10, "completed": 99}));
        assert_eq!(t.completed(), 1010);
    }
}
