//! Answer contracts as the team's agents use them: their own `_output_structure` (the
//! Korean field descriptions they send), a request's `options.output_schema`, the
//! built-in contracts, `[llm.validation]`, and mock answers that follow the same
//! contract live answers are held to.

use serde_json::{json, Map, Value};
use sparklio_core::contracts::{self, Source};
use sparklio_testkit::ollama::{Behaviour, OllamaDouble};
use sparklio_testkit::TestApp;

const GENERATE: &str = "/api/v1/llm/generate";

/// The agents' `task_instructions`, verbatim from their repository.
fn agent_tasks() -> Value {
    serde_json::from_str(include_str!("../fixtures/agent_payloads.json")).unwrap()
}

fn product() -> Map<String, Value> {
    json!({
        "product_name": "루미 무선 이어폰",
        "category": "무선 이어폰",
        "features": ["노이즈 캔슬링", "30시간 배터리", "IPX4 방수"],
        "target_audience": "출퇴근하는 직장인",
        "brand": "루미",
    })
    .as_object()
    .unwrap()
    .clone()
}

/// The payload an agent sends: the product plus `_instructions` and `_output_structure`.
fn agent_payload(role: &str, task: &str) -> Value {
    let t = &agent_tasks()["agents"][role][task];
    let mut p = product();
    p.insert("_instructions".into(), t["instruction"].clone());
    p.insert("_output_structure".into(), t["structure"].clone());
    Value::Object(p)
}

async fn live(double: &OllamaDouble, extra: &str) -> TestApp {
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 5\n{extra}",
        double.base_url()
    );
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

/// Answers in the shape each agent asks for, where the Desk's old schemas disagreed.
fn agent_shaped_answers() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "copywriter",
            "sns",
            json!({"post": "출근길 소음은 끄고 음악만 켜세요. 루미 무선 이어폰과 함께하는 조용한 아침.",
                   "hashtags": ["#루미", "#무선이어폰", "#출근길"],
                   "cta": "지금 만나보기"}),
        ),
        (
            "strategist",
            "campaign",
            json!({
                "overview": {"campaign_name": "조용한 출근길", "objective": "직장인 인지도 확대", "duration": "6주"},
                "strategy": {"key_message": "소음 없는 아침", "creative_concept": "지하철 속 나만의 공간", "channels": "인스타그램, 유튜브"},
                "execution": {"timeline": "1-2주 티저, 3-6주 본 캠페인", "budget_allocation": "SNS 60%, 영상 40%", "content_plan": "릴스 주 3회"},
                "measurement": {"kpi": "도달 50만", "expected_results": "구매 전환 2%", "tracking_method": "UTM 링크"}
            }),
        ),
        (
            "optimizer",
            "seo_optimize",
            json!({"optimized_content": "노이즈 캔슬링 무선 이어폰, 루미로 출근길을 조용하게.",
                   "keyword_placement": "첫 문장에 '노이즈 캔슬링 무선 이어폰'",
                   "meta_title": "루미 무선 이어폰 | 노이즈 캔슬링",
                   "meta_description": "30시간 배터리와 IPX4 방수의 루미 무선 이어폰.",
                   "improvements": ["핵심 키워드를 제목에 배치"]}),
        ),
        (
            "editor",
            "proofread",
            json!({"corrected_content": "루미 무선 이어폰은 30시간 동안 재생됩니다.",
                   "corrections": ["30 시간 -> 30시간", "재생 됩니다 -> 재생됩니다"],
                   "error_types": {"띄어쓰기": 2},
                   "summary": "띄어쓰기 2건을 바로잡았습니다."}),
        ),
    ]
}

