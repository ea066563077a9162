//! The mock provider: no network, answers at once, deterministic for the same
//! request, and in the same shape as a live answer. The content is built from the
//! request's input (product, brand, features, target), so a prompt bug that drops
//! the input shows up in mock mode too.

use crate::config::LlmProviderConfig;
use crate::contracts::korean::particle_for;
use crate::contracts::korean::Particle;
use crate::contracts::korean::{
    with,
    Particle::{And, Copula, Object, Subject, Topic, Toward},
};
use crate::contracts::shape::{Leaf, Shape};
use crate::llm::provider::{
    HealthReport, LlmCall, LlmProvider, LlmReply, ModelEntry, ModelInfo, ProviderError,
    ReplyStream, StreamEvent, Usage,
};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub struct MockProvider {
    name: String,
    default_model: Option<String>,
}

impl MockProvider {
    pub fn build(name: &str, cfg: &LlmProviderConfig) -> anyhow::Result<Arc<dyn LlmProvider>> {
        Ok(Arc::new(Self::new(name, cfg.default_model.clone())))
    }

    pub fn new(name: &str, default_model: Option<String>) -> Self {
        Self {
            name: name.to_string(),
            default_model,
        }
    }

    fn reply(&self, call: &LlmCall) -> LlmReply {
        let content = if call.json {
            serde_json::to_string_pretty(&mock_json(call)).unwrap_or_default()
        } else {
            mock_text(call)
        };
        let prompt_chars: usize = call
            .messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum();
        let usage = Usage::new(
            estimate_tokens(prompt_chars),
            estimate_tokens(content.chars().count()),
        );
        LlmReply {
            model: call.model.clone(),
            content,
            usage,
            model_info: ModelInfo::default(),
            done_reason: Some("stop".into()),
            tool_calls: Vec::new(),
        }
    }
}

/// About one token per three characters: between English (~4) and Korean (~1.5).
fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(3).max(1)
}

#[async_trait]
impl LlmProvider for MockProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &str {
        "mock"
    }
    fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }
    fn is_mock(&self) -> bool {
        true
    }

    async fn chat(&self, call: &LlmCall) -> Result<LlmReply, ProviderError> {
        Ok(self.reply(call))
    }

    async fn chat_stream(&self, call: &LlmCall) -> Result<ReplyStream, ProviderError> {
        let reply = self.reply(call);
        // Word-sized pieces, like a model streams; joined they are exactly the content.
        let mut pieces: Vec<String> = Vec::new();
        let mut cur = String::new();
        for ch in reply.content.chars() {
            cur.push(ch);
            if ch == ' ' || ch == '\n' {
                pieces.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            pieces.push(cur);
        }
        let events: Vec<Result<StreamEvent, ProviderError>> = pieces
            .into_iter()
            .map(|p| Ok(StreamEvent::Delta(p)))
            .chain(std::iter::once(Ok(StreamEvent::Done(reply))))
            .collect();
        Ok(futures::stream::iter(events).boxed())
    }

    async fn list_models(&self) -> Result<Vec<ModelEntry>, ProviderError> {
        Ok(self
            .default_model
            .iter()
            .map(|m| ModelEntry {
                name: m.clone(),
                size_bytes: None,
                loaded: true,
                family: None,
                parameter_size: None,
                quantization: None,
                modified_at: None,
                size_vram: None,
                instances: Vec::new(),
            })
            .collect())
    }

    async fn health(&self) -> HealthReport {
        HealthReport {
            reachable: true,
            latency_ms: 0.0,
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            error: None,
        }
    }
}

/// What the mock reads from the input, wherever the caller nested it
/// (`payload.product_name`, `input.payload.product.name`, `input.brand.name`, ...).
struct Facts {
    product: String,
    brand: String,
    category: String,
    target: String,
    features: Vec<String>,
    platform: String,
    text: String,
    seed: u64,
}

