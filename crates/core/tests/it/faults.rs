//! The fault matrix: for each provider kind and each way an upstream fails, the code,
//! the HTTP status and a time bound relative to the configured timeouts. The doubles
//! misbehave on command (`sparklio_testkit::fault`); bounds are generous (the figures
//! are in the benches and `docs/faults.md`).

use serde_json::{json, Value};
use sparklio_testkit::comfyui::ComfyDouble;
use sparklio_testkit::fault::Fault;
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::TestApp;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Short limits so the matrix runs in seconds: connect 0.5 s, control 1 s, first token
/// 2 s, idle 1 s, whole request 10 s, probes every 0.2 s, breaker after 2 failures.
const LIMITS: &str =
    "connect_timeout_ms = 500\ncontrol_timeout_ms = 1000\nfirst_byte_timeout_s = 2\n\
    idle_timeout_s = 1\ntimeout_s = 10\n";
const RESILIENCE: &str = "probe_interval_ms = 200\nbreaker_failures = 2\nbreaker_open_s = 1\n";
/// For the tests that look at an open breaker: long enough to be looked at.
const LONG_OPEN: &str = "probe_interval_ms = 200\nbreaker_failures = 2\nbreaker_open_s = 30\n";
const FIRST_BYTE: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(1);
const CONTROL: Duration = Duration::from_secs(1);
/// Scheduling slack on a loaded 2-core machine (never part of what is tested).
const SLACK: Duration = Duration::from_millis(1500);

fn ollama_toml(urls: &[(&str, String)], extra: &str) -> String {
    let mut t = format!("[llm.providers.ollama]\nkind = \"ollama\"\n{LIMITS}{extra}");
    if let [(_, url)] = urls {
        t.push_str(&format!("base_url = \"{url}\"\n"));
    } else {
        for (name, url) in urls {
            t.push_str(&format!(
                "[[llm.providers.ollama.instances]]\nname = \"{name}\"\nurl = \"{url}\"\n"
            ));
        }
    }
    t.push_str(&format!("[llm.providers.ollama.resilience]\n{RESILIENCE}"));
    t
}