#[tokio::test]
async fn live_answers_in_the_agents_own_shape_pass_with_and_without_their_structure() {
    let double = OllamaDouble::start().await;
    let app = live(&double, "").await;
    for (role, task, answer) in agent_shaped_answers() {
        double.set(Behaviour::Content(answer.to_string()));
        // As the agents send it: with their `_output_structure`.
        let before = double.requests().len();
        let (status, body) = app
            .post_json(
                GENERATE,
                &json!({"role": role, "task": task, "payload": agent_payload(role, task)}),
            )
            .await;
        assert_eq!(status, 200, "{role}/{task}: {body}");
        assert_eq!(body["output"]["value"], answer, "{role}/{task}");
        assert_eq!(body["meta"]["contract"], "request_structure");
        assert_eq!(body["meta"]["schema_repaired"], false, "{role}/{task}");
        assert_eq!(double.requests().len(), before + 1, "no repair round");
        // The prompt shows the agent's instructions and asks for its fields; the raw
        // structure is not repeated as input.
        let prompt = double.requests().last().unwrap()["messages"][1]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let t = &agent_tasks()["agents"][role][task];
        assert!(
            prompt.contains(t["instruction"].as_str().unwrap()),
            "{prompt}"
        );
        for key in t["structure"].as_object().unwrap().keys() {
            assert!(prompt.contains(&format!("\"{key}\"")), "{key}: {prompt}");
        }
        assert!(!prompt.contains("_output_structure"), "{prompt}");

        // Without it, the built-in contract is the agent's structure too.
        let mut plain = product();
        plain.insert("prompt".into(), json!("써 주세요"));
        let (status, body) = app
            .post_json(
                GENERATE,
                &json!({"role": role, "task": task, "payload": plain}),
            )
            .await;
        assert_eq!(status, 200, "{role}/{task} built-in: {body}");
        assert_eq!(body["meta"]["contract"], "builtin");
        assert_eq!(body["output"]["value"], answer);
    }

    // The shape the Desk used to require for copywriter/sns is now the wrong one.
    double.set(Behaviour::Content(
        json!({"caption": "c", "hashtags": ["#a"], "call_to_action": "buy"}).to_string(),
    ));
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "copywriter", "task": "sns", "payload": agent_payload("copywriter", "sns")}),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "LLM_SCHEMA_MISMATCH");
    let violations = body["error"]["violations"].to_string();
    assert!(
        violations.contains("post") && violations.contains("cta"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_schema_wins_over_the_structure_and_the_builtin_contract() {
    let double = OllamaDouble::start().await;
    let app = live(&double, "[llm.validation]\ndefault = \"strict\"\n").await;
    let schema = json!({
        "type": "object",
        "required": ["slogan", "score"],
        "properties": {"slogan": {"type": "string", "maxLength": 20}, "score": {"type": "integer", "minimum": 1, "maximum": 5}}
    });
    let req = json!({"role": "copywriter", "task": "sns", "payload": agent_payload("copywriter", "sns"),
                     "options": {"output_schema": schema}});

    double.set(Behaviour::Content(
        json!({"slogan": "조용한 출근길", "score": 4}).to_string(),
    ));
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["contract"], "request_schema");
    assert_eq!(body["output"]["value"]["slogan"], "조용한 출근길");

    // The agent's own shape does not satisfy this request's schema.
    double.set(Behaviour::Content(agent_shaped_answers()[0].2.to_string()));
    let (status, body) = app.post_json(GENERATE, &req).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "LLM_SCHEMA_MISMATCH");
    assert!(body["error"]["violations"].to_string().contains("slogan"));

    // A schema that is not one is the caller's mistake, named as such.
    for bad in [
        json!({"type": 12}),
        json!("object"),
        json!({"minLength": -1}),
    ] {
        let (status, body) = app
            .post_json(
                GENERATE,
                &json!({"role": "copywriter", "task": "sns", "payload": {}, "options": {"output_schema": bad}}),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("options.output_schema"),
            "{body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn validation_policy_is_repair_strict_or_off_per_role_and_task() {
    let double = OllamaDouble::start().await;
    let app = live(
        &double,
        "[llm.validation]\ndefault = \"strict\"\nroles = { editor = \"off\", copywriter = \"off\" }\ntasks = { sns = \"repair\" }\n",
    )
    .await;
    let wrong = json!({"nothing": "useful"}).to_string();
    let ask = |role: &str, task: &str| json!({"role": role, "task": task, "payload": product()});

    // strict (the default here): one call, then the mismatch.
    double.set(Behaviour::Content(wrong.clone()));
    let before = double.requests().len();
    let (status, body) = app
        .post_json(GENERATE, &ask("reviewer", "content_review"))
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("strict"));
    assert_eq!(double.requests().len(), before + 1);

    // off for the role: the answer passes as it is.
    let (status, body) = app.post_json(GENERATE, &ask("editor", "proofread")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["value"], json!({"nothing": "useful"}));

    // The task's policy wins over its role's: sns repairs.
    let fixed = agent_shaped_answers()[0].2.to_string();
    double.set(Behaviour::Sequence(vec![wrong.clone(), fixed]));
    let before = double.requests().len();
    let (status, body) = app.post_json(GENERATE, &ask("copywriter", "sns")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["schema_repaired"], true);
    assert_eq!(double.requests().len(), before + 2);
    let repair = double.requests().last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(repair.contains("\"post\""), "{repair}");
    app.stop().await;
}

#[tokio::test]
async fn scores_and_lists_are_normalised_only_where_unambiguous() {
    let double = OllamaDouble::start().await;
    let app = live(&double, "").await;
    double.set(Behaviour::Content(
        json!({"overall_score": "8/10", "strengths": "명확한 메시지", "weaknesses": ["가격 언급 없음"],
               "improvements": ["가격대를 밝히세요"], "detailed_feedback": "출근길 장면이 잘 그려집니다."})
        .to_string(),
    ));
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "reviewer", "task": "content_review", "payload": product()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let value = &body["output"]["value"];
    assert_eq!(value["overall_score"], 8.0);
    assert_eq!(value["strengths"], json!(["명확한 메시지"]));
    assert_eq!(
        body["meta"]["normalised"],
        json!(["/overall_score", "/strengths"])
    );

    // A score out of 100 is not made up into one out of 10: the mismatch is reported.
    double.set(Behaviour::Content(
        json!({"overall_score": "80/100", "strengths": [], "weaknesses": [], "improvements": [], "detailed_feedback": "x"})
            .to_string(),
    ));
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "reviewer", "task": "content_review", "payload": product()}),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["violations"]
        .to_string()
        .contains("overall_score"));
    app.stop().await;
}

