//! Ollama's own API through the Desk (`/api/*`, `/ollama/api/*`) in front of Ollama
//! doubles on 127.0.0.1: pass-through answers and streams, instance choice by model,
//! merged lists, single-flight pulls, keys, fail-fast and usage rows.

use serde_json::{json, Value};
use sparklio_core::store::UsageQuery;
use sparklio_testkit::fault::Fault;
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::{free_port, TestApp};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-key-0123456789abcdef";
const GATEWAY: &str = "gateway-key-0123456789abcd";

fn providers(main: &str, lab: Option<&str>) -> String {
    let mut toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{main}\"\ntimeout_s = 5\n"
    );
    if let Some(lab) = lab {
        toml.push_str(&format!(
            "[llm.providers.ollama_lab]\nkind = \"ollama\"\nbase_url = \"{lab}\"\ntimeout_s = 5\n"
        ));
    }
    toml
}

async fn desk(toml: &str) -> TestApp {
    TestApp::start_with(toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    let r = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn chat_generate_embed_and_show_pass_through_at_both_prefixes() {
    let double = OllamaDouble::start().await;
    let app = desk(&providers(&double.base_url(), None)).await;
    for prefix in ["/api", "/ollama/api"] {
        // Not streamed: Ollama's whole object, counts included.
        let (status, headers, text) = post(
            &app,
            &format!("{prefix}/chat"),
            json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "안녕"}], "stream": false}),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["done"], true);
        assert!(
            v["message"]["content"].as_str().unwrap().contains("안녕"),
            "{v}"
        );
        assert!(v["eval_count"].as_u64().unwrap() > 0);
        assert_eq!(headers["x-sparklio-instance"], "ollama/main");

        // Streamed (Ollama's default): NDJSON lines, the last one done with counts.
        let (status, headers, text) = post(
            &app,
            &format!("{prefix}/chat"),
            json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "스트림"}]}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/x-ndjson");
        let lines = ndjson(&text);
        assert!(lines.len() >= 2, "{text}");
        assert_eq!(lines.last().unwrap()["done"], true);
        let joined: String = lines
            .iter()
            .filter_map(|l| l["message"]["content"].as_str())
            .collect();
        assert!(joined.contains("스트림"), "{joined}");
    }
    let (status, _, text) = post(
        &app,
        "/api/generate",
        json!({"model": "qwen2.5:7b", "prompt": "한 줄", "stream": false}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["response"].as_str().unwrap().contains("한 줄"), "{v}");

    let (status, _, text) = post(
        &app,
        "/api/embed",
        json!({"model": "qwen2.5:7b", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);

    let (status, _, text) = post(&app, "/api/show", json!({"model": "qwen2.5:7b"})).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("details"), "{text}");

    // The instance's own 404 comes back as it is: Ollama's shape, Ollama's words.
    let (status, _, text) = post(
        &app,
        "/api/chat",
        json!({"model": "nope:1b", "messages": [{"role": "user", "content": "x"}], "stream": false}),
    )
    .await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");

    // Our own refusals use Ollama's shape too.
    let (status, _, text) = post(&app, "/api/chat", json!({"messages": []})).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v, json!({"error": "model is required"}));

    // So do the router's own (a wrong method has no handler to shape it).
    let r = app.client.get(app.url("/api/chat")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string(), "{v}");

    // Every call left a usage row as the front's.
    let rows = front_rows(&app).await;
    let chat_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.task.as_deref() == Some("chat"))
        .collect();
    assert!(chat_rows.len() >= 4, "{rows:?}");
    assert!(chat_rows.iter().any(|r| r.status == 200
        && r.completion_tokens.unwrap_or(0) > 0
        && r.provider.as_deref() == Some("ollama")));
    assert!(chat_rows.iter().any(|r| r.status == 404));
    app.stop().await;
}