impl Facts {
    fn from(call: &LlmCall) -> Self {
        let input = &call.context.input;
        let prompt = find_str(input, &["prompt"]);
        let product = find_str(
            input,
            &["product_name", "product", "product_title", "title"],
        )
        .or_else(|| prompt.clone())
        .unwrap_or_else(|| "신제품".into());
        let brand = find_str(input, &["brand_name", "brand"])
            .or_else(|| find_in(input, "brand", &["name"]))
            .unwrap_or_else(|| "Sparklio".into());
        let features = find_list(input, &["features", "key_features", "benefits"])
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| vec![format!("{product}만의 차별화된 품질")]);
        let digest = Sha256::digest(
            format!(
                "{}|{}|{}|{}|{}",
                call.context.role, call.context.task, call.context.mode, call.model, input
            )
            .as_bytes(),
        );
        let seed = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        Self {
            category: find_str(input, &["category", "industry"]).unwrap_or_else(|| "제품".into()),
            target: find_str(input, &["target_audience", "target", "audience"])
                .unwrap_or_else(|| "20–30대 직장인".into()),
            platform: find_str(input, &["platform", "channel"])
                .unwrap_or_else(|| "instagram".into()),
            text: find_str(input, &["text", "content", "copy", "body"])
                .or(prompt)
                .unwrap_or_else(|| {
                    if product.starts_with(&brand) {
                        format!("{product} 소개")
                    } else {
                        format!("{brand} {product} 소개")
                    }
                }),
            product,
            brand,
            features,
            seed,
        }
    }

    /// A deterministic pick among variants.
    fn pick<'a>(&self, salt: u64, options: &[&'a str]) -> &'a str {
        options[((self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % options.len() as u64)
            as usize]
    }

    /// A deterministic number in `lo..=hi`.
    fn number(&self, salt: u64, lo: u64, hi: u64) -> u64 {
        lo + (self.seed.rotate_left(salt as u32 % 64) % (hi - lo + 1))
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Depth-first search for the first key in `keys` holding text.
fn find_str(v: &Value, keys: &[&str]) -> Option<String> {
    for key in keys {
        // An object such as `product: {name: ...}` stands for its name.
        let found =
            find_key(v, key).and_then(|x| as_text(x).or_else(|| x.get("name").and_then(as_text)));
        if let Some(found) = found {
            return Some(found);
        }
    }
    None
}

/// `parent.child` text, e.g. `brand.name`.
fn find_in(v: &Value, parent: &str, keys: &[&str]) -> Option<String> {
    find_key(v, parent).and_then(|p| find_str(p, keys))
}

fn find_list(v: &Value, keys: &[&str]) -> Option<Vec<String>> {
    keys.iter().find_map(|k| match find_key(v, k)? {
        Value::Array(items) => Some(items.iter().filter_map(as_text).collect()),
        Value::String(s) => Some(
            s.split([',', '\n'])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    })
}

fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(map) => {
            if let Some(found) = map.get(key).filter(|x| !x.is_null()) {
                if as_text(found).is_some() || found.is_array() || found.is_object() {
                    return Some(found);
                }
            }
            map.values().find_map(|child| find_key(child, key))
        }
        _ => None,
    }
}