/// Every key of an agent structure (nested objects too) is in the answer.
fn assert_has_keys(structure: &Value, answer: &Value, at: &str) {
    for (k, v) in structure.as_object().unwrap() {
        let got = answer
            .get(k)
            .unwrap_or_else(|| panic!("{at}/{k} missing: {answer}"));
        assert!(!got.is_null(), "{at}/{k} is null");
        if v.is_object() {
            assert_has_keys(v, got, &format!("{at}/{k}"));
        }
    }
}

/// Korean copy about the product in the input, never a placeholder.
fn assert_realistic(answer: &Value, what: &str) {
    let text = texts(answer).join("\n");
    assert!(
        text.contains("루미"),
        "{what}: not about the product: {text}"
    );
    assert!(
        text.chars().any(|c| ('가'..='힣').contains(&c)),
        "{what}: not Korean: {text}"
    );
    for placeholder in [
        "string",
        "lorem",
        "TODO",
        "placeholder",
        "example",
        "double",
        "이어폰는",
        "이어폰가",
        "루미 루미",
    ] {
        assert!(!text.contains(placeholder), "{what}: {placeholder}: {text}");
    }
}

/// Every text in a value (keys left out: field names are the agents' own English).
fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(texts).collect(),
        Value::Object(m) => m.values().flat_map(texts).collect(),
        other => vec![other.to_string()],
    }
}

