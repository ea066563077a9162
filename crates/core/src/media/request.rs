//! The two request shapes the backend sends (the design's `kind` + `options`, the
//! running code's `task` + `media_type`), resolved into one [`ImageSpec`].

use super::provider::ImageSpec;
use crate::config::MediaConfig;
use crate::media::error::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::Value;

/// Largest seed accepted: the largest integer a JSON number carries exactly.
pub const MAX_SEED: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Deserialize, Default)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
    /// `auto` (or absent) = the configured provider for the current mode.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub brand: Option<Value>,
    #[serde(default)]
    pub options: Option<GenerateOptions>,
    #[serde(default, rename = "async")]
    pub run_async: Option<bool>,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct GenerateOptions {
    #[serde(default)]
    pub aspect_ratio: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// -1 or absent: a random seed (the answer reports the one used).
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default, alias = "cfg")]
    pub cfg_scale: Option<f64>,
    #[serde(default, alias = "num_images", alias = "batch_size")]
    pub count: Option<u32>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// KSampler's `sampler_name` (`euler`, `dpmpp_2m_sde_gpu`, ...): checked against the
    /// names ComfyUI lists before the job is queued.
    #[serde(default, alias = "sampler_name")]
    pub sampler: Option<String>,
    /// KSampler's `scheduler` (`normal`, `karras`, ...).
    #[serde(default)]
    pub scheduler: Option<String>,
    /// 0..=1: how much of the starting latent is replaced (1 = all of it).
    #[serde(default)]
    pub denoise: Option<f64>,
    /// Answer from the mock provider for this request only (as `options.mock` on the LLM side).
    #[serde(default)]
    pub mock: Option<bool>,
    /// `url` (default) or `base64`: what `outputs[].data` holds.
    #[serde(default, rename = "return")]
    pub return_as: Option<String>,
    /// Other keys agents send (style hints, ...) are accepted and ignored.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// A sampler or scheduler name as ComfyUI spells them; whether it is installed is
/// ComfyUI's to say.
fn is_choice_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Round to the nearest multiple of 8 (latent images are 1/8 of the pixel size).
pub fn round8(v: u32) -> u32 {
    ((v + 4) / 8 * 8).max(8)
}

fn parse_ratio(s: &str) -> Option<(f64, f64)> {
    let (a, b) = s.split_once(':')?;
    let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() && a / b < 16.0 && b / a < 16.0)
        .then_some((a, b))
}

/// What resolving a request needs besides the request.
pub struct ResolveContext<'a> {
    pub config: &'a MediaConfig,
    pub provider: String,
    pub generator_mode: &'a str,
    pub request_id: String,
    pub caller: String,
    pub key_id: Option<String>,
    /// A random seed, used when the caller gave none.
    pub random_seed: u64,
}