/// The parsed answer a model would give for this role/task, in the shape the
/// Sparklio agents read.
pub fn mock_json(call: &LlmCall) -> Value {
    let f = Facts::from(call);
    // A front's structured output (Ollama's `format`, OpenAI's `json_schema`): the
    // answer a model would give follows it, as the client will parse it.
    if let Some(schema) = call
        .schema
        .as_ref()
        .filter(|s| s.is_object() && crate::contracts::within_bounds(s).is_ok())
    {
        return from_schema(schema, &f, "", 0, 0);
    }
    let written = handwritten_json(call, &f);
    // The request's contract (resolved by the gateway), else the built-in one.
    let builtin = || crate::contracts::contract_for(&call.context.role, &call.context.task);
    let Some(contract) = call.context.contract.as_deref().or_else(builtin) else {
        return written.unwrap_or_else(|| generic_json(call, &f));
    };
    let Some(written) = written else {
        return match &contract.shape {
            Some(shape) => fill(shape, &f, "", 0),
            None => from_schema(&contract.schema, &f, "", 0, 0),
        };
    };
    // The contract decides the shape; hand-written copy is kept where it fits it.
    let generated = match &contract.shape {
        Some(shape) => fill(shape, &f, "", 0),
        None if contract.violations(&written).is_empty() => return written,
        None => from_schema(&contract.schema, &f, "", 0, 0),
    };
    let mut merged = generated.clone();
    if let (Value::Object(m), Value::Object(w)) = (&mut merged, written) {
        for (k, v) in w {
            m.insert(k, v);
        }
    }
    if contract.violations(&merged).is_empty() {
        merged
    } else {
        generated
    }
}

/// The salt of a value's `i`th child: distinct per position, wrapping (a deep schema
/// would overflow a plain multiplication).
fn child_salt(salt: u64, i: u64) -> u64 {
    salt.wrapping_mul(31).wrapping_add(i).wrapping_add(1)
}

/// A value a JSON Schema accepts, with copy about the input's product: what a model
/// following `options.output_schema` would answer. Covers what answer schemas use
/// (types, properties, items, enum/const, lengths and ranges, common formats).
fn from_schema(schema: &Value, f: &Facts, field: &str, salt: u64, depth: u32) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(options) = schema["enum"].as_array().filter(|e| !e.is_empty()) {
        return options[(salt as usize) % options.len()].clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema[key].as_array().and_then(|a| a.first()) {
            return from_schema(first, f, field, salt, depth + 1);
        }
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema["properties"].is_object() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    // A whole number in [minimum, maximum] (default 1–10), whatever the bounds.
    let in_range = || {
        let lo = schema["minimum"].as_f64().unwrap_or(1.0);
        let hi = schema["maximum"].as_f64().unwrap_or(lo.max(10.0));
        let start = lo.ceil();
        if !start.is_finite() || start > hi {
            return lo;
        }
        let span = (hi - start).min(1000.0).floor() as u64;
        start + f.number(salt, 0, span) as f64
    };
    match kind {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, (k, s))| {
                    (
                        k.clone(),
                        from_schema(s, f, k, child_salt(salt, i as u64), depth + 1),
                    )
                })
                .collect(),
        ),
        "array" => {
            let min = schema["minItems"].as_u64().unwrap_or(1).max(1);
            let max = schema["maxItems"].as_u64().unwrap_or(u64::MAX);
            // Two items read like a list near the top; deeper, the least the schema
            // allows, or nested lists would double at every level. `min` itself is
            // bounded by the request check (contracts::MAX_LEAST_ANSWER).
            let n = if depth < 2 { min.max(2.min(max)) } else { min };
            match schema.get("items") {
                Some(items) if items.is_object() => (0..n)
                    .map(|i| from_schema(items, f, field, child_salt(salt, i), depth + 1))
                    .collect(),
                _ => list_for(field, f)
                    .into_iter()
                    .cycle()
                    .take(n as usize)
                    .map(Value::String)
                    .collect(),
            }
        }
        "integer" => json!(in_range() as i64),
        "number" => json!(in_range()),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => {
            let text = match schema["format"].as_str() {
                Some("date") => "2026-12-01".to_string(),
                Some("date-time") => "2026-12-01T09:00:00Z".to_string(),
                Some("uri" | "url") => "https://sparklio.ai/products".to_string(),
                Some("email") => "hello@sparklio.ai".to_string(),
                _ => text_for(field, f, salt),
            };
            let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
            let max = schema["maxLength"]
                .as_u64()
                .map_or(usize::MAX, |m| m as usize);
            let mut text: String = text.chars().take(max).collect();
            let mut chars = text.chars().count();
            let filler = format!(" {}", f.product);
            let step = filler.chars().count();
            while chars < min {
                text.push_str(&filler);
                chars += step;
            }
            Value::String(text.chars().take(max).collect())
        }
    }
}

