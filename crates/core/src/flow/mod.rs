//! The product-detail flow ("product detail + one image"): the Sparklio team's definition
//! of done for the whole stack, run through the gateway's own HTTP API exactly as the
//! backend's six agents would call it.
//!
//! brand summary → brief → section plan → copy per section → image prompt (vision) →
//! hero image (media gateway) → review of the copy against the brand.

pub mod jobs;

use crate::client::{ClientError, GatewayClient, ImageRequest, LlmRequest, LlmResponse};
use crate::contracts;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Instant;

/// The team's sample: a Korean protein shake (as in their own test).
pub const SAMPLE_INPUT: &str = include_str!("sample_input.json");

/// The team's budgets for the whole flow.
pub const MOCK_BUDGET_S: f64 = 30.0;
pub const LIVE_BUDGET_S: f64 = 180.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowInput {
    pub brand: Value,
    pub product: Value,
    #[serde(default)]
    pub image: ImageSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSpec {
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_aspect")]
    pub aspect_ratio: String,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            kind: default_kind(),
            aspect_ratio: default_aspect(),
        }
    }
}

fn default_kind() -> String {
    "hero".into()
}
fn default_aspect() -> String {
    "16:9".into()
}

impl FlowInput {
    pub fn sample() -> Self {
        serde_json::from_str(SAMPLE_INPUT).expect("sample input parses")
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    Failed,
}

impl StepStatus {
    fn of(ok: bool) -> Self {
        if ok {
            Self::Succeeded
        } else {
            Self::Failed
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub name: String,
    pub role: String,
    pub task: String,
    pub status: StepStatus,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Wall time seen by the client.
    pub ms: f64,
    /// Time the gateway reported for the request (`meta.latency_ms`).
    pub gateway_ms: Option<f64>,
    /// The provider's own time when the gateway reports it (`meta.provider_latency_ms`).
    pub provider_ms: Option<f64>,
    pub tokens: Option<i64>,
    /// Contract violations of the answer (empty when valid).
    pub violations: Vec<String>,
    pub error: Option<Value>,
}

/// Progress as the flow runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FlowEvent {
    StepStarted {
        index: usize,
        name: String,
        total: usize,
    },
    StepFinished {
        index: usize,
        total: usize,
        step: Box<StepReport>,
    },
}

/// The whole result: the six results, the image, per-step timings and the budget verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowReport {
    pub generator_mode: String,
    pub ok: bool,
    pub failed_step: Option<String>,
    pub error: Option<Value>,
    pub result: Value,
    pub steps: Vec<StepReport>,
    pub total_ms: f64,
    pub budget_s: f64,
    /// The time taken against the budget, whether or not the flow passed.
    pub within_budget: bool,
}

/// The number of steps a flow with `sections` sections takes (for progress bars).
pub fn step_count(sections: usize) -> usize {
    6 + sections.max(1)
}

struct Runner<'a, F: FnMut(FlowEvent)> {
    client: &'a GatewayClient,
    mock: bool,
    steps: Vec<StepReport>,
    on_event: F,
    total: usize,
}

impl<F: FnMut(FlowEvent)> Runner<'_, F> {
    async fn llm(&mut self, name: &str, role: &str, task: &str, input: Value) -> Result<Value, ()> {
        let index = self.steps.len();
        (self.on_event)(FlowEvent::StepStarted {
            index,
            name: name.into(),
            total: self.total,
        });
        let mut req = LlmRequest::json(role, task, input);
        if self.mock {
            req.options = json!({"mock": true});
        }
        let started = Instant::now();
        let result = self.client.llm_generate(&req).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (step, value) = match result {
            Ok(resp) => {
                let (mut step, value) = llm_step(name, role, task, ms, &resp);
                let refused = self.refuse_mock(&mut step, &resp.meta);
                (step, value.filter(|_| !refused))
            }
            Err(e) => (failed_step(name, role, task, ms, &e), None),
        };
        self.finish(index, step);
        value.ok_or(())
    }

    /// A live check proves the live providers answer: an answer from the mock (a Desk
    /// in mock mode, or a mock provider routed to) fails its step, whatever its shape.
    fn refuse_mock(&self, step: &mut StepReport, meta: &Value) -> bool {
        let mode = meta.get("generator_mode").and_then(Value::as_str);
        if self.mock || step.status == StepStatus::Failed || mode == Some("live") {
            return false;
        }
        step.status = StepStatus::Failed;
        step.error = Some(json!({
            "code": "NOT_LIVE",
            "message": format!(
                "answered by the mock (provider {:?}, meta.generator_mode {}): a live check needs the Desk in live mode (generator_mode = \"live\") and a live provider for {}/{}",
                step.provider.as_deref().unwrap_or("?"),
                mode.map_or_else(|| "absent".to_string(), |m| format!("{m:?}")),
                step.role,
                step.task,
            ),
        }));
        true
    }

    fn finish(&mut self, index: usize, step: StepReport) {
        (self.on_event)(FlowEvent::StepFinished {
            index,
            total: self.total,
            step: Box::new(step.clone()),
        });
        self.steps.push(step);
    }
}

