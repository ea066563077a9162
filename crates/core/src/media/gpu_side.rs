//! The media side of the GPU arbitration: whether a job is drawing, what ComfyUI holds
//! on the card, and asking it to give the memory back.

use super::provider::SharedProvider;
use crate::gpu::MediaSide;
use crate::work::WorkLimiter;
use async_trait::async_trait;
use std::collections::BTreeMap;

pub struct MediaGpuSide {
    pub(super) providers: BTreeMap<String, SharedProvider>,
    pub(super) work: WorkLimiter,
}

#[async_trait]
impl MediaSide for MediaGpuSide {
    fn busy(&self, excluding_one: bool) -> bool {
        self.work.figures().running > usize::from(excluding_one)
    }

    async fn vram_used(&self) -> Option<u64> {
        let mut used = None;
        for p in self.providers.values() {
            if let Some(b) = p.vram_used().await {
                *used.get_or_insert(0) += b;
            }
        }
        used
    }

    async fn free(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for (name, p) in &self.providers {
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