/// An answer of this shape about the input's product, field by field.
fn fill(shape: &Shape, f: &Facts, field: &str, salt: u64) -> Value {
    match shape {
        Shape::Object(fields) => Value::Object(
            fields
                .iter()
                .enumerate()
                .map(|(i, (k, s))| (k.clone(), fill(s, f, k, child_salt(salt, i as u64))))
                .collect(),
        ),
        Shape::Leaf { kind, .. } => match kind {
            Leaf::Score => json!(f.number(salt, 6, 9)),
            Leaf::Length => json!(f.number(salt, 80, 400)),
            Leaf::List => json!(list_for(field, f)),
            Leaf::Text | Leaf::Any => json!(text_for(field, f, salt)),
        },
    }
}

fn list_for(field: &str, f: &Facts) -> Vec<String> {
    let (p, b, t) = (&f.product, &f.brand, &f.target);
    let first = f.features.first().cloned().unwrap_or_default();
    match field {
        "hashtags" => vec![
            format!("#{}", p.replace(' ', "")),
            format!("#{}", b.replace(' ', "")),
            "#신제품".into(),
            "#데일리".into(),
        ],
        "features" => f.features.clone(),
        "values" => vec!["신뢰".into(), "실용성".into(), "꾸준함".into()],
        "strengths" => vec![
            format!("{p}의 핵심 특징({first})이 분명합니다"),
            format!("{}에게 맞는 어조", t),
        ],
        "weaknesses" => vec!["구매를 이끄는 문구가 약합니다".into()],
        "improvements" => vec![format!("{}의 구체적인 사용 장면을 추가하세요", t)],
        "errors" => vec![format!("띄어쓰기: '{}' → '{p}'", p.replace(' ', ""))],
        "corrections" => vec![format!("{}  -> {}", p.replace(' ', ""), p)],
        "short_term" => vec![format!("{} 체험단 운영", p), format!("{} 대상 SNS 광고", t)],
        _ => vec![
            format!("{p}: {first}"),
            format!("{}에게 맞춘 {}", t, f.category),
        ],
    }
}

fn text_for(field: &str, f: &Facts, salt: u64) -> String {
    let (p, b, t) = (&f.product, &f.brand, &f.target);
    let first = f.features.first().cloned().unwrap_or_default();
    let features = f.features.join(", ");
    match field {
        "headline" | "version_a" | "meta_title" | "tagline" => format!(
            "{p}, {}",
            f.pick(
                salt,
                &[
                    "하루의 시작을 바꾸다",
                    "매일이 가벼워지는 선택",
                    "이제 더 쉽게"
                ]
            )
        ),
        "version_b" => format!("{first}까지, {p} 하나로"),
        "version_c" => format!("아직도 {p} 없이 하루를 보내시나요?"),
        "cta" => f
            .pick(salt, &["지금 구매하기", "첫 구매 할인 받기", "자세히 보기"])
            .into(),
        "post" | "message" | "body" => format!(
            "{} {features}. {}의 바쁜 일상에 꼭 맞춘 {b}의 제품입니다.",
            with(p, Topic),
            t
        ),
        "campaign_name" => format!("{p} 런칭 캠페인"),
        "objective" => format!("{t} 대상 {p} 인지도 확대"),
        "duration" => format!("{}주", f.number(salt, 2, 8)),
        "channels" => "인스타그램, 네이버 블로그, 유튜브".into(),
        "source_language" => "한국어".into(),
        "target_language" => "영어".into(),
        "target_tone" | "tone" => f.pick(salt, &["친근한", "신뢰감 있는", "세련된"]).into(),
        "mission" => format!("{}의 하루를 {} 더 가볍게", t, with(b, Toward)),
        "vision" => format!("{} 분야에서 가장 먼저 떠오르는 브랜드", f.category),
        "target_audience" | "age" => t.clone(),
        "meta_description" => format!("{} 위한 {p}. {first}.", with(t, Object)),
        k if k.ends_with("_content") || k == "corrected_version" => {
            format!(
                "{} {features}. {b}{} 만든 {}입니다.",
                with(p, Topic),
                particle_for(b, Particle::Subject),
                f.category
            )
        }
        k if k.contains("summary") => format!("{}: {first}", brand_product(f)),
        _ => format!("{} — {}: {first}", brand_product(f), gloss(field)),
    }
}