fn llm_step(
    name: &str,
    role: &str,
    task: &str,
    ms: f64,
    resp: &LlmResponse,
) -> (StepReport, Option<Value>) {
    let parsed = resp.output.parsed.clone();
    let violations: Vec<String> = contracts::contract_for(role, task)
        .map(|c| {
            c.violations(&parsed)
                .iter()
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    let ok = parsed.is_object() && violations.is_empty();
    let step = StepReport {
        name: name.into(),
        role: role.into(),
        task: task.into(),
        status: StepStatus::of(ok),
        provider: Some(resp.provider.clone()),
        model: Some(resp.model.clone()),
        ms,
        gateway_ms: resp.meta.get("latency_ms").and_then(Value::as_f64),
        provider_ms: resp.meta.get("provider_latency_ms").and_then(Value::as_f64),
        tokens: Some(resp.usage.total_tokens),
        error: (!ok).then(|| {
            json!({"code": "LLM_SCHEMA_MISMATCH", "message": "the answer does not match the role's contract", "violations": violations})
        }),
        violations,
    };
    (step, ok.then_some(parsed))
}

fn failed_step(name: &str, role: &str, task: &str, ms: f64, e: &ClientError) -> StepReport {
    let (provider, model) = match e {
        ClientError::Api {
            provider, model, ..
        } => (provider.clone(), model.clone()),
        _ => (None, None),
    };
    StepReport {
        name: name.into(),
        role: role.into(),
        task: task.into(),
        status: StepStatus::Failed,
        provider,
        model,
        ms,
        gateway_ms: None,
        provider_ms: None,
        tokens: None,
        violations: vec![],
        error: Some(json!({"code": e.code(), "message": e.to_string()})),
    }
}

/// Run the flow. `on_event` sees every step start and finish. A failed step stops the
/// flow; the report names it and carries its error.
pub async fn run(
    client: &GatewayClient,
    input: &FlowInput,
    mock: bool,
    on_event: impl FnMut(FlowEvent),
) -> FlowReport {
    let started = Instant::now();
    let mut r = Runner {
        client,
        mock,
        steps: Vec::new(),
        on_event,
        total: step_count(3),
    };
    let mut result = json!({});
    let outcome = run_steps(&mut r, input, &mut result).await;
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let budget_s = if mock { MOCK_BUDGET_S } else { LIVE_BUDGET_S };
    let failed = r.steps.iter().find(|s| s.status == StepStatus::Failed);
    FlowReport {
        generator_mode: if mock { "mock" } else { "live" }.into(),
        ok: outcome.is_ok(),
        failed_step: failed.map(|s| s.name.clone()),
        error: failed.and_then(|s| s.error.clone()),
        result,
        total_ms,
        budget_s,
        within_budget: total_ms <= budget_s * 1000.0,
        steps: r.steps,
    }
}

async fn run_steps<F: FnMut(FlowEvent)>(
    r: &mut Runner<'_, F>,
    input: &FlowInput,
    result: &mut Value,
) -> Result<(), ()> {
    let brand = &input.brand;
    let product = &input.product;

    let brand_summary = r
        .llm(
            "brand_summary",
            "brand",
            "brand_summary",
            json!({"brand": brand}),
        )
        .await?;
    result["brand_summary"] = brand_summary.clone();

    let brief = r
        .llm(
            "brief",
            "brief",
            "marketing_brief",
            json!({"brand": brand, "brand_summary": brand_summary, "product": product}),
        )
        .await?;
    result["brief"] = brief.clone();

    let plan = r
        .llm(
            "sections",
            "strategist",
            "content_plan",
            json!({"brief": brief, "brand": brand_summary, "product": product, "content_type": "product_detail"}),
        )
        .await?;
    let sections: Vec<Value> = plan["sections"].as_array().cloned().unwrap_or_default();
    result["sections"] = Value::Array(sections.clone());
    r.total = step_count(sections.len());

    let mut copy = Vec::new();
    for section in &sections {
        let id = section["id"].as_str().unwrap_or("section").to_string();
        let text = r
            .llm(
                &format!("copy:{id}"),
                "copywriter",
                "product_detail",
                json!({"brief": brief, "brand": brand_summary, "product": product, "sections": sections, "section_to_write": section}),
            )
            .await?;
        copy.push(json!({"section_id": id, "copy": text}));
    }
    result["copy"] = Value::Array(copy.clone());

    let hero = sections.first().cloned().unwrap_or(Value::Null);
    let image_prompt = r
        .llm(
            "image_prompt",
            "vision",
            "image_prompt",
            json!({"brief": brief, "product": product, "section": hero, "copy": copy.first().map(|c| c["copy"].clone()), "aspect_ratio": input.image.aspect_ratio}),
        )
        .await?;

    let image = image_step(r, input, &image_prompt).await?;
    result["image"] = image;

    let review = r
        .llm(
            "review",
            "reviewer",
            "style_check",
            json!({"brand": brand_summary, "copy": copy}),
        )
        .await?;
    result["review"] = review;
    Ok(())
}

async fn image_step<F: FnMut(FlowEvent)>(
    r: &mut Runner<'_, F>,
    input: &FlowInput,
    prompt: &Value,
) -> Result<Value, ()> {
    let index = r.steps.len();
    (r.on_event)(FlowEvent::StepStarted {
        index,
        name: "image".into(),
        total: r.total,
    });
    let prompt_text = prompt["prompt"].as_str().unwrap_or_default().to_string();
    let mut options = json!({"aspect_ratio": input.image.aspect_ratio});
    if r.mock {
        options["mock"] = json!(true);
    }
    let req = ImageRequest {
        kind: input.image.kind.clone(),
        prompt: prompt_text.clone(),
        negative_prompt: prompt["negative_prompt"].as_str().map(str::to_string),
        options,
    };
    let started = Instant::now();
    let outcome = async {
        let resp = r.client.image_generate(&req).await?;
        let image = resp
            .images
            .first()
            .cloned()
            .ok_or_else(|| ClientError::Transport("the media answer has no image".into()))?;
        let (mime, bytes) = r.client.download(&image.url).await?;
        Ok::<_, ClientError>((resp, image, mime, bytes))
    }
    .await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok((resp, image, mime, bytes)) => {
            let size = png_size(&bytes);
            let mut violations = Vec::new();
            if mime != "image/png" || size.is_none() {
                violations.push(format!(
                    "the image file is not a PNG (Content-Type {mime:?})"
                ));
            } else if size != Some((image.width, image.height)) {
                violations.push(format!(
                    "the PNG is {:?} but the answer says {}x{}",
                    size, image.width, image.height
                ));
            }
            let ok = violations.is_empty();
            let mut step = StepReport {
                name: "image".into(),
                role: "vision".into(),
                task: input.image.kind.clone(),
                status: StepStatus::of(ok),
                provider: Some(resp.provider.clone()),
                model: Some(resp.model.clone()),
                ms,
                gateway_ms: resp.meta.get("latency_ms").and_then(Value::as_f64),
                provider_ms: resp.meta.get("provider_latency_ms").and_then(Value::as_f64),
                tokens: None,
                error: (!ok)
                    .then(|| json!({"code": "IMAGE_INVALID", "message": violations.join("; ")})),
                violations,
            };
            let ok = ok && !r.refuse_mock(&mut step, &resp.meta);
            r.finish(index, step);
            ok.then(|| {
                json!({
                    "image_id": image.id,
                    "url": r.client.absolute(&image.url),
                    "prompt_used": prompt_text,
                    "negative_prompt": req.negative_prompt,
                    "width": image.width,
                    "height": image.height,
                    "seed": image.seed,
                    "bytes": bytes.len(),
                })
            })
            .ok_or(())
        }
        Err(e) => {
            let step = failed_step("image", "vision", &input.image.kind, ms, &e);
            r.finish(index, step);
            Err(())
        }
    }
}

pub use crate::media::png_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_input_is_the_teams_protein_shake() {
        let s = FlowInput::sample();
        assert_eq!(s.brand["name"], "프로틴플러스");
        assert_eq!(s.product["name"], "프로틴플러스 초코맛");
        assert_eq!(s.image.aspect_ratio, "16:9");
    }

    #[test]
    fn png_size_reads_ihdr() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&360u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((640, 360)));
        assert_eq!(png_size(b"GIF89a......................"), None);
    }
}