#[tokio::test]
async fn mock_answers_follow_the_contract_live_answers_are_held_to() {
    let app = TestApp::start_with("", &[("GENERATOR_MODE", "mock")], Default::default()).await;
    let agents = agent_tasks();
    let mut pairs = 0;
    for (role, tasks) in agents["agents"].as_object().unwrap() {
        for (task, t) in tasks.as_object().unwrap() {
            // With the agent's own structure.
            let payload = agent_payload(role, task);
            let (status, body) = app
                .post_json(
                    GENERATE,
                    &json!({"role": role, "task": task, "payload": payload}),
                )
                .await;
            assert_eq!(status, 200, "{role}/{task}: {body}");
            let value = &body["output"]["value"];
            assert_has_keys(&t["structure"], value, &format!("{role}/{task}"));
            let contract = contracts::resolve(role, task, None, &payload)
                .unwrap()
                .unwrap();
            assert_eq!(contract.source, Source::RequestStructure);
            assert_eq!(contract.violations(value), vec![], "{role}/{task}: {value}");
            assert_realistic(value, &format!("{role}/{task}"));

            // Without it: the built-in contract, same field names.
            let (status, body) = app
                .post_json(
                    GENERATE,
                    &json!({"role": role, "task": task, "payload": product()}),
                )
                .await;
            assert_eq!(status, 200, "{role}/{task}: {body}");
            let value = &body["output"]["value"];
            let builtin = contracts::contract_for(role, task).unwrap();
            assert_eq!(builtin.violations(value), vec![], "{role}/{task}: {value}");
            assert_has_keys(&t["structure"], value, &format!("{role}/{task} built-in"));
            assert_realistic(value, &format!("{role}/{task} built-in"));
            pairs += 1;
        }
    }
    assert_eq!(pairs, 25);

    // Every built-in contract, flow pairs included.
    for c in contracts::contracts() {
        let role = if c.role == "*" {
            "editor"
        } else {
            c.role.as_str()
        };
        let (status, body) = app
            .post_json(
                GENERATE,
                &json!({"role": role, "task": c.task, "payload": product()}),
            )
            .await;
        assert_eq!(status, 200, "{}/{}: {body}", c.role, c.task);
        assert_eq!(
            c.violations(&body["output"]["value"]),
            vec![],
            "{}/{}: {body}",
            c.role,
            c.task
        );
    }

    // A request's own JSON Schema: enums, ranges, lengths, nesting, formats.
    let schema = json!({
        "type": "object",
        "required": ["title", "tone", "rating", "tags", "launch", "specs"],
        "properties": {
            "title": {"type": "string", "minLength": 5, "maxLength": 30},
            "tone": {"enum": ["warm", "bold"]},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5},
            "launch": {"type": "string", "format": "date"},
            "specs": {"type": "object", "required": ["battery_hours"], "properties": {"battery_hours": {"type": "number", "minimum": 10, "maximum": 40}}},
            "optional_note": {"type": ["string", "null"]}
        }
    });
    let payload = Value::Object(product());
    let (status, body) = app
        .post_json(
            GENERATE,
            &json!({"role": "copywriter", "task": "sns", "payload": payload, "options": {"output_schema": schema}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["contract"], "request_schema");
    let contract = contracts::resolve("copywriter", "sns", Some(&schema), &payload)
        .unwrap()
        .unwrap();
    let value = &body["output"]["value"];
    assert_eq!(contract.violations(value), vec![], "{value}");
    assert!(value["tags"].as_array().unwrap().len() >= 3, "{value}");
    assert_realistic(&value["title"], "request schema title");
    app.stop().await;
}

/// A schema is the caller's input: one that demands a huge answer is refused before the
/// mock (or a model) is asked to build it, and deep nesting costs the mock nothing.
/// Before the bound, the first request aborted the process (a 35 TB allocation) and the
/// second spun a thread for ever.
#[tokio::test]
async fn a_schema_that_demands_a_huge_answer_is_refused_before_anything_builds_it() {
    let app = TestApp::start_with("", &[("GENERATOR_MODE", "mock")], Default::default()).await;
    let ask = |schema: Value| {
        json!({"role": "brand", "task": "brand_summary", "mode": "json", "payload": {},
               "options": {"mock": true, "output_schema": schema}})
    };
    let mut too_deep = json!({"type": "string"});
    for _ in 0..40 {
        too_deep = json!({"type": "array", "items": too_deep});
    }
    for (huge, why) in [
        (
            json!({"type": "array", "minItems": 1_099_511_627_776_u64, "items": {"type": "object"}}),
            "at least",
        ),
        (
            json!({"type": "string", "minLength": 100_000_000_000_u64}),
            "at least",
        ),
        (json!({"type": "string", "minLength": 1e300}), "at least"),
        // Each count alone looks harmless; together a million strings of 2.
        (
            json!({"type": "array", "minItems": 1000,
               "items": {"type": "array", "minItems": 1000, "items": {"type": "string", "minLength": 2}}}),
            "at least",
        ),
        (
            json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string", "minLength": 2_000_000}]}}}),
            "at least",
        ),
        // Compiling it would cost seconds of a thread.
        (too_deep, "too large"),
    ] {
        let (status, body) = app.post_json(GENERATE, &ask(huge.clone())).await;
        assert_eq!(status, 400, "{huge}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("options.output_schema"), "{message}");
        assert!(message.contains(why), "{message}");
    }

    // 28 levels of lists: the mock makes two items at the top, the least below (2^28
    // values before), and the answer satisfies the schema.
    let mut deep = json!({"type": "string", "minLength": 3});
    for _ in 0..28 {
        deep = json!({"type": "array", "items": deep});
    }
    let deep = json!({"type": "object", "required": ["lists"], "properties": {"lists": deep}});
    let (status, body) = app.post_json(GENERATE, &ask(deep.clone())).await;
    assert_eq!(status, 200, "{body}");
    let contract = contracts::resolve("brand", "brand_summary", Some(&deep), &json!({}))
        .unwrap()
        .unwrap();
    assert_eq!(contract.violations(&body["output"]["value"]), vec![]);
    // Two lists at the top, one below: 2 strings, not 2^40.
    let compact = body["output"]["value"]["lists"].to_string();
    assert_eq!(compact.matches("Sparklio").count(), 2, "{compact}");

    // Near the bound is still served, and long strings are built in linear time.
    let (status, body) = app
        .post_json(
            GENERATE,
            &ask(json!({"type": "object", "required": ["text"],
                        "properties": {"text": {"type": "string", "minLength": 200_000}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = body["output"]["value"]["text"].as_str().unwrap();
    assert!(text.chars().count() >= 200_000);
    app.stop().await;
}

#[tokio::test]
async fn a_model_that_follows_the_prompt_satisfies_every_agent_contract() {
    // The double answers in whatever shape the prompt's "exactly this shape" line asks
    // for, as an obedient model would: the line must name every field the contract
    // requires, with and without the agent's structure.
    let double = OllamaDouble::start().await;
    let app = live(&double, "[llm.validation]\ndefault = \"strict\"\n").await;
    let agents = agent_tasks();
    for (role, tasks) in agents["agents"].as_object().unwrap() {
        for task in tasks.as_object().unwrap().keys() {
            for payload in [agent_payload(role, task), Value::Object(product())] {
                let (status, body) = app
                    .post_json(
                        GENERATE,
                        &json!({"role": role, "task": task, "payload": payload}),
                    )
                    .await;
                assert_eq!(status, 200, "{role}/{task}: {body}");
            }
        }
    }
    app.stop().await;
}