/// A field name in Korean, for generic copy ("key_changes" → "주요 변경 사항").
fn gloss(field: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("key", "핵심"),
        ("changes", "변경 사항"),
        ("improvements", "개선점"),
        ("comparison", "비교"),
        ("additions", "추가 내용"),
        ("notes", "메모"),
        ("placement", "배치"),
        ("keyword", "키워드"),
        ("persuasion", "설득"),
        ("elements", "요소"),
        ("expected", "예상"),
        ("lift", "개선율"),
        ("explanation", "설명"),
        ("modifications", "수정 내역"),
        ("examples", "예시"),
        ("feedback", "피드백"),
        ("suggestions", "제안"),
        ("match", "적합도"),
        ("alignment", "정렬도"),
        ("deviations", "이탈 사항"),
        ("recommendations", "권장 사항"),
        ("style", "스타일"),
        ("issues", "이슈"),
        ("effectiveness", "효과"),
        ("differentiation", "차별성"),
        ("predicted", "예상"),
        ("performance", "성과"),
        ("optimization", "최적화"),
        ("tips", "팁"),
        ("unique", "고유"),
        ("value", "가치"),
        ("personality", "성격"),
        ("archetype", "원형"),
        ("characteristics", "특성"),
        ("long", "장기"),
        ("term", "전략"),
        ("kpi", "KPI"),
        ("strategy", "전략"),
        ("message", "메시지"),
        ("creative", "크리에이티브"),
        ("concept", "컨셉"),
        ("timeline", "일정"),
        ("budget", "예산"),
        ("allocation", "배분"),
        ("content", "콘텐츠"),
        ("plan", "계획"),
        ("results", "성과"),
        ("tracking", "측정"),
        ("method", "방법"),
        ("error", "오류"),
        ("types", "유형"),
        ("cta", "CTA"),
        ("made", "내역"),
        ("tone", "톤"),
        ("gender", "성별"),
        ("income", "소득"),
        ("location", "지역"),
        ("interests", "관심사"),
        ("values", "가치관"),
        ("lifestyle", "라이프스타일"),
        ("pain", "불편"),
        ("points", "사항"),
        ("media", "미디어"),
        ("consumption", "소비"),
        ("purchase", "구매"),
        ("behavior", "행동"),
        ("brand", "브랜드"),
        ("loyalty", "충성도"),
        ("name", "이름"),
        ("description", "설명"),
        ("needs", "니즈"),
        ("market", "시장"),
        ("size", "규모"),
        ("trends", "트렌드"),
        ("opportunities", "기회"),
        ("competitors", "경쟁사"),
        ("their", "경쟁사"),
        ("positioning", "포지셔닝"),
        ("gaps", "빈틈"),
        ("target", "목표"),
        ("position", "위치"),
        ("benefits", "혜택"),
        ("pillar", "기둥"),
        ("blog", "블로그"),
        ("social", "소셜"),
        ("email", "이메일"),
        ("frequency", "빈도"),
        ("themes", "주제"),
        ("formats", "형식"),
    ];
    let words: Vec<String> = field
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            WORDS
                .iter()
                .find(|(en, _)| *en == w)
                .map_or_else(|| w.to_string(), |(_, ko)| (*ko).to_string())
        })
        .collect();
    words.join(" ")
}