#[tokio::test]
async fn forwarded_calls_reuse_their_upstream_connections() {
    // The front shares the gateway's connections to each instance: streamed, whole and
    // GET answers read to their end hand the connection back.
    let double = OllamaDouble::start().await;
    let app = desk(&providers(&double.base_url(), None)).await;
    let chat = |stream: bool| json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    assert_eq!(post(&app, "/api/chat", chat(false)).await.0, 200);
    let before = double.faults().connections_accepted();
    for _ in 0..5 {
        let (status, _, text) = post(&app, "/api/chat", chat(true)).await;
        assert_eq!(status, 200);
        assert_eq!(ndjson(&text).last().unwrap()["done"], true);
        let (status, _, text) = post(&app, "/ollama/api/chat", chat(false)).await;
        assert_eq!(status, 200, "{text}");
        let r = app
            .client
            .get(app.url("/api/version"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let opened = double.faults().connections_accepted() - before;
    // The probe's own requests may open one more.
    assert!(opened <= 1, "15 calls opened {opened} connections");
    app.stop().await;
}

#[tokio::test]
async fn the_model_picks_the_provider_and_lists_merge_them() {
    let main = OllamaDouble::start_with(&["qwen2.5:7b"], &["qwen2.5:7b"]).await;
    let lab = OllamaDouble::start_with(&["phi4:latest"], &[]).await;
    let app = desk(&providers(&main.base_url(), Some(&lab.base_url()))).await;
    let (status, tags) = app.get_json("/api/tags").await;
    assert_eq!(status, 200, "{tags}");
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"qwen2.5:7b") && names.contains(&"phi4:latest"),
        "{tags}"
    );
    let phi = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "phi4:latest")
        .unwrap();
    assert_eq!(
        phi["sparklio"]["held_by"],
        json!([{"provider": "ollama_lab", "instance": "main"}])
    );
    let (status, ps) = app.get_json("/api/ps").await;
    assert_eq!(status, 200);
    assert_eq!(ps["models"][0]["name"], "qwen2.5:7b", "{ps}");
    let (status, version) = app.get_json("/ollama/api/version").await;
    assert_eq!(status, 200);
    assert!(version["version"].is_string());

    // A model only the lab has goes to the lab (once its probe has listed it).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, headers, text) = post(
            &app,
            "/api/chat",
            json!({"model": "phi4", "messages": [{"role": "user", "content": "hi"}], "stream": false}),
        )
        .await;
        if headers
            .get("x-sparklio-provider")
            .is_some_and(|p| p == "ollama_lab")
        {
            assert_eq!(status, 200, "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never routed to the lab: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lab.requests().iter().any(|r| r["model"] == "phi4"));
    app.stop().await;
}

#[tokio::test]
async fn a_pull_already_running_is_joined_not_repeated() {
    let double = OllamaDouble::start().await;
    let app = desk(&providers(&double.base_url(), None)).await;
    // A slow download: the pull's body trickles.
    double
        .set_fault(
            Fault::Trickle {
                bytes: 40,
                interval_ms: 20,
            }
            .on("/api/pull"),
        )
        .await;
    let body = json!({"model": "llama3.2:1b"});
    let (first, second) = tokio::join!(post(&app, "/api/pull", body.clone()), async {
        // The second asks once the first pull is running on Ollama (it then trickles on).
        assert!(
            double
                .got_request_to("/api/pull", Duration::from_secs(4))
                .await,
            "the first pull never reached Ollama"
        );
        post(&app, "/api/pull", body.clone()).await
    });
    assert_eq!(first.0, 200, "{}", first.2);
    assert_eq!(second.0, 200, "{}", second.2);
    assert_eq!(first.1["x-sparklio-pull"], "started");
    assert_eq!(second.1["x-sparklio-pull"], "joined");
    assert_eq!(
        first.1["x-sparklio-pull-id"],
        second.1["x-sparklio-pull-id"]
    );
    for (_, _, text) in [&first, &second] {
        let lines = ndjson(text);
        assert_eq!(lines.last().unwrap()["status"], "success", "{text}");
    }
    let first_lines = ndjson(&first.2);
    assert!(
        first_lines.iter().any(|l| l["completed"].is_u64()),
        "progress lines pass through"
    );
    let pulls = double
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/pull")
        .count();
    assert_eq!(pulls, 1, "one download for two requests");
    // Done: the next pull starts afresh, and `stream: false` answers once.
    double.clear_fault().await;
    let (status, headers, text) = post(
        &app,
        "/api/pull",
        json!({"model": "llama3.2:1b", "stream": false}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-sparklio-pull"], "started");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"status": "success"})
    );
    app.stop().await;
}

#[tokio::test]
async fn keys_and_fronts_decide_who_may_call_and_admin_routes_need_admin() {
    let double = OllamaDouble::start().await;
    let toml = format!(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"{GATEWAY}\"]\nadmin_keys = [\"{ADMIN}\"]\n\
         [[server.keys]]\nname = \"webui\"\nkey = \"sparklio-only-key-0123456789\"\nrole = \"gateway\"\nfronts = [\"sparklio\"]\n{}",
        providers(&double.base_url(), None)
    );
    let app = desk(&toml).await;
    let outside = TestApp::client_from("127.0.0.5");
    let chat = json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}], "stream": false});
    let send = |path: &str, key: Option<&str>, body: &Value| {
        let mut r = outside.post(app.url(path)).json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let r = send("/api/chat", None, &chat).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("Bearer"),
        "Ollama's shape: {v}"
    );
    let r = send("/api/chat", Some(GATEWAY), &chat).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = send("/api/chat", Some("sparklio-only-key-0123456789"), &chat)
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a key without the ollama front");
    let pull = json!({"model": "llama3.2:1b", "stream": false});
    let r = send("/api/pull", Some(GATEWAY), &pull).await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("admin"), "{v}");
    let r = send("/api/pull", Some(ADMIN), &pull).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = outside
        .delete(app.url("/api/delete"))
        .bearer_auth(GATEWAY)
        .json(&json!({"model": "llama3.2:1b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_provider_that_is_down_or_wedged_answers_fast_in_ollamas_shape() {
    let port = free_port();
    let app = desk(&providers(&format!("http://127.0.0.1:{port}"), None)).await;
    let started = Instant::now();
    let (status, _, text) = post(
        &app,
        "/api/chat",
        json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 503, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (status, tags) = app.get_json("/api/tags").await;
    assert_eq!(status, 503);
    assert!(tags["error"].is_string(), "{tags}");
    app.stop().await;

    // Hung after accept: bounded by the provider's first-byte limit, answered as a timeout.
    let double = OllamaDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 1\n",
        double.base_url()
    );
    let app = desk(&toml).await;
    double
        .set_fault(Fault::HangAfterAccept.on("/api/chat"))
        .await;
    let started = Instant::now();
    let (status, _, text) = post(
        &app,
        "/api/chat",
        json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}], "stream": false}),
    )
    .await;
    let took = started.elapsed();
    assert!(status == 504 || status == 503, "{status} {text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string());
    assert!(took < Duration::from_secs(4), "{took:?}");
    app.stop().await;
}

