//! The mock provider: no network. Draws a real PNG of the requested size, the same
//! for the same prompt and seed, and reports it through the same job states as a
//! live provider, so callers and the dashboard behave the same in both modes.

use crate::config::MediaProviderConfig;
use crate::media::error::{Error, ErrorKind};
use crate::media::jobs::JobUpdates;
use crate::media::provider::{
    GeneratedImage, ImageSpec, JobRun, MediaProvider, ModelInfo, SharedProvider,
};
use crate::media::views::ProviderHealth;
use crate::media::workflows::Workflows;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The model name mock answers report in `/models`.
const MOCK_MODEL: &str = "mock-media-v1";

pub struct MockProvider {
    name: String,
    config: MediaProviderConfig,
    workflows: Workflows,
}

pub fn build(name: &str, config: &MediaProviderConfig) -> anyhow::Result<SharedProvider> {
    // Same workflow names as the live provider, so `model` and validation match.
    let (workflows, problems) = Workflows::load(config.workflow_dir.as_deref());
    for p in problems {
        tracing::warn!(provider = name, "{p}");
    }
    Ok(Arc::new(MockProvider {
        name: name.to_string(),
        config: config.clone(),
        workflows,
    }))
}

#[async_trait::async_trait]
impl MediaProvider for MockProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mock"
    }

    fn config(&self) -> &MediaProviderConfig {
        &self.config
    }

    fn workflows(&self) -> &Workflows {
        &self.workflows
    }

    async fn health(&self) -> ProviderHealth {
        ProviderHealth {
            model: Some(MOCK_MODEL),
            ..ProviderHealth::healthy("mock")
        }
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, Error> {
        Ok(vec![ModelInfo {
            name: MOCK_MODEL.into(),
            model_type: "checkpoint".into(),
            provider: self.name.clone(),
            size_bytes: None,
        }])
    }

    async fn prepare(&self, _spec: &ImageSpec) -> Result<Option<String>, Error> {
        // The workflow was checked against the provider the mock stands in for (in mock
        // mode, the live one: it may have workflows of its own folder). One instance,
        // named like a live provider's single one, so answers keep one shape.
        Ok(Some("main".into()))
    }

    async fn run(&self, job: &JobRun, updates: &JobUpdates) -> Result<Vec<GeneratedImage>, Error> {
        // A resumed mock job is drawn again: the result is the same image.
        updates.upstream(&format!("mock-{}", job.job_id)).await;
        updates.accepted();
        updates.queue_position(Some(1));
        updates.running().await;
        let steps = job.spec.steps.unwrap_or(20).max(1);
        let delay = Duration::from_millis(self.config.step_delay_ms);
        for step in 1..=steps {
            if job.stop.is_cancelled() {
                return Err(Error::new(ErrorKind::Cancelled, "the job was stopped"));
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            // Drawing is the last 10 %.
            updates.progress(
                0.9 * step as f64 / steps as f64,
                Some((step, steps)),
                Some("sampler".into()),
            );
        }
        let spec = job.spec.clone();
        let stop = job.stop.clone();
        let images = tokio::task::spawn_blocking(move || {
            (0..spec.count.max(1))
                .map(|i| {
                    let seed = spec.seed.wrapping_add(u64::from(i));
                    draw_png_until(spec.width, spec.height, &spec.prompt, seed, &stop).map(|data| {
                        GeneratedImage {
                            data,
                            mime: "image/png".into(),
                            width: spec.width,
                            height: spec.height,
                            seed,
                        }
                    })
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("mock drawing task failed: {e}"),
            )
        })?
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("mock PNG encoding failed: {e}"),
            )
        })?;
        Ok(images)
    }

    async fn cancel(&self, _upstream_id: &str, _instance: Option<&str>) -> Result<(), Error> {
        Ok(())
    }
}

/// A deterministic picture: a two-colour diagonal gradient with soft discs, all
/// chosen from a hash of the prompt and seed.
pub fn draw_png(width: u32, height: u32, prompt: &str, seed: u64) -> Result<Vec<u8>, String> {
    draw_png_until(
        width,
        height,
        prompt,
        seed,
        &tokio_util::sync::CancellationToken::new(),
    )
}

/// [`draw_png`] that checks `stop` every row, so a cancelled or timed-out job stops
/// drawing at once instead of finishing for nobody.
pub fn draw_png_until(
    width: u32,
    height: u32,
    prompt: &str,
    seed: u64,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Vec<u8>, String> {
    let mut h = Sha256::new();
    h.update(prompt.as_bytes());
    h.update(seed.to_le_bytes());
    let d: [u8; 32] = h.finalize().into();
    let c0 = [d[0], d[1], d[2]];
    let c1 = [d[3], d[4], d[5]];
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..4)
        .map(|i| {
            let b = &d[8 + i * 6..14 + i * 6];
            (
                b[0] as f32 / 255.0 * width as f32,
                b[1] as f32 / 255.0 * height as f32,
                (0.08 + b[2] as f32 / 255.0 * 0.25) * width.min(height) as f32,
                [b[3], b[4], b[5]],
            )
        })
        .collect();
    let (w, hgt) = (width as usize, height as usize);
    let mut pixels = vec![0u8; w * hgt * 3];
    let span = (w + hgt).max(1) as f32;
    for y in 0..hgt {
        if stop.is_cancelled() {
            return Err("stopped: the job was cancelled or timed out".into());
        }
        for x in 0..w {
            let t = (x + y) as f32 / span;
            let mut px = [0f32; 3];
            for c in 0..3 {
                px[c] = c0[c] as f32 * (1.0 - t) + c1[c] as f32 * t;
            }
            for (cx, cy, r, col) in &discs {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                let dist2 = dx * dx + dy * dy;
                if dist2 < r * r {
                    let a = 0.6 * (1.0 - dist2 / (r * r));
                    for c in 0..3 {
                        px[c] = px[c] * (1.0 - a) + col[c] as f32 * a;
                    }
                }
            }
            let o = (y * w + x) * 3;
            for c in 0..3 {
                pixels[o + c] = px[c] as u8;
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        enc.add_text_chunk("Software".into(), "Sparklio Desk mock".into())
            .map_err(|e| e.to_string())?;
        enc.add_text_chunk("seed".into(), seed.to_string())
            .map_err(|e| e.to_string())?;
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::png_size;

    #[test]
    fn png_has_the_size_and_depends_on_prompt_and_seed() {
        let go = tokio_util::sync::CancellationToken::new();
        let a = draw_png_until(40, 24, "cat", 1, &go).unwrap();
        assert_eq!(png_size(&a), Some((40, 24)));
        assert_eq!(a, draw_png(40, 24, "cat", 1).unwrap());
        assert_ne!(a, draw_png(40, 24, "cat", 2).unwrap());
        assert_ne!(a, draw_png(40, 24, "dog", 1).unwrap());
        let stopped = tokio_util::sync::CancellationToken::new();
        stopped.cancel();
        assert!(draw_png_until(4096, 4096, "cat", 1, &stopped).is_err());
        let decoder = png::Decoder::new(std::io::Cursor::new(a));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width, 40);
    }
}