/// Request → spec, with 400s naming the field for anything unusable.
pub fn resolve(req: &GenerateRequest, ctx: ResolveContext<'_>) -> Result<ImageSpec, Error> {
    let cfg = ctx.config;
    if let Some(mt) = req.media_type.as_deref() {
        if mt != "image" {
            return Err(Error::new(
                ErrorKind::UnsupportedMediaType,
                format!("media_type {mt:?} is not supported yet; only \"image\""),
            )
            .with("field", "media_type"));
        }
    }
    let opts = req.options.clone().unwrap_or_default();
    // Kind: explicit, else from the task, else the default. Unknown tasks (the designer
    // agent's ad_banner, illustration, ...) fall back to the default kind.
    let task_cfg = req.task.as_deref().and_then(|t| cfg.tasks.get(t));
    let kind = match (&req.kind, task_cfg) {
        (Some(k), _) => k.clone(),
        (None, Some(t)) => t.kind.clone(),
        (None, None) => cfg.default_kind.clone(),
    };
    let kind_cfg = cfg.kinds.get(&kind).ok_or_else(|| {
        Error::validation(
            "kind",
            format!(
                "{kind:?} is not a kind (known: {})",
                cfg.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    // A task's own defaults apply only when it maps to this kind.
    let task_cfg = task_cfg.filter(|t| t.kind == kind);

    let mut width = task_cfg.and_then(|t| t.width).unwrap_or(kind_cfg.width);
    let mut height = task_cfg.and_then(|t| t.height).unwrap_or(kind_cfg.height);
    if let Some(ratio) = opts.aspect_ratio.as_deref() {
        if let Some([w, h]) = cfg.aspect_ratios.get(ratio) {
            (width, height) = (*w, *h);
        } else if let Some((a, b)) = parse_ratio(ratio) {
            // Same pixel area as the kind's default, in this ratio.
            let area = (kind_cfg.width as f64) * (kind_cfg.height as f64);
            let h = (area * b / a).sqrt();
            (width, height) = ((h * a / b).round() as u32, h.round() as u32);
        } else {
            return Err(Error::validation(
                "options.aspect_ratio",
                format!("{ratio:?} is not a ratio like \"16:9\""),
            ));
        }
    }
    match (opts.width, opts.height) {
        (Some(w), Some(h)) => (width, height) = (w, h),
        (Some(w), None) => {
            height = ((w as f64) * height as f64 / width.max(1) as f64).round() as u32;
            width = w;
        }
        (None, Some(h)) => {
            width = ((h as f64) * width as f64 / height.max(1) as f64).round() as u32;
            height = h;
        }
        (None, None) => {}
    }
    let max = cfg.max_side;
    for (field, v) in [("options.width", width), ("options.height", height)] {
        if !(8..=max).contains(&v) {
            return Err(Error::validation(
                field,
                format!("{v} is outside 8..={max}"),
            ));
        }
    }
    let seed = match opts.seed {
        None | Some(-1) => ctx.random_seed % (1 << 32),
        Some(s) if s >= 0 && (s as u64) <= MAX_SEED => s as u64,
        Some(s) => {
            return Err(Error::validation(
                "options.seed",
                format!("{s} is outside 0..={MAX_SEED} (or -1 for random)"),
            ))
        }
    };
    let count = opts.count.unwrap_or(1);
    if count == 0 || count > cfg.max_count {
        return Err(Error::validation(
            "options.count",
            format!("must be 1..={}", cfg.max_count),
        ));
    }
    let pixels = u64::from(round8(width)) * u64::from(round8(height)) * u64::from(count);
    if pixels > cfg.max_pixels {
        return Err(Error::validation(
            "options.count",
            format!(
                "{count} image(s) of {width}×{height} are {pixels} pixels; one request may ask for at most {} (media.max_pixels)",
                cfg.max_pixels
            ),
        ));
    }
    if let Some(steps) = opts.steps {
        if !(1..=200).contains(&steps) {
            return Err(Error::validation("options.steps", "must be 1..=200"));
        }
    }
    if let Some(c) = opts.cfg_scale {
        if !(0.0..=100.0).contains(&c) {
            return Err(Error::validation("options.cfg_scale", "must be 0..=100"));
        }
    }
    if let Some(d) = opts.denoise {
        if !(0.0..=1.0).contains(&d) {
            return Err(Error::validation("options.denoise", "must be 0..=1"));
        }
    }
    for (field, name) in [
        ("options.sampler", &opts.sampler),
        ("options.scheduler", &opts.scheduler),
    ] {
        if let Some(name) = name {
            if !is_choice_name(name) {
                return Err(Error::validation(
                    field,
                    format!(
                        "{name:?} is not a name like \"euler\" (1 to 64 letters, digits, _ . -)"
                    ),
                ));
            }
        }
    }
    match opts.return_as.as_deref() {
        None | Some("url" | "base64") => {}
        Some(other) => {
            return Err(Error::validation(
                "options.return",
                format!("{other:?} is not \"url\" or \"base64\""),
            ))
        }
    }
    let negative_prompt = opts
        .negative_prompt
        .clone()
        .or_else(|| req.negative_prompt.clone())
        .or_else(|| task_cfg.and_then(|t| t.negative_prompt.clone()))
        .or_else(|| kind_cfg.negative_prompt.clone());
    Ok(ImageSpec {
        provider: ctx.provider,
        kind,
        task: req.task.clone(),
        workflow: opts.workflow.as_ref().map_or_else(
            || kind_cfg.workflow.clone(),
            |w| cfg.workflow_aliases.get(w).unwrap_or(w).clone(),
        ),
        prompt: req.prompt.clone(),
        negative_prompt,
        width: round8(width),
        height: round8(height),
        requested_width: width,
        requested_height: height,
        aspect_ratio: opts.aspect_ratio.clone(),
        seed,
        steps: opts
            .steps
            .or(task_cfg.and_then(|t| t.steps))
            .or(kind_cfg.steps),
        cfg: opts
            .cfg_scale
            .or(task_cfg.and_then(|t| t.cfg))
            .or(kind_cfg.cfg),
        sampler: opts
            .sampler
            .clone()
            .or_else(|| task_cfg.and_then(|t| t.sampler.clone()))
            .or_else(|| kind_cfg.sampler.clone()),
        scheduler: opts
            .scheduler
            .clone()
            .or_else(|| task_cfg.and_then(|t| t.scheduler.clone()))
            .or_else(|| kind_cfg.scheduler.clone()),
        denoise: opts.denoise,
        count,
        checkpoint: opts.checkpoint.clone(),
        brand: req.brand.clone(),
        generator_mode: ctx.generator_mode.to_string(),
        request_id: ctx.request_id,
        client_id: uuid::Uuid::new_v4().simple().to_string(),
        caller: ctx.caller,
        key_id: ctx.key_id,
        instance: None,
        vram_mb: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_latent_multiples() {
        assert_eq!(round8(630), 632);
        assert_eq!(round8(1024), 1024);
        assert_eq!(round8(1), 8);
        assert_eq!(round8(1203), 1200);
    }

    #[test]
    fn ratios_parse() {
        assert_eq!(parse_ratio("16:9"), Some((16.0, 9.0)));
        assert!(parse_ratio("16x9").is_none());
        assert!(parse_ratio("0:9").is_none());
    }
}