async fn front_rows(app: &TestApp) -> Vec<sparklio_core::store::UsageRow> {
    app.app
        .as_ref()
        .unwrap()
        .state
        .store
        .recent_usage(UsageQuery {
            limit: Some(50),
            kind: Some("llm".into()),
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.role.as_deref() == Some("front:ollama"))
        .collect()
}

/// An answer cut mid-line gets its error on a line of its own (glued to the partial
/// line, the `ollama` client raised a JSONDecodeError and lost the message); one that
/// ends cleanly before its `done` line is a failure too, not passed on as whole.
#[tokio::test]
async fn a_cut_or_unfinished_answer_ends_in_an_error_line_of_its_own() {
    let double = OllamaDouble::start().await;
    let app = desk(&providers(&double.base_url(), None)).await;
    let chat = json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}]});
    for (fault, says) in [
        (Fault::ResetMidStream, "dropped"),
        (Fault::Truncated, "before it was done"),
    ] {
        double.set_fault(fault.on("/api/chat")).await;
        let (status, _, text) = post(&app, "/api/chat", chat.clone()).await;
        assert_eq!(status, 200, "{text}");
        // Every line is JSON of its own (`ndjson` panics otherwise); the last says why.
        let lines = ndjson(&text);
        let last = lines.last().unwrap();
        assert!(
            last["error"].as_str().is_some_and(|e| e.contains(says)),
            "{text}"
        );
        assert!(lines.iter().all(|l| l["done"] != true), "{text}");
        double.clear_fault().await;
    }
    // A whole answer on one line longer than the meter reads (an unstreamed answer with
    // a long `context`) is not taken for an unfinished one.
    double.set(sparklio_testkit::ollama::Behaviour::Content(
        "x".repeat(300_000),
    ));
    let (status, _, text) = post(
        &app,
        "/api/chat",
        json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}], "stream": false}),
    )
    .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let whole: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(whole["done"], true);
    assert_eq!(whole["message"]["content"].as_str().unwrap().len(), 300_000);
    double.set(sparklio_testkit::ollama::Behaviour::Normal);
    // The unfinished answer's usage row says it failed.
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = front_rows(&app).await;
        if rows.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rows.iter().filter(|r| r.status == 502).count() >= 2,
        "{rows:?}"
    );
    app.stop().await;
}