async fn live(toml: &str) -> TestApp {
    TestApp::start_with(toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

fn chat() -> Value {
    json!({"role": "copywriter", "task": "sns", "mode": "text", "payload": {"product": "shake"}})
}

/// Send `body` to generate; the status, error code and how long it took.
async fn generate(app: &TestApp, body: &Value) -> (u16, String, Duration, Value) {
    let started = Instant::now();
    let (status, v) = app.post_json("/api/v1/llm/generate", body).await;
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code, started.elapsed(), v)
}

#[tokio::test]
async fn ollama_fault_matrix() {
    let double = OllamaDouble::start().await;
    let app = live(&ollama_toml(&[("main", double.base_url())], "")).await;
    // (fault, expected status, expected code, time bound)
    #[allow(clippy::type_complexity)] // a table's row type, read once here
    let matrix: Vec<(&str, Fault, Option<&str>, u16, &str, Duration)> = vec![
        (
            "500",
            Fault::Status(500),
            Some("/api/chat"),
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "503",
            Fault::Status(503),
            Some("/api/chat"),
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "invalid JSON",
            Fault::BadJson,
            Some("/api/chat"),
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "truncated stream",
            Fault::Truncated,
            Some("/api/chat"),
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "reset mid-stream",
            Fault::ResetMidStream,
            Some("/api/chat"),
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "a runner that never answers (probes pass)",
            Fault::HangBeforeHeaders,
            Some("/api/chat"),
            504,
            "LLM_TIMEOUT",
            FIRST_BYTE,
        ),
        (
            "stall mid-stream",
            Fault::StallMidStream { after_chunks: 2 },
            Some("/api/chat"),
            504,
            "LLM_TIMEOUT",
            IDLE,
        ),
    ];
    for (name, fault, path, status, code, bound) in matrix {
        let rule = match path {
            Some(p) => fault.on(p),
            None => fault.into(),
        };
        double.set_fault(rule).await;
        let (s, c, took, v) = generate(&app, &chat()).await;
        assert_eq!((s, c.as_str()), (status, code), "{name}: {v}");
        assert!(
            took < bound + SLACK,
            "{name}: took {took:?}, bound {bound:?}"
        );
        assert_eq!(v["error"]["provider"], "ollama", "{name}: {v}");
        double.clear_fault().await;
        // Wait out any breaker the fault opened, then the provider answers again.
        recover(&app).await;
    }
    // A slow trickle within the idle limit is not a failure.
    double
        .set_fault(
            Fault::Trickle {
                bytes: 8,
                interval_ms: 50,
            }
            .on("/api/chat"),
        )
        .await;
    let (s, _, _, v) = generate(&app, &chat()).await;
    assert_eq!(s, 200, "trickle: {v}");
    double.clear_fault().await;
    // A model it lacks: 404, and not the instance's fault (no breaker).
    let mut missing = chat();
    missing["options"] = json!({"model": "nope:1b"});
    let (s, c, took, _) = generate(&app, &missing).await;
    assert_eq!((s, c.as_str()), (404, "MODEL_NOT_FOUND"));
    assert!(took < CONTROL + SLACK);
    app.stop().await;
}

/// Until a plain request answers again (breaker closed after its open period).
async fn recover(app: &TestApp) {
    for _ in 0..100 {
        if generate(app, &chat()).await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the provider did not recover");
}

#[tokio::test]
async fn refused_and_hung_ollama_fail_fast_and_the_breaker_answers_in_milliseconds() {
    let double = OllamaDouble::start().await;
    let app = live(&ollama_toml(&[("main", double.base_url())], "")).await;
    let hung_app =
        live(&ollama_toml(&[("main", double.base_url())], "").replace(RESILIENCE, LONG_OPEN)).await;
    assert_eq!(generate(&app, &chat()).await.0, 200);

    // Refused: at once.
    double.set_fault(Fault::Refuse).await;
    let (s, c, took, v) = generate(&app, &chat()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    assert!(took < Duration::from_millis(500) + SLACK, "{took:?}");
    double.clear_fault().await;
    recover(&app).await;
    app.stop().await;
    let app = hung_app;
    recover(&app).await;

    // Hung (accepts, never answers, probes included): the first request ends when a
    // probe finds it wedged, long before the first-byte timeout.
    double.set_fault(Fault::HangAfterAccept).await;
    let (s, c, took, v) = generate(&app, &chat()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    assert!(
        took < FIRST_BYTE,
        "the probe should catch it first: {took:?}"
    );
    // Breaker open: milliseconds, naming the instance and why, with Retry-After.
    let started = Instant::now();
    let r = app
        .client
        .post(app.url("/api/v1/llm/generate"))
        .json(&chat())
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ollama/main") && message.contains("breaker open"),
        "{message}"
    );
    // Milliseconds in practice; the bounds here stay below CONTROL (1 s), which a wait on
    // the hung instance would take, with room for a loaded machine.
    assert!(
        took < Duration::from_millis(800),
        "breaker-open answer took {took:?}"
    );
    // Health and models answer from memory, not by waiting on the hung instance.
    for path in ["/api/v1/llm/health", "/api/v1/llm/models", "/api/v1/models"] {
        let started = Instant::now();
        let (s, v) = app.get_json(path).await;
        assert_eq!(s, 200, "{path}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{path}: {:?}",
            started.elapsed()
        );
        if path == "/api/v1/llm/health" {
            let inst = &v["providers"]["ollama"]["instances"]["main"];
            assert_eq!(inst["breaker"], "open", "{v}");
            assert!(
                inst["breaker_reason"].as_str().unwrap().contains("wedged"),
                "{inst}"
            );
        }
    }
    double.clear_fault().await;
    app.stop().await;
}

#[tokio::test]
async fn a_restart_mid_request_fails_that_request_and_the_next_ones_work() {
    let double = OllamaDouble::start().await;
    let app = live(&ollama_toml(&[("main", double.base_url())], "")).await;
    double
        .set_fault(Fault::StallMidStream { after_chunks: 1 }.on("/api/chat"))
        .await;
    let call = {
        let (client, url) = (app.client.clone(), app.url("/api/v1/llm/generate"));
        tokio::spawn(async move {
            client
                .post(url)
                .json(&chat())
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // The call is on the double (a restart before it arrived would not be mid-request).
    assert!(
        double
            .got_request_to("/api/chat", Duration::from_secs(4))
            .await,
        "the call never reached the double"
    );
    double.restart(Duration::from_millis(300)).await;
    let status = call.await.unwrap();
    assert!(status == 502 || status == 503 || status == 504, "{status}");
    recover(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn two_instances_spread_load_and_keep_unsent_requests() {
    let a = OllamaDouble::start_with(&["qwen2.5:7b", "qwen2.5:14b"], &["qwen2.5:14b"]).await;
    let b = OllamaDouble::start_with(&["qwen2.5:7b", "qwen2.5:14b"], &[]).await;
    let app = live(&ollama_toml(
        &[("a", a.base_url()), ("b", b.base_url())],
        "default_model = \"qwen2.5:7b\"\n",
    ))
    .await;
    // Let the probes read what each has loaded.
    let (_, _) = app.get_json("/api/v1/llm/health").await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // A model loaded on only one instance goes there (no model swap on the other).
    for _ in 0..4 {
        let (s, _, _, v) = generate(&app, &chat()).await; // copywriter → qwen2.5:14b
        assert_eq!(s, 200, "{v}");
    }
    let to_a = a
        .requests()
        .iter()
        .filter(|r| r["model"] == "qwen2.5:14b")
        .count();
    let to_b = b
        .requests()
        .iter()
        .filter(|r| r["model"] == "qwen2.5:14b")
        .count();
    assert_eq!((to_a, to_b), (4, 0));

    // Concurrent requests for a model both have spread by outstanding count.
    a.set_fault(
        Fault::Trickle {
            bytes: 16,
            interval_ms: 20,
        }
        .on("/api/chat"),
    )
    .await;
    b.set_fault(
        Fault::Trickle {
            bytes: 16,
            interval_ms: 20,
        }
        .on("/api/chat"),
    )
    .await;
    let brief =
        json!({"role": "brief", "task": "marketing_brief", "mode": "text", "payload": {"x": 1}});
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/api/v1/llm/generate"),
            brief.clone(),
        );
        calls.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    let count = |d: &OllamaDouble| {
        d.requests()
            .iter()
            .filter(|r| r["model"] == "qwen2.5:7b")
            .count()
    };
    let (na, nb) = (count(&a), count(&b));
    assert_eq!(na + nb, 8);
    assert!(na >= 2 && nb >= 2, "spread {na}/{nb}");
    a.clear_fault().await;
    b.clear_fault().await;

    // One instance dies: requests that were not sent move to the other; none is lost.
    a.set_fault(Fault::Refuse).await;
    for _ in 0..6 {
        let (s, _, _, v) = generate(&app, &brief).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, h) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(h["providers"]["ollama"]["reachable"], true, "{h}");
    app.stop().await;
}

#[tokio::test]
async fn a_fallback_answers_when_the_route_provider_is_down() {
    let up = OllamaDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"http://127.0.0.1:9\"\n{LIMITS}\
         [llm.providers.ollama_lab]\nkind = \"ollama\"\nbase_url = \"{}\"\ndefault_model = \"qwen2.5:7b\"\n\
         [llm.default_route]\nprovider = \"ollama\"\nfallbacks = [{{ provider = \"ollama_lab\", model = \"qwen2.5:7b\" }}]\n",
        up.base_url()
    );
    let app = live(&toml).await;
    let body =
        json!({"role": "assistant", "task": "anything", "mode": "text", "payload": {"q": "hi"}});
    let (s, _, _, v) = generate(&app, &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["provider"], "ollama_lab");
    assert_eq!(v["meta"]["fallback_from"]["provider"], "ollama");
    assert_eq!(v["meta"]["fallback_from"]["code"], "PROVIDER_UNAVAILABLE");
    // Never on the request's own fault: a forced provider does not fall back.
    let mut forced = body.clone();
    forced["options"] = json!({"provider": "ollama"});
    assert_eq!(generate(&app, &forced).await.0, 503);
    app.stop().await;
}

#[tokio::test]
async fn a_request_deadline_shortens_the_wait_never_lengthens_it() {
    let double = OllamaDouble::start().await;
    let app = live(&ollama_toml(&[("main", double.base_url())], "")).await;
    double
        .set_fault(Fault::HangBeforeHeaders.on("/api/chat"))
        .await;
    let mut body = chat();
    body["options"] = json!({"timeout_s": 0.5});
    let (s, c, took, _) = generate(&app, &body).await;
    assert_eq!((s, c.as_str()), (504, "LLM_TIMEOUT"));
    assert!(
        took < Duration::from_millis(500) + SLACK && took < FIRST_BYTE,
        "{took:?}"
    );
    // Same through the header.
    let started = Instant::now();
    let r = app
        .client
        .post(app.url("/api/v1/llm/generate"))
        .header("x-request-timeout", "0.5")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < FIRST_BYTE);
    app.stop().await;
}

// ---------- ComfyUI ----------

fn comfy_toml(double: &ComfyDouble, extra: &str) -> String {
    comfy_toml_with(double, extra, RESILIENCE)
}

fn comfy_toml_with(double: &ComfyDouble, extra: &str, resilience: &str) -> String {
    format!(
        "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\ntimeout_s = 20\npoll_interval_ms = 50\n\
         connect_timeout_ms = 500\ncontrol_timeout_ms = 1000\nrecovery_grace_s = 10\n{extra}\
         [media.providers.comfyui.resilience]\n{resilience}",
        double.url()
    )
}

fn image() -> Value {
    json!({"kind": "product_shot", "prompt": "x", "options": {"workflow": "diagnostic", "width": 64, "height": 64, "seed": 7}})
}

async fn draw(app: &TestApp, body: &Value) -> (u16, String, Duration, Value) {
    let started = Instant::now();
    let (status, v) = app.post_json("/api/v1/media/image/generate", body).await;
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code, started.elapsed(), v)
}

async fn recover_media(app: &TestApp) {
    for _ in 0..100 {
        if draw(app, &image()).await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ComfyUI did not recover");
}

#[tokio::test]
async fn comfyui_fault_matrix() {
    let double = ComfyDouble::start().await;
    let app = live(&comfy_toml(&double, "")).await;
    assert_eq!(draw(&app, &image()).await.0, 200);
    let matrix: Vec<(&str, Fault, &str, u16, &str, Duration)> = vec![
        (
            "500 on submit",
            Fault::Status(500),
            "/prompt",
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "503 on submit",
            Fault::Status(503),
            "/prompt",
            502,
            "PROVIDER_ERROR",
            CONTROL,
        ),
        (
            "invalid JSON from history",
            Fault::BadJson,
            "/history",
            502,
            "PROVIDER_ERROR",
            CONTROL * 3,
        ),
        (
            "hung submit",
            Fault::HangBeforeHeaders,
            "/prompt",
            503,
            "PROVIDER_UNAVAILABLE",
            CONTROL,
        ),
        (
            "reset on the image",
            Fault::ResetMidStream,
            "/view",
            503,
            "PROVIDER_UNAVAILABLE",
            CONTROL * 3,
        ),
        (
            "truncated image",
            Fault::Truncated,
            "/view",
            503,
            "PROVIDER_UNAVAILABLE",
            CONTROL * 3,
        ),
    ];
    for (name, fault, path, status, code, bound) in matrix {
        double.set_fault(fault.on(path)).await;
        let (s, c, took, v) = draw(&app, &image()).await;
        assert_eq!((s, c.as_str()), (status, code), "{name}: {v}");
        assert!(took < bound + SLACK, "{name}: took {took:?}");
        if name == "hung submit" {
            // ComfyUI may have queued it: the Desk looks for it there (and finds nothing,
            // the double never read it; see `a_submit_queued_after_the_desk_gave_up_…`).
            let orphan = submitted_id(&double);
            let looks = || {
                double
                    .request_log()
                    .iter()
                    .filter(|r| r.method == "GET" && r.path == "/queue")
                    .count()
            };
            let before = looks();
            assert!(
                eventually(|| looks() > before).await,
                "{name}: the Desk never looked for {orphan} in ComfyUI's queue"
            );
        }
        double.clear_fault().await;
        recover_media(&app).await;
    }
    // A model it lacks: 404 naming the node, before any job runs.
    let mut missing = image();
    missing["options"] = json!({"checkpoint": "nope.safetensors", "width": 64, "height": 64});
    let (s, c, _, v) = draw(&app, &missing).await;
    assert_eq!((s, c.as_str()), (404, "MODEL_NOT_FOUND"), "{v}");
    assert_eq!(v["error"]["node_id"], "4");
    app.stop().await;
}

/// The prompt id of the last `POST /prompt` the double received.
fn submitted_id(double: &ComfyDouble) -> String {
    let sent = double
        .request_log()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path == "/prompt")
        .expect("a submit reached ComfyUI");
    sent.body["prompt_id"].as_str().unwrap().to_string()
}

/// Whether `check` holds within 3 s.
async fn eventually(check: impl Fn() -> bool) -> bool {
    within(Duration::from_secs(3), check).await
}

/// Whether `check` holds within `limit`.
async fn within(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn a_submit_answered_too_late_is_interrupted_on_comfyui() {
    let double = ComfyDouble::start().await;
    let app = live(&comfy_toml(&double, "")).await;
    assert_eq!(draw(&app, &image()).await.0, 200);
    // ComfyUI queues and starts the prompt, but its answer outlasts control_timeout_ms.
    double.node_ms(1000);
    double
        .set_fault(
            Fault::Trickle {
                bytes: 1,
                interval_ms: 100,
            }
            .on("/prompt"),
        )
        .await;
    let (s, c, took, v) = draw(&app, &image()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    assert!(took < CONTROL + SLACK, "took {took:?}");
    let orphan = submitted_id(&double);
    // Nobody waits for it: it is interrupted on the GPU, by its id.
    assert!(
        eventually(|| double
            .inner
            .interrupt_requests
            .lock()
            .unwrap()
            .contains(&Some(json!(orphan))))
        .await,
        "no interrupt of {orphan} reached ComfyUI"
    );
    assert!(
        eventually(|| double.history_of(&orphan).is_some()).await,
        "{orphan} ended"
    );
    let ended = double.history_of(&orphan).unwrap();
    assert!(
        ended["status"]
            .to_string()
            .contains("execution_interrupted"),
        "{ended}"
    );
    double.clear_fault().await;
    app.stop().await;
}

/// ComfyUI's handler goes on after the Desk hangs up: a busy ComfyUI queues a timed-out
/// submit only after the Desk's first look found nothing. Looked for again, it is taken
/// off the queue while it waits, or interrupted once it runs; before, it ran for nobody.
#[tokio::test]
async fn a_submit_queued_after_the_desk_gave_up_is_withdrawn_when_it_shows() {
    let double = ComfyDouble::start().await;
    let app = live(&comfy_toml(&double, "")).await;
    assert_eq!(draw(&app, &image()).await.0, 200);
    let late = CONTROL.as_millis() as u64 + 1500;

    // Queued behind a held queue: taken off it.
    double.inner.knobs.hold.store(true, Ordering::SeqCst);
    double.submit_ms(late);
    let (s, c, took, v) = draw(&app, &image()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    assert!(took < CONTROL + SLACK, "took {took:?}");
    let orphan = submitted_id(&double);
    let before = double.received().len();
    assert!(
        within(Duration::from_secs(5), || double.received().len() > before).await,
        "the double queued it late"
    );
    let withdrawn = || {
        !double.pending_ids().contains(&orphan)
            && double.inner.queue_deletes.lock().unwrap().contains(&orphan)
    };
    assert!(
        within(Duration::from_secs(8), withdrawn).await,
        "{orphan}, queued late, was never taken off the queue"
    );

    // Queued late and started at once: interrupted by its id.
    double.inner.knobs.hold.store(false, Ordering::SeqCst);
    double.node_ms(1500);
    let (s, c, _, v) = draw(&app, &image()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    let orphan = submitted_id(&double);
    within(Duration::from_secs(15), || {
        double.history_of(&orphan).is_some()
    })
    .await;
    let ended = double
        .history_of(&orphan)
        .expect("the late prompt ran and ended");
    assert!(
        ended["status"]
            .to_string()
            .contains("execution_interrupted"),
        "it ran for nobody to the end: {ended}"
    );
    double.submit_ms(0);
    double.node_ms(0);
    app.stop().await;
}

#[tokio::test]
async fn refused_and_hung_comfyui_fail_fast_health_and_models_do_not_wait() {
    let double = ComfyDouble::start().await;
    let app = live(&comfy_toml(&double, "")).await;
    let hung_app = live(&comfy_toml_with(&double, "", LONG_OPEN)).await;
    assert_eq!(draw(&app, &image()).await.0, 200);
    double.set_fault(Fault::Refuse).await;
    let (s, c, took, v) = draw(&app, &image()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    assert!(took < Duration::from_millis(500) + SLACK);
    double.clear_fault().await;
    recover_media(&app).await;

    app.stop().await;
    let app = hung_app;
    assert_eq!(draw(&app, &image()).await.0, 200);
    double.set_fault(Fault::HangAfterAccept).await;
    let (s, c, took, v) = draw(&app, &image()).await;
    assert_eq!((s, c.as_str()), (503, "PROVIDER_UNAVAILABLE"), "{v}");
    assert!(
        took < CONTROL * 3 + SLACK,
        "hung ComfyUI: {took:?} (was 33 s)"
    );
    // Once the probe found it wedged: milliseconds, and health/models from memory.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, _, took, v) = draw(&app, &image()).await;
    assert_eq!(s, 503, "{v}");
    assert!(took < Duration::from_millis(800), "{took:?}");
    for path in ["/api/v1/media/health", "/api/v1/media/models"] {
        let started = Instant::now();
        let (s, v) = app.get_json(path).await;
        assert_eq!(s, 200);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{path}: {:?} {v}",
            started.elapsed()
        );
    }
    double.clear_fault().await;
    app.stop().await;
}

#[tokio::test]
async fn a_dropped_socket_mid_job_still_ends_succeeded() {
    let double = ComfyDouble::start().await;
    double.node_ms(300);
    // ComfyUI keeps running; only the progress socket closes right after the start.
    double
        .inner
        .knobs
        .drop_socket
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let app = live(&comfy_toml(&double, "")).await;
    let (s, _, _, v) = draw(&app, &image()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "completed");
    assert!(
        double
            .inner
            .dropped_sockets
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_comfyui_restart_mid_job_is_resubmitted_once_or_lost_when_resubmission_is_off() {
    for resubmit in [true, false] {
        let double = ComfyDouble::start().await;
        double.node_ms(400);
        let toml =
            comfy_toml(&double, "") + &format!("[media]\nresubmit_after_restart = {resubmit}\n");
        let app = live(&toml).await;
        let call = {
            let (client, url) = (app.client.clone(), app.url("/api/v1/media/image/generate"));
            tokio::spawn(async move {
                let r = client.post(url).json(&image()).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        };
        // The job runs on ComfyUI (a restart before it was sent would lose nothing).
        for _ in 0..400 {
            if double.running_id().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(double.running_id().is_some(), "the job never started");
        // Queue and history emptied, as a real restart does.
        double.restart(Duration::from_millis(600)).await;
        let (s, v) = call.await.unwrap();
        if resubmit {
            assert_eq!(s, 200, "{v}");
            let job = app
                .get_json(&format!(
                    "/api/v1/media/jobs/{}",
                    v["job_id"].as_str().unwrap()
                ))
                .await
                .1;
            assert!(
                job["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("submitted again")),
                "{job}"
            );
            // The first submission and exactly one more, with the same graph (and seed).
            let graphs = double.received();
            assert_eq!(graphs.len(), 2, "one resubmission after the restart");
            assert_eq!(graphs[0], graphs[1]);
        } else {
            assert_eq!(
                (s, v["error"]["code"].as_str()),
                (502, Some("JOB_LOST")),
                "{v}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_job_pinned_to_an_instance_that_was_removed_is_lost_with_a_reason() {
    let double = ComfyDouble::start().await;
    double.node_ms(300);
    let dir = tempfile::tempdir().unwrap();
    let with = |url: String| {
        format!(
            "[media.providers.comfyui]\nkind = \"comfyui\"\npoll_interval_ms = 50\ntimeout_s = 20\n\
             [[media.providers.comfyui.instances]]\nname = \"{}\"\nurl = \"{url}\"\n",
            if url.contains("127.0.0.1:9") { "other" } else { "gpu1" }
        )
    };
    let start = |toml: String| {
        let input = sparklio_testkit::input_for(&dir, &toml, &[("GENERATOR_MODE", "live")]);
        async move {
            let loaded = sparklio_core::load_config(&input).unwrap();
            sparklio_core::start(loaded, Default::default())
                .await
                .unwrap()
        }
    };
    let app = start(with(double.url())).await;
    let mut body = image();
    body["async"] = json!(true);
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/media/image/generate", app.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap().to_string();
    double
        .inner
        .knobs
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    app.shutdown().await.unwrap();
    // The instance the job was on is gone from the list at the next start.
    let app = start(with("http://127.0.0.1:9".into())).await;
    let mut view = Value::Null;
    for _ in 0..100 {
        view = reqwest::get(format!("http://{}/api/v1/media/jobs/{id}", app.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["error"]["code"], "JOB_LOST", "{view}");
    assert!(
        view["error"]["message"].as_str().unwrap().contains("gpu1"),
        "{view}"
    );
    app.shutdown().await.unwrap();
}