/// The hand-written answers for the pairs whose copy matters beyond its shape (the
/// flow's steps), and a generic answer for a task nobody described.
fn handwritten_json(call: &LlmCall, f: &Facts) -> Option<Value> {
    let (p, b, t) = (&f.product, &f.brand, &f.target);
    let first = f.features.first().cloned().unwrap_or_default();
    Some(match call.context.task.as_str() {
        "brand_summary" => json!({
            "brand_summary": {
                "mission": format!("{} {} 위한 {} 만드는 브랜드입니다.", with(b, Topic), with(t, Object), with(&f.category, Object)),
                "core_values": ["신뢰", "건강한 일상", "간편함"],
                "differentiators": [format!("{p}: {first}"), format!("{t}에 맞춘 제품 설계")],
            },
            "brand_voice": {
                "tone": f.pick(1, &["친근하고 활기찬", "신뢰감 있고 전문적인", "간결하고 세련된"]),
                "keywords": [b, f.category, p],
                "avoid": ["과장된 효능 표현", "근거 없는 최상급 표현"],
            },
        }),
        "brand_kit" => json!({
            "brand_identity": {
                "mission": format!("{t}의 하루를 {} 더 가볍게", with(b, Toward)),
                "vision": format!("{} 분야에서 가장 먼저 떠오르는 브랜드", f.category),
                "values": ["정직함", "실용성", "꾸준함"],
            },
            "positioning": format!("{} 위한 실용적인 {} 브랜드", with(t, Object), f.category),
            "tone_of_voice": f.pick(2, &["친근함", "전문성", "위트"]),
            "key_messages": [format!("{} 함께하는 건강한 습관", with(b, And)), format!("{p}, 매일 쉽게")],
            "color_palette": [f.pick(3, &["#1E3A8A", "#0F766E", "#B91C1C"]), "#F5F5F4", "#111827"],
        }),
        "marketing_brief" => json!({
            "target": t,
            "positioning": format!("{} 위한 간편한 {p}", with(t, Object)),
            "key_messages": [
                format!("{p}: {first}"),
                format!("{} 보증하는 품질", with(b, Subject)),
                "바쁜 일상에도 간편하게".to_string(),
            ],
            "tone": f.pick(4, &["활기찬", "신뢰감 있는", "친근한"]),
            "channels": ["instagram", "naver_blog", "smartstore"],
        }),
        "content_plan" => {
            let mut sections = vec![
                json!({"id": "hero", "type": "hero", "title": format!("{p}, 지금 만나보세요")}),
            ];
            sections.push(
                json!({"id": "features", "type": "features", "title": format!("{p}의 핵심 특징")}),
            );
            sections.push(json!({"id": "usage", "type": "how_to", "title": "이렇게 즐기세요"}));
            sections.push(
                json!({"id": "reviews", "type": "social_proof", "title": format!("{t}의 선택")}),
            );
            sections.push(json!({"id": "cta", "type": "cta", "title": "지금 구매하기"}));
            json!({"sections": sections, "total_sections": 5, "flow": "hero → features → usage → reviews → cta"})
        }
        "product_detail" => json!({
            "headline": format!("{p}, {}", f.pick(5, &["하루의 시작을 바꾸다", "매일이 가벼워지는 선택", "이제 더 쉽게"])),
            "subheadline": format!("{} 위한 {b}의 {}", with(t, Object), f.category),
            "body": format!("{} {}. {t}의 바쁜 일상에 꼭 맞춘 {b}의 제품입니다.", with(p, Topic), f.features.join(", ")),
            "features": f.features,
            "bullets": f.features.iter().take(3).map(|x| format!("✔ {x}")).collect::<Vec<_>>(),
            "cta": f.pick(6, &["지금 구매하기", "첫 구매 할인 받기", "자세히 보기"]),
        }),
        "sns" | "sns_caption" => json!({
            "platform": f.platform,
            "caption": format!("{p} 출시! {first} ✨ {}라면 꼭 확인하세요.", with(t, Copula)),
            "hashtags": [format!("#{}", p.replace(' ', "")), format!("#{}", b.replace(' ', "")), "#신제품", "#데일리"],
            "call_to_action": "프로필 링크에서 만나보세요",
        }),
        "campaign" => json!({
            "campaign_name": format!("{p} 런칭 캠페인"),
            "objective": format!("{t} 대상 {p} 인지도 확대"),
            "duration": format!("{}주", f.number(7, 2, 8)),
            "budget_allocation": {"digital": 60, "offline": 15, "influencer": 25},
            "channels": ["instagram", "youtube", "naver"],
            "kpis": ["도달 100만", "전환율 2%"],
        }),
        "image_prompt" => json!({
            "prompt": format!("professional product photo of {p} by {b}, {}, studio lighting, clean background, high detail", f.pick(8, &["soft morning light", "vibrant colors", "minimal composition"])),
            "negative_prompt": "blurry, low quality, distorted text, watermark, extra objects",
            "style": f.pick(9, &["photorealistic", "editorial", "minimal"]),
            "aspect_ratio": find_str(&call.context.input, &["aspect_ratio"])
                .filter(|r| r.split(':').count() == 2 && r.split(':').all(|n| n.parse::<u32>().is_ok()))
                .unwrap_or_else(|| "1:1".to_string()),
        }),
        "style_check" | "consistency_check" => json!({
            "overall_score": f.number(10, 7, 9),
            "tone_match": true,
            "warnings": [{
                "type": "consistency",
                "location": "body",
                "issue": format!("{p} 표기가 한 곳에서 다르게 쓰였습니다"),
                "suggestion": format!("{b}의 톤({})을 본문 전체에 유지하세요", f.pick(11, &["친근함", "전문성"])),
            }],
            "compliance_check": {"health_claims": false, "risky_words": []},
        }),
        "content_review" | "review" => json!({
            "overall_score": f.number(12, 6, 9),
            "strengths": [format!("{p}의 핵심 특징({first})이 명확합니다"), "타깃에 맞는 어조".to_string()],
            "weaknesses": ["구매 유도 문구가 약합니다"],
            "improvements": [format!("{t}의 구체적인 사용 장면을 추가하세요")],
            "detailed_feedback": format!("{} 카피는 전반적으로 브랜드 톤과 일치합니다. CTA를 더 분명히 하면 좋겠습니다.", brand_product(f)),
        }),
        "seo_optimize" => json!({
            "optimized_content": format!("{p} | {b} — {} 위한 {}. {first}.", with(t, Object), f.category),
            "keywords": [p, b, f.category],
            "meta_description": format!("{} 위한 {p}. {first}.", with(t, Object)),
            "title": format!("{p} | {b}"),
            "slug": slug(p, f.seed),
        }),
        "proofread" => json!({
            "corrected_content": if f.text.trim().is_empty() { brand_product(f) } else { f.text.clone() },
            "corrections": [],
            "summary": "맞춤법과 띄어쓰기를 확인했습니다.",
        }),
        "heavy_reasoning" => json!({
            "analysis": format!("{p}의 시장 적합성을 {t} 관점에서 검토했습니다."),
            "steps": ["시장 규모 확인", "경쟁 제품 비교", "차별화 포인트 도출"],
            "conclusion": format!("{} 중심으로 포지셔닝하는 것이 유리합니다.", with(&first, Object)),
            "confidence": 0.7 + (f.number(14, 0, 20) as f64) / 100.0,
        }),
        "tagging" => json!({
            "tags": [p, b, f.category, t],
        }),
        "short_summary" => json!({
            "summary": format!("{}: {first}", brand_product(f)),
        }),
        _ => return None,
    })
}