/// Model lists and the version never wait behind generations (they took one of the
/// instance's generation slots: with every slot streaming, `ollama.list()` got 503 and
/// Open WebUI's model picker broke); an unstreamed generation, which Ollama answers
/// whole when done, gets the whole `timeout_s`, not the first-byte limit.
#[tokio::test]
async fn lists_never_wait_for_generations_and_an_unstreamed_answer_gets_the_whole_timeout() {
    use sparklio_testkit::ollama::Behaviour;
    let double = OllamaDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 5\n\
         control_timeout_ms = 500\nfirst_byte_timeout_s = 1\n\
         [llm.providers.ollama.resilience]\nmax_concurrent = 1\nmax_queue = 4\n",
        double.base_url()
    );
    let app = desk(&toml).await;
    double.set(Behaviour::Slow(2000));
    // One unstreamed generation holds the only slot for 2 s (twice the first-byte limit).
    let body = json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}], "stream": false});
    let generating = {
        let client = app.client.clone();
        let url = app.url("/api/chat");
        tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    assert!(
        double
            .got_request_to("/api/chat", Duration::from_secs(3))
            .await
    );
    for path in ["/api/tags", "/api/ps", "/api/version"] {
        let started = Instant::now();
        let (status, v) = app.get_json(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{path} waited {:?} for the generation's slot",
            started.elapsed()
        );
    }
    let (status, text) = generating.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["done"], true);
    double.set(Behaviour::Normal);
    app.stop().await;
}

#[tokio::test]
async fn an_extra_listener_serves_only_ollamas_api_at_its_own_paths() {
    let double = OllamaDouble::start().await;
    let port = free_port();
    let toml = format!(
        "[fronts.ollama]\nbind = \"127.0.0.1:{port}\"\n{}",
        providers(&double.base_url(), None)
    );
    let app = desk(&toml).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let tags: Value = client
        .get(format!("{base}/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tags["models"].as_array().unwrap().len() >= 2, "{tags}");
    let r = client
        .post(format!("{base}/api/chat"))
        .json(&json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "포트"}], "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]["content"].as_str().unwrap().contains("포트"));
    // Nothing else is reachable there: not the Sparklio API, not the dashboard.
    for path in ["/api/v1/status", "/", "/v1/models", "/metrics"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].is_string(),
            "Ollama's error shape on {path}: {v}"
        );
    }
    app.stop().await;
}
