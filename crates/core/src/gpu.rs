//! GPU memory arbitration between the two sides that share the desktop's one card: the
//! LLM side (Ollama's loaded models) and the media side (ComfyUI's). qwen2.5:14b and an
//! SDXL workflow do not fit in 12 GB together; without arbitration whichever comes second
//! fails or swaps slowly.
//!
//! Before a ComfyUI job whose workflow declares `vram_mb`, when the card is short, the
//! idle Ollama models are unloaded (`keep_alive: 0`); before an LLM call for a model that
//! is not loaded, an idle ComfyUI is asked to free its models (`POST /free`). Never while
//! the other side is busy: the request waits (bounded) and says why. Every arbitration is
//! an event.
//!
//! Free memory comes from NVML when it can say; otherwise from `[gpu] total_mb` minus
//! what the two sides report holding (Ollama's `size_vram`, ComfyUI's CUDA devices).

use crate::config::{GpuArbitration, GpuConfig};
use crate::supervisor::events::EventLog;
use async_trait::async_trait;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How a job's note begins while it waits for the card to have room.
pub const GPU_WAIT_NOTE: &str = "waiting for GPU memory";
/// The event log's name for arbitrations.
pub const GPU_SERVICE: &str = "gpu";
const MB: u64 = 1024 * 1024;
/// How often a waiting request looks again.
const RECHECK: Duration = Duration::from_millis(200);

/// A model the LLM side holds in GPU memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModel {
    pub provider: String,
    pub model: String,
    pub vram_bytes: u64,
}

/// What the arbiter needs of the LLM side.
#[async_trait]
pub trait LlmSide: Send + Sync {
    /// Calls in flight now.
    fn busy(&self) -> bool;
    async fn loaded(&self) -> Vec<LoadedModel>;
    async fn unload(&self, provider: &str, model: &str) -> Result<(), String>;
}

/// What the arbiter needs of the media side.
#[async_trait]
pub trait MediaSide: Send + Sync {
    /// Jobs drawing now (not counting the one asking, when `excluding_one`).
    fn busy(&self, excluding_one: bool) -> bool;
    /// GPU bytes ComfyUI holds (its CUDA devices), when it says.
    async fn vram_used(&self) -> Option<u64>;
    async fn free(&self) -> Result<(), String>;
}

/// What happened before the work went ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do: arbitration off, memory unknown, or enough free.
    Fits,
    /// The other side was asked to give memory back.
    Freed(String),
    /// The other side stayed busy for the whole wait: going ahead anyway.
    GaveUp(String),
}

pub struct Arbiter {
    config: GpuConfig,
    /// `(used, total)` bytes from NVML, when it can say.
    nvml: Box<dyn Fn() -> Option<(u64, u64)> + Send + Sync>,
    llm: OnceLock<Arc<dyn LlmSide>>,
    media: OnceLock<Arc<dyn MediaSide>>,
    events: OnceLock<EventLog>,
    /// One arbitration at a time (two jobs must not both unload and both wait).
    turn: tokio::sync::Mutex<()>,
}

