//! The media side of the GPU arbitration: whether a job is drawing, what ComfyUI holds
//! on the card, and asking it to give the memory back.

use super::setup::MediaSetup;
use crate::gpu::MediaSide;
use crate::work::WorkLimiter;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use std::sync::Arc;

pub struct MediaGpuSide {
    /// Read at each use: a config reload may replace the providers.
    pub(super) setup: Arc<ArcSwap<MediaSetup>>,
    pub(super) work: WorkLimiter,
}

#[async_trait]
impl MediaSide for MediaGpuSide {
    fn busy(&self, excluding_one: bool) -> bool {
        self.work.figures().running > usize::from(excluding_one)
    }

    async fn vram_used(&self) -> Option<u64> {
        let mut used = None;
        let setup = self.setup.load_full();
        for p in setup.providers.values() {
            if let Some(b) = p.vram_used().await {
                *used.get_or_insert(0) += b;
            }
        }
        used
    }

    async fn free(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let setup = self.setup.load_full();
        for (name, p) in &setup.providers {
            if let Err(e) = p.free_memory().await {
                errors.push(format!("{name}: {}", e.message));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
