//! The instance limiter at its default size (8 calls at once, 64 waiting per Ollama
//! instance): 64 clients without think time fit, so none of them may ever be shed, also
//! after clients gave up while queued (as a load generator does at the end of a timed
//! series). A storm of 503 OVERLOADED at a sustained c=64 was found in the soak of
//! `docs/performance.md`.

use serde_json::{json, Value};
use sparklio_testkit::ollama::{Behaviour, OllamaDouble};
use sparklio_testkit::TestApp;
use std::time::Duration;

/// 64 clients (8 running + 56 waiting at most: below the default 8 + 64).
const CLIENTS: usize = 64;
const ROUNDS: usize = 25;

/// Default limits: only the upstream is configured.
async fn live(double: &OllamaDouble) -> TestApp {
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ndefault_model = \"qwen2.5:7b\"\n",
        double.base_url()
    );
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

fn body() -> Value {
    json!({"role": "copywriter", "task": "sns", "mode": "text", "payload": {"product": "shake"}})
}

/// `CLIENTS` clients, each sending `ROUNDS` requests one after the other; the statuses
/// (with the error code and whether `Retry-After` came along) of every answer.
async fn sustained(app: &TestApp) -> Vec<(u16, String, bool)> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url) = (reqwest::Client::new(), app.url("/api/v1/llm/generate"));
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..ROUNDS {
                let r = client.post(&url).json(&body()).send().await.unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().contains_key("retry-after");
                let v: Value = r.json().await.unwrap_or(Value::Null);
                seen.push((
                    status,
                    v["error"]["code"].as_str().unwrap_or("").to_string(),
                    retry,
                ));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    all
}

/// Calls holding the instance now, as its health shows them.
async fn outstanding_calls(app: &TestApp) -> Value {
    instance_load(app).await.0
}

/// Calls holding the instance and calls queued for it, as its health shows them.
async fn instance_load(app: &TestApp) -> (Value, Value) {
    let (_, v) = app.get_json("/api/v1/llm/health").await;
    let main = &v["providers"]["ollama"]["instances"]["main"];
    (main["outstanding"].clone(), main["waiting"].clone())
}

fn assert_none_shed(answers: &[(u16, String, bool)]) {
    assert_eq!(answers.len(), CLIENTS * ROUNDS);
    let shed = answers.iter().filter(|(s, _, _)| *s == 503).count();
    let other: Vec<_> = answers.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        other.is_empty(),
        "{shed} of {} answers were 503; not 200: {:?}",
        answers.len(),
        &other[..other.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_without_think_time_are_never_shed() {
    let double = OllamaDouble::start().await;
    let app = live(&double).await;
    assert_none_shed(&sustained(&app).await);
    // Every answer left the instance: nothing holds a slot once the answers are out.
    assert_eq!(outstanding_calls(&app).await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_give_up_while_queued_leave_no_place_taken() {
    let double = OllamaDouble::start().await;
    let app = live(&double).await;
    // The upstream holds every call: 8 run, the next 64 wait in the instance's queue.
    double.set(Behaviour::Hang);
    let client = reqwest::Client::new();
    let mut queued = Vec::new();
    for _ in 0..CLIENTS + 8 {
        let (client, url) = (client.clone(), app.url("/api/v1/llm/generate"));
        queued.push(tokio::spawn(async move {
            let _ = client.post(&url).json(&body()).send().await;
        }));
    }
    // The 8 running calls reached the upstream and the other 64 queued behind them
    // (a probe sent sooner could take the last place and see a queued call shed).
    let mut load = (Value::Null, Value::Null);
    for _ in 0..400 {
        load = instance_load(&app).await;
        // A call counts as running once it holds a slot, a moment before it is sent.
        if load == (json!(8), json!(CLIENTS)) && double.requests().len() == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(load, (json!(8), json!(CLIENTS)), "8 calls run, 64 wait");
    assert_eq!(double.requests().len(), 8, "8 calls run at once");
    // One more is shed at once, with Retry-After.
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let shed = probe
        .post(app.url("/api/v1/llm/generate"))
        .json(&body())
        .send()
        .await;
    let r = shed.expect("a call beyond 8 running and 64 queued is shed");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "OVERLOADED", "{v}");
    // Every client gives up: their connections close, the Desk drops their calls.
    for q in &queued {
        q.abort();
    }
    for q in queued {
        let _ = q.await;
    }
    double.set(Behaviour::Normal);
    for _ in 0..200 {
        load = instance_load(&app).await;
        if load == (json!(0), json!(0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        load,
        (json!(0), json!(0)),
        "the abandoned calls let go of the instance and its queue"
    );
    // The places they held in the queue are free again: 64 clients fit.
    assert_none_shed(&sustained(&app).await);
    app.stop().await;
}