impl Arbiter {
    pub fn new(config: GpuConfig, nvml: Box<dyn Fn() -> Option<(u64, u64)> + Send + Sync>) -> Self {
        Self {
            config,
            nvml,
            llm: OnceLock::new(),
            media: OnceLock::new(),
            events: OnceLock::new(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Connect the two sides and the event log (they exist after the gateways).
    pub fn attach(&self, llm: Arc<dyn LlmSide>, media: Arc<dyn MediaSide>, events: EventLog) {
        let _ = self.llm.set(llm);
        let _ = self.media.set(media);
        let _ = self.events.set(events);
    }

    pub fn policy(&self) -> GpuArbitration {
        self.config.arbitration
    }

    /// Whether arbitration can act: on, and something says how much memory is free.
    pub fn active(&self) -> bool {
        self.config.arbitration != GpuArbitration::Off
            && (self.config.total_mb.is_some() || (self.nvml)().is_some())
    }

    /// Free bytes on the card, if anything can say.
    async fn free_bytes(&self) -> Option<u64> {
        if let Some((used, total)) = (self.nvml)() {
            return Some(total.saturating_sub(used));
        }
        let total = self.config.total_mb? * MB;
        let llm: u64 = match self.llm.get() {
            Some(l) => l.loaded().await.iter().map(|m| m.vram_bytes).sum(),
            None => 0,
        };
        let media = match self.media.get() {
            Some(m) => m.vram_used().await.unwrap_or(0),
            None => 0,
        };
        Some(total.saturating_sub(llm + media))
    }

    async fn event(&self, to: &str, reason: &str) {
        if let Some(e) = self.events.get() {
            e.record(GPU_SERVICE, None, to, reason, Some("gpu arbitration"))
                .await;
        }
    }

    /// Before a ComfyUI job that needs `need_mb`: unload idle Ollama models if the card
    /// is short. `waiting` is told why the job waits, while it does.
    pub async fn before_media_job(
        &self,
        need_mb: u64,
        waiting: &(dyn Fn(Option<String>) + Sync),
    ) -> Decision {
        if matches!(
            self.config.arbitration,
            GpuArbitration::Off | GpuArbitration::PreferLlm
        ) {
            return Decision::Fits;
        }
        let Some(llm) = self.llm.get().cloned() else {
            return Decision::Fits;
        };
        let _turn = self.turn.lock().await;
        let need = (need_mb + self.config.headroom_mb) * MB;
        let deadline = Instant::now() + Duration::from_secs_f64(self.config.wait_s);
        loop {
            let Some(free) = self.free_bytes().await else {
                return Decision::Fits;
            };
            if free >= need {
                waiting(None);
                return Decision::Fits;
            }
            let loaded = llm.loaded().await;
            if loaded.is_empty() {
                waiting(None);
                return Decision::Fits;
            }
            if !llm.busy() {
                let mut unloaded = Vec::new();
                for m in &loaded {
                    match llm.unload(&m.provider, &m.model).await {
                        Ok(()) => unloaded.push(format!("{} ({} MB)", m.model, m.vram_bytes / MB)),
                        Err(e) => {
                            tracing::warn!(model = %m.model, "gpu arbitration: cannot unload: {e}");
                        }
                    }
                }
                let reason = format!(
                    "unloaded {} from Ollama for a ComfyUI job that needs {need_mb} MB ({} MB were free)",
                    unloaded.join(", "),
                    free / MB
                );
                self.event("llm models unloaded", &reason).await;
                waiting(None);
                return Decision::Freed(reason);
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "the LLM side stayed busy for {:.0} s: the ComfyUI job runs with {} MB free (needs {need_mb} MB)",
                    self.config.wait_s,
                    free / MB
                );
                self.event("gave up waiting", &reason).await;
                waiting(None);
                return Decision::GaveUp(reason);
            }
            waiting(Some(format!(
                "{}: needs {need_mb} MB, {} MB free, the LLM side is busy",
                GPU_WAIT_NOTE,
                free / MB
            )));
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// Before an LLM call for a model that is not loaded (`need` bytes): ask an idle
    /// ComfyUI to free its models if the card is short; wait (bounded by `deadline`)
    /// while it draws.
    pub async fn before_llm_model(&self, model: &str, need: u64, deadline: Instant) -> Decision {
        if matches!(
            self.config.arbitration,
            GpuArbitration::Off | GpuArbitration::PreferMedia
        ) {
            return Decision::Fits;
        }
        let Some(media) = self.media.get().cloned() else {
            return Decision::Fits;
        };
        let _turn = self.turn.lock().await;
        let need_with_headroom = need + self.config.headroom_mb * MB;
        let deadline = deadline.min(Instant::now() + Duration::from_secs_f64(self.config.wait_s));
        loop {
            let Some(free) = self.free_bytes().await else {
                return Decision::Fits;
            };
            if free >= need_with_headroom {
                return Decision::Fits;
            }
            if !media.busy(false) {
                let reason = match media.free().await {
                    Ok(()) => format!(
                        "asked ComfyUI to free its models for {model} ({} MB; {} MB were free)",
                        need / MB,
                        free / MB
                    ),
                    Err(e) => format!("could not ask ComfyUI to free its models for {model}: {e}"),
                };
                self.event("comfyui models freed", &reason).await;
                return Decision::Freed(reason);
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "ComfyUI stayed busy: {model} loads with {} MB free (needs {} MB)",
                    free / MB,
                    need / MB
                );
                self.event("gave up waiting", &reason).await;
                return Decision::GaveUp(reason);
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    struct FakeLlm {
        busy: AtomicBool,
        loaded: Mutex<Vec<LoadedModel>>,
    }

    #[async_trait]
    impl LlmSide for FakeLlm {
        fn busy(&self) -> bool {
            self.busy.load(Ordering::SeqCst)
        }
        async fn loaded(&self) -> Vec<LoadedModel> {
            self.loaded.lock().unwrap().clone()
        }
        async fn unload(&self, _provider: &str, model: &str) -> Result<(), String> {
            self.loaded.lock().unwrap().retain(|m| m.model != model);
            Ok(())
        }
    }

    struct FakeMedia {
        busy: AtomicBool,
        freed: AtomicBool,
    }

    #[async_trait]
    impl MediaSide for FakeMedia {
        fn busy(&self, _excluding_one: bool) -> bool {
            self.busy.load(Ordering::SeqCst)
        }
        async fn vram_used(&self) -> Option<u64> {
            Some(if self.freed.load(Ordering::SeqCst) {
                0
            } else {
                6_000 * MB
            })
        }
        async fn free(&self) -> Result<(), String> {
            self.freed.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    fn arbiter(policy: GpuArbitration) -> (Arbiter, Arc<FakeLlm>, Arc<FakeMedia>) {
        let a = Arbiter::new(
            GpuConfig {
                arbitration: policy,
                total_mb: Some(12_288),
                headroom_mb: 512,
                wait_s: 0.5,
            },
            Box::new(|| None),
        );
        let llm = Arc::new(FakeLlm {
            busy: AtomicBool::new(false),
            loaded: Mutex::new(vec![LoadedModel {
                provider: "ollama".into(),
                model: "qwen2.5:14b".into(),
                vram_bytes: 9_000 * MB,
            }]),
        });
        let media = Arc::new(FakeMedia {
            busy: AtomicBool::new(false),
            freed: AtomicBool::new(true),
        });
        let _ = a.llm.set(llm.clone());
        let _ = a.media.set(media.clone());
        (a, llm, media)
    }

    #[tokio::test]
    async fn policy_table() {
        // (policy, LLM busy, expected decision kind for an SDXL job needing 9 GB)
        for (policy, busy, expect) in [
            (GpuArbitration::Fair, false, "freed"),
            (GpuArbitration::Fair, true, "gave up"),
            (GpuArbitration::PreferMedia, false, "freed"),
            (GpuArbitration::PreferLlm, false, "fits"),
            (GpuArbitration::Off, false, "fits"),
        ] {
            let (a, llm, _) = arbiter(policy);
            llm.busy.store(busy, Ordering::SeqCst);
            let d = a.before_media_job(9_000, &|_| {}).await;
            let kind = match d {
                Decision::Fits => "fits",
                Decision::Freed(_) => "freed",
                Decision::GaveUp(_) => "gave up",
            };
            assert_eq!(kind, expect, "{policy:?} busy={busy}");
            let still_loaded = !llm.loaded.lock().unwrap().is_empty();
            assert_eq!(still_loaded, expect != "freed", "{policy:?} busy={busy}");
        }
    }

    #[tokio::test]
    async fn an_unloaded_model_frees_an_idle_comfyui_never_a_busy_one() {
        let (a, llm, media) = arbiter(GpuArbitration::Fair);
        llm.loaded.lock().unwrap().clear();
        media.freed.store(false, Ordering::SeqCst);
        // 12 GB - 6 GB held by ComfyUI = 6 GB free < 9 GB + headroom.
        media.busy.store(true, Ordering::SeqCst);
        let d = a
            .before_llm_model(
                "qwen2.5:14b",
                9_000 * MB,
                Instant::now() + Duration::from_secs(5),
            )
            .await;
        assert!(matches!(d, Decision::GaveUp(_)), "{d:?}");
        assert!(
            !media.freed.load(Ordering::SeqCst),
            "never freed while drawing"
        );
        media.busy.store(false, Ordering::SeqCst);
        let d = a
            .before_llm_model(
                "qwen2.5:14b",
                9_000 * MB,
                Instant::now() + Duration::from_secs(5),
            )
            .await;
        assert!(matches!(d, Decision::Freed(_)), "{d:?}");
        assert!(media.freed.load(Ordering::SeqCst));
        // Enough free now: nothing to do.
        let d = a
            .before_llm_model(
                "qwen2.5:14b",
                9_000 * MB,
                Instant::now() + Duration::from_secs(5),
            )
            .await;
        assert_eq!(d, Decision::Fits);
    }

    #[tokio::test]
    async fn a_job_waits_while_the_llm_side_works_then_unloads() {
        let (a, llm, _) = arbiter(GpuArbitration::Fair);
        let a = Arc::new(Arbiter {
            config: GpuConfig {
                wait_s: 10.0,
                ..a.config.clone()
            },
            ..a
        });
        llm.busy.store(true, Ordering::SeqCst);
        let notes = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
        let job = {
            let (a, notes) = (a.clone(), notes.clone());
            tokio::spawn(async move {
                a.before_media_job(9_000, &move |n| notes.lock().unwrap().push(n))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !llm.loaded.lock().unwrap().is_empty(),
            "nothing unloaded while generating"
        );
        assert!(notes
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .any(|n| n.contains("the LLM side is busy")));
        llm.busy.store(false, Ordering::SeqCst);
        let d = job.await.unwrap();
        assert!(matches!(d, Decision::Freed(_)), "{d:?}");
        assert!(llm.loaded.lock().unwrap().is_empty());
        assert_eq!(
            notes.lock().unwrap().last(),
            Some(&None),
            "the wait note is cleared"
        );
    }
}