/// The answer for a role/task nobody described and no request shaped.
fn generic_json(call: &LlmCall, f: &Facts) -> Value {
    let (p, t) = (&f.product, &f.target);
    json!({
        "role": call.context.role,
        "task": call.context.task,
        "result": format!("{}에 대한 {} 결과입니다.", brand_product(f), call.context.task),
        "summary": format!("{p} ({t})"),
        "status": "success",
    })
}

/// "루미 무선 이어폰" once, not "루미 루미 무선 이어폰", when the product's name already
/// starts with its brand.
fn brand_product(f: &Facts) -> String {
    if f.product.starts_with(&f.brand) {
        f.product.clone()
    } else {
        format!("{} {}", f.brand, f.product)
    }
}

fn slug(product: &str, seed: u64) -> String {
    let ascii: String = product
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .collect::<String>()
        .trim()
        .to_ascii_lowercase()
        .replace(' ', "-");
    if ascii.is_empty() {
        format!("product-{:x}", seed & 0xffff)
    } else {
        ascii
    }
}

/// Text-mode answer: a short paragraph built from the input.
fn mock_text(call: &LlmCall) -> String {
    let f = Facts::from(call);
    let lead = f.pick(
        15,
        &[
            "좋은 질문입니다.",
            "요청하신 내용입니다.",
            "정리해 드립니다.",
        ],
    );
    format!(
        "{lead} {}의 {} {} 위한 {}입니다. 핵심: {}. ({} / {})",
        f.brand,
        with(&f.product, Topic),
        with(&f.target, Object),
        f.category,
        f.features.join(", "),
        call.context.role,
        call.context.task
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::{CallContext, Sampling};

    fn call(task: &str, input: Value, json: bool) -> LlmCall {
        LlmCall {
            model: "m".into(),
            deadline: std::time::Instant::now(),
            messages: vec![],
            json,
            schema: None,
            tools: None,
            sampling: Sampling {
                temperature: Some(0.7),
                top_p: Some(0.9),
                max_tokens: Some(100),
                ..Sampling::default()
            },
            context: CallContext {
                role: "copywriter".into(),
                task: task.into(),
                mode: "json".into(),
                input,
                contract: None,
            },
        }
    }

    #[test]
    fn reflects_nested_input_and_is_deterministic() {
        let input = json!({"payload": {"product": {"name": "프로틴플러스 초코맛"}, "features": ["30g 단백질", "저당"]}});
        let a = mock_json(&call("product_detail", input.clone(), true));
        let b = mock_json(&call("product_detail", input, true));
        assert_eq!(a, b);
        assert!(a["headline"]
            .as_str()
            .unwrap()
            .contains("프로틴플러스 초코맛"));
        assert_eq!(a["features"], json!(["30g 단백질", "저당"]));
    }

    #[test]
    fn particles_fit_the_product_and_target() {
        for (product, target) in [("무선 이어폰", "20대 세대"), ("보온 텀블러", "직장인")]
        {
            let input = json!({"product_name": product, "target_audience": target});
            let all: String = [
                "product_detail",
                "brand_summary",
                "marketing_brief",
                "sns",
                "seo_optimize",
            ]
            .iter()
            .map(|t| mock_json(&call(t, input.clone(), true)).to_string())
            .chain(std::iter::once(mock_text(&call(
                "chat",
                input.clone(),
                false,
            ))))
            .collect();
            for wrong in [
                "이어폰는",
                "이어폰를",
                "세대을",
                "세대은",
                "텀블러은",
                "텀블러을",
                "직장인를",
                "직장인라면",
                "세대이라면",
                "은(는)",
                "을(를)",
            ] {
                assert!(!all.contains(wrong), "{wrong} in {all}");
            }
        }
    }

    #[test]
    fn unknown_task_is_generic() {
        let v = mock_json(&call("something_new", json!({"product_name": "X"}), true));
        assert_eq!(v["status"], "success");
        assert_eq!(v["task"], "something_new");
    }
}
