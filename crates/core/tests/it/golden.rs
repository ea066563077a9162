//! Golden answers for every route: the same requests must give the same JSON (ids,
//! times, ports and measured figures masked) before and after a refactor.
//!
//! `UPDATE_GOLDEN=1 cargo test -p sparklio-desk-core --test it golden::` rewrites the files
//! in `tests/golden/`; without it a difference fails with both versions printed.

use serde_json::{json, Map, Value};
use sparklio_testkit::TestApp;
use std::collections::BTreeMap;
use std::time::Duration;

/// Keys whose values change from run to run.
const VOLATILE_KEYS: &[&str] = &[
    "request_id",
    "job_id",
    "id",
    "ts",
    "timestamp",
    "created_at",
    "updated_at",
    "since",
    "at",
    "started_at",
    "finished_at",
    "uptime_s",
    "pid",
    "client_id",
    "upstream_id",
    "prompt_id",
    "sha256",
    "key_id",
    "client",
    "bytes",
    "seq",
    "generation_time",
    "generation_time_s",
    "estimated_cost_usd",
    "requests_per_minute",
    "data_dir",
    "db",
    "file",
    "image_id",
    "url",
    "status_url",
    "data",
    "version",
    "cpu_percent",
    "memory_bytes",
    "rss_bytes",
    "processes",
    "model_info",
    "elapsed_ms",
    "duration_ms",
    "seed",
    "port",
];

const SAMPLED_KEYS: &[&str] = &[
    "cpu_percent",
    "memory_bytes",
    "processes",
    // Counted by background probes as well as requests.
    "calls",
    "failures",
];

/// Object keys whose whole value is machine-dependent (only the shape is kept).
const SHAPE_ONLY_KEYS: &[&str] = &["system", "cpu", "memory", "disk", "gpu", "history", "steps"];

struct Masker {
    tmp: String,
}

impl Masker {
    fn string(&self, s: &str) -> String {
        // The default config's ComfyUI (nobody listens): which of its two "unreachable"
        // wordings a read gets depends on whether its breaker has opened yet (3 probes at
        // 2 s), i.e. on how loaded the machine running the tests is.
        if (s.starts_with("ComfyUI at ") && s.contains(" is not reachable"))
            || s == "no instance of comfyui answers (breaker open)"
        {
            return "<comfyui unreachable>".into();
        }
        let mut s = s.replace(&self.tmp, "<tmp>");
        // Media file ids carry the day they were made (img_20261129_…): not a shape.
        while let Some(i) = s.find("img_2") {
            let date = &s[i + 4..];
            if date.len() > 9
                && date.as_bytes()[..8].iter().all(u8::is_ascii_digit)
                && date.as_bytes()[8] == b'_'
            {
                s.replace_range(i + 4..i + 12, "<date>");
            } else {
                break;
            }
        }
        // 127.0.0.1:PORT and [::1]:PORT
        for host in ["127.0.0.1:", "localhost:"] {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find(host) {
                out.push_str(&rest[..i + host.len()]);
                rest = &rest[i + host.len()..];
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    out.push_str("<port>");
                    rest = &rest[digits..];
                }
            }
            out.push_str(rest);
            s = out;
        }
        // Runs of 12+ hex digits (uuids, hashes, job ids).
        let mut out = String::new();
        let mut run = String::new();
        for c in s.chars() {
            if c.is_ascii_hexdigit() {
                run.push(c);
            } else {
                flush_hex(&mut out, &mut run);
                out.push(c);
            }
        }
        flush_hex(&mut out, &mut run);
        // File ids carry the day they were made (`img_20261129_<hex>`).
        let mut masked = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find("img_") {
            let after = &rest[i + 4..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            masked.push_str(&rest[..i + 4]);
            if digits == 8 && after[8..].starts_with('_') {
                masked.push_str("<date>");
                rest = &after[8..];
            } else {
                rest = after;
            }
        }
        masked.push_str(rest);
        masked
    }

    fn value(&self, key: &str, v: &Value) -> Value {
        // Sampled figures may not exist yet on a first read: masked even when null.
        if SAMPLED_KEYS.contains(&key) {
            return json!("<sampled>");
        }
        if VOLATILE_KEYS.contains(&key) && !v.is_null() {
            return json!("<masked>");
        }
        if SHAPE_ONLY_KEYS.contains(&key) {
            return shape(v);
        }
        if (key.ends_with("_ms") || key.ends_with("_s") || key.ends_with("_at")) && v.is_number() {
            return json!("<number>");
        }
        match v {
            // Reasons carry measured times ("passed 0.1 s after start").
            Value::String(s) if key == "reason" || key == "line" => Value::String(
                self.string(s)
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect(),
            ),
            Value::String(s) => Value::String(self.string(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(key, x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.value(k, x)))
                    .collect::<Map<_, _>>(),
            ),
            other => other.clone(),
        }
    }
}

fn flush_hex(out: &mut String, run: &mut String) {
    if run.len() >= 12 {
        out.push_str("<hex>");
    } else if run.len() == 8 && run.starts_with("20") && run.bytes().all(|b| b.is_ascii_digit()) {
        // A date in an id (`img_20261129_…`): the golden file must not expire at midnight.
        out.push_str("<date>");
    } else {
        out.push_str(run);
    }
    run.clear();
}

fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), shape(x))).collect()),
    }
}

/// One recorded exchange.
async fn exchange(
    app: &TestApp,
    m: &Masker,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (Value, Value) {
    let url = app.url(path);
    let req = match method {
        "GET" => app.client.get(&url),
        "POST" => app.client.post(&url),
        "DELETE" => app.client.delete(&url),
        "PUT" => app.client.put(&url),
        _ => unreachable!(),
    };
    let req = match &body {
        Some(Value::String(raw)) => req
            .header("content-type", "application/json")
            .body(raw.clone()),
        Some(b) => req.json(b),
        None => req,
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.unwrap();
    let raw: Value = if ct.starts_with("application/json") {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    } else if ct.starts_with("text/plain") && path == "/metrics" {
        // The metric families, not their values.
        let text = String::from_utf8_lossy(&bytes);
        Value::Array(
            text.lines()
                .filter(|l| l.starts_with("# TYPE") || l.starts_with("# HELP"))
                .map(|l| Value::String(l.to_string()))
                .collect(),
        )
    } else {
        json!({"content_type": ct, "bytes": !bytes.is_empty()})
    };
    let masked = json!({
        "request": {"method": method, "path": m.string(path), "body": body},
        "status": status,
        "body": m.value("", &raw),
    });
    (masked, raw)
}

struct Recorder {
    name: &'static str,
    entries: BTreeMap<String, Value>,
    n: usize,
}

impl Recorder {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            entries: BTreeMap::new(),
            n: 0,
        }
    }

    async fn call(
        &mut self,
        app: &TestApp,
        m: &Masker,
        label: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (mut masked, raw) = exchange(app, m, method, path, body).await;
        if label == "system" {
            masked["body"] = shape(&raw);
        }
        // An async job may already have ended when the 202 is written (the mock draws at once).
        if label == "media async" {
            for key in ["status", "queue_position"] {
                if masked["body"].get(key).is_some() {
                    masked["body"][key] = json!("<racy>");
                }
            }
        }
        self.n += 1;
        self.entries
            .insert(format!("{:03} {label}", self.n), masked);
        raw
    }

    fn check(self) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let file = dir.join(format!("{}.json", self.name));
        let got = serde_json::to_string_pretty(&self.entries).unwrap() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() || !file.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&file).unwrap();
        if want != got {
            let want_v: BTreeMap<String, Value> = serde_json::from_str(&want).unwrap();
            for (k, v) in &self.entries {
                if want_v.get(k) != Some(v) {
                    eprintln!(
                        "== {k}\n-- golden:\n{}\n-- now:\n{}",
                        serde_json::to_string_pretty(&want_v.get(k)).unwrap(),
                        serde_json::to_string_pretty(v).unwrap()
                    );
                }
            }
            panic!(
                "{} differs from its golden file (UPDATE_GOLDEN=1 to accept)",
                file.display()
            );
        }
    }
}

fn masker(app: &TestApp) -> Masker {
    Masker {
        tmp: app.dir.path().display().to_string(),
    }
}

async fn wait_flow(app: &TestApp, id: &str) {
    for _ in 0..400 {
        let (_, v) = app.get_json(&format!("/api/v1/flows/jobs/{id}")).await;
        if matches!(v["status"].as_str(), Some("succeeded" | "failed")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("flow {id} did not finish");
}

async fn wait_media(app: &TestApp, id: &str) {
    for _ in 0..400 {
        let (_, v) = app.get_json(&format!("/api/v1/media/jobs/{id}")).await;
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("media job {id} did not finish");
}

#[tokio::test]
async fn mock_mode_routes() {
    let app = TestApp::start_with("", &[("GENERATOR_MODE", "mock")], Default::default()).await;
    let m = masker(&app);
    let mut r = Recorder::new("mock_mode");
    r.call(&app, &m, "healthz", "GET", "/healthz", None).await;
    r.call(&app, &m, "status", "GET", "/api/v1/status", None)
        .await;
    r.call(&app, &m, "config", "GET", "/api/v1/config", None)
        .await;
    r.call(&app, &m, "runtime", "GET", "/api/v1/runtime", None)
        .await;
    r.call(
        &app,
        &m,
        "runtime set",
        "POST",
        "/api/v1/runtime",
        Some(json!({"generator_mode": "mock", "paused": false})),
    )
    .await;
    r.call(
        &app,
        &m,
        "runtime bad",
        "POST",
        "/api/v1/runtime",
        Some(json!({"generator_mode": "bogus"})),
    )
    .await;
    let brief = json!({"role": "brief", "task": "marketing_brief", "mode": "json",
        "payload": {"product": "프로틴플러스 초코맛", "target": "20-30대 직장인"}, "request_id": "g-1"});
    r.call(
        &app,
        &m,
        "llm json",
        "POST",
        "/api/v1/llm/generate",
        Some(brief.clone()),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm json doubled prefix",
        "POST",
        "/api/v1/llm/llm/generate",
        Some(brief),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm text",
        "POST",
        "/api/v1/llm/generate",
        Some(
            json!({"role": "copywriter", "task": "product_detail", "mode": "text",
        "input": {"product": "무선 이어폰"}, "request_id": "g-2"}),
        ),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm missing role",
        "POST",
        "/api/v1/llm/generate",
        Some(json!({"task": "x"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm bad json",
        "POST",
        "/api/v1/llm/generate",
        Some(json!("{not json")),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm bad option",
        "POST",
        "/api/v1/llm/generate",
        Some(
            json!({"role": "brief", "task": "marketing_brief", "options": {"temperature": "hot"}}),
        ),
    )
    .await;
    r.call(&app, &m, "llm unknown provider", "POST", "/api/v1/llm/generate", Some(json!({"role": "brief", "task": "marketing_brief", "payload": {}, "options": {"provider": "nope"}}))).await;
    r.call(&app, &m, "llm health", "GET", "/api/v1/llm/health", None)
        .await;
    r.call(&app, &m, "llm models", "GET", "/api/v1/llm/models", None)
        .await;
    r.call(
        &app,
        &m,
        "llm router info",
        "GET",
        "/api/v1/llm/router/info",
        None,
    )
    .await;
    r.call(&app, &m, "llm schemas", "GET", "/api/v1/llm/schemas", None)
        .await;
    r.call(
        &app,
        &m,
        "llm health doubled",
        "GET",
        "/api/v1/llm/llm/health",
        None,
    )
    .await;

    let img = r
        .call(&app, &m, "media design shape", "POST", "/api/v1/media/image/generate",
            Some(json!({"kind": "product_shot", "prompt": "a chocolate protein shake", "options": {"width": 64, "height": 48, "seed": 7}})))
        .await;
    r.call(&app, &m, "media code shape", "POST", "/api/v1/media/generate",
        Some(json!({"prompt": "logo", "task": "brand_logo", "media_type": "image", "options": {"width": 32, "height": 32, "seed": 3, "return": "base64"}}))).await;
    r.call(
        &app,
        &m,
        "media bad ratio",
        "POST",
        "/api/v1/media/image/generate",
        Some(json!({"prompt": "x", "options": {"aspect_ratio": "wide"}})),
    )
    .await;
    r.call(
        &app,
        &m,
        "media video",
        "POST",
        "/api/v1/media/generate",
        Some(json!({"prompt": "x", "media_type": "video"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "media bad kind",
        "POST",
        "/api/v1/media/image/generate",
        Some(json!({"prompt": "x", "kind": "nope"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "media paused-free missing prompt",
        "POST",
        "/api/v1/media/image/generate",
        Some(json!({"kind": "hero"})),
    )
    .await;
    let file_id = img["images"][0]["id"].as_str().unwrap().to_string();
    r.call(
        &app,
        &m,
        "media file",
        "GET",
        &format!("/api/v1/media/files/{file_id}"),
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "media file missing",
        "GET",
        "/api/v1/media/files/0123456789abcdef0123456789abcdef",
        None,
    )
    .await;
    let job = r
        .call(&app, &m, "media async", "POST", "/api/v1/media/image/generate",
            Some(json!({"kind": "thumbnail", "prompt": "sns", "async": true, "options": {"width": 40, "height": 24, "seed": 5}})))
        .await;
    let job_id = job["job_id"].as_str().unwrap().to_string();
    wait_media(&app, &job_id).await;
    r.call(
        &app,
        &m,
        "media job",
        "GET",
        &format!("/api/v1/media/jobs/{job_id}"),
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "media job cancel after end",
        "DELETE",
        &format!("/api/v1/media/jobs/{job_id}"),
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "media job missing",
        "GET",
        "/api/v1/media/jobs/job_nope",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "media health",
        "GET",
        "/api/v1/media/health",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "media models",
        "GET",
        "/api/v1/media/models",
        None,
    )
    .await;

    let flow = r
        .call(
            &app,
            &m,
            "flow start",
            "POST",
            "/api/v1/flows/product-detail",
            Some(json!({})),
        )
        .await;
    let flow_id = flow["job_id"]
        .as_str()
        .or(flow["id"].as_str())
        .unwrap()
        .to_string();
    wait_flow(&app, &flow_id).await;
    r.call(
        &app,
        &m,
        "flow job",
        "GET",
        &format!("/api/v1/flows/jobs/{flow_id}"),
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "flow missing",
        "GET",
        "/api/v1/flows/jobs/nope",
        None,
    )
    .await;
    r.call(&app, &m, "flow list", "GET", "/api/v1/flows/jobs", None)
        .await;
    r.call(
        &app,
        &m,
        "flow bad body",
        "POST",
        "/api/v1/flows/product-detail",
        Some(json!({"input": 5})),
    )
    .await;

    r.call(&app, &m, "usage", "GET", "/api/v1/usage?limit=3", None)
        .await;
    r.call(
        &app,
        &m,
        "usage summary",
        "GET",
        "/api/v1/usage/summary",
        None,
    )
    .await;
    r.call(&app, &m, "events", "GET", "/api/v1/events", None)
        .await;
    r.call(&app, &m, "system", "GET", "/api/v1/system", None)
        .await;
    r.call(&app, &m, "models", "GET", "/api/v1/models", None)
        .await;
    r.call(&app, &m, "services", "GET", "/api/v1/services", None)
        .await;
    r.call(
        &app,
        &m,
        "service missing",
        "GET",
        "/api/v1/services/nope",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "service action missing",
        "POST",
        "/api/v1/services/nope/restart",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "service bad action",
        "POST",
        "/api/v1/services/nope/dance",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "restart all",
        "POST",
        "/api/v1/services/restart-all",
        None,
    )
    .await;
    r.call(&app, &m, "metrics", "GET", "/metrics", None).await;
    r.call(&app, &m, "no route", "GET", "/nope", None).await;
    r.call(&app, &m, "wrong method", "PUT", "/healthz", None)
        .await;
    r.call(
        &app,
        &m,
        "pause",
        "POST",
        "/api/v1/runtime",
        Some(json!({"paused": true})),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm paused",
        "POST",
        "/api/v1/llm/generate",
        Some(json!({"role": "brief", "task": "marketing_brief", "payload": {}})),
    )
    .await;
    r.call(
        &app,
        &m,
        "media paused",
        "POST",
        "/api/v1/media/image/generate",
        Some(json!({"prompt": "x", "options": {"width": 16, "height": 16}})),
    )
    .await;
    r.check();
    app.stop().await;
}

#[tokio::test]
async fn live_mode_routes() {
    let ollama = sparklio_testkit::OllamaDouble::start().await;
    let comfy = sparklio_testkit::ComfyDouble::start().await;
    let service = sparklio_testkit::test_service();
    let port = sparklio_testkit::free_port();
    let toml = format!(
        r#"
[llm.providers.ollama]
kind = "ollama"
base_url = "{ollama}"
[llm.providers.ollama_down]
kind = "ollama"
base_url = "http://127.0.0.1:9"
default_model = "qwen2.5:7b"
[media.providers.comfyui]
kind = "comfyui"
base_url = "{comfy}"
timeout_s = 20
poll_interval_ms = 50
checkpoint = "sd_xl_base_1.0.safetensors"
[[services]]
name = "svc"
kind = "process"
command = {service:?}
args = ["--port", "{port}"]
port = {port}
provides = ["ollama_down"]
health = {{ url = "http://127.0.0.1:{port}/health", interval_ms = 200, timeout_ms = 500, failures = 2 }}
"#,
        ollama = ollama.base_url(),
        comfy = comfy.url(),
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let m = masker(&app);
    for _ in 0..400 {
        let (_, v) = app.get_json("/api/v1/services/svc").await;
        if v["state"] == "running" || v["status"]["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut r = Recorder::new("live_mode");
    r.call(
        &app,
        &m,
        "llm json",
        "POST",
        "/api/v1/llm/generate",
        Some(json!({"role": "brief", "task": "marketing_brief",
        "payload": {"product": "프로틴플러스"}, "request_id": "l-1"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm text",
        "POST",
        "/api/v1/llm/generate",
        Some(json!({"role": "copywriter", "task": "sns", "mode": "text",
        "payload": {"product": "프로틴플러스"}, "request_id": "l-2"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm model missing",
        "POST",
        "/api/v1/llm/generate",
        Some(json!({"role": "brief", "task": "marketing_brief",
        "payload": {}, "options": {"model": "nope:1b"}, "request_id": "l-3"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "llm provider refused",
        "POST",
        "/api/v1/llm/generate",
        Some(json!({"role": "brief", "task": "marketing_brief",
        "payload": {}, "options": {"provider": "ollama_down"}, "request_id": "l-4"})),
    )
    .await;
    r.call(&app, &m, "llm health", "GET", "/api/v1/llm/health", None)
        .await;
    r.call(&app, &m, "llm models", "GET", "/api/v1/llm/models", None)
        .await;
    r.call(&app, &m, "models", "GET", "/api/v1/models", None)
        .await;
    r.call(&app, &m, "media diagnostic", "POST", "/api/v1/media/image/generate",
        Some(json!({"kind": "product_shot", "prompt": "x", "options": {"workflow": "diagnostic", "width": 64, "height": 64, "seed": 7}}))).await;
    r.call(&app, &m, "media missing checkpoint", "POST", "/api/v1/media/image/generate",
        Some(json!({"kind": "product_shot", "prompt": "x", "options": {"checkpoint": "nope.safetensors", "width": 64, "height": 64, "seed": 7}}))).await;
    r.call(
        &app,
        &m,
        "media unknown workflow",
        "POST",
        "/api/v1/media/image/generate",
        Some(json!({"prompt": "x", "options": {"workflow": "nope"}})),
    )
    .await;
    r.call(
        &app,
        &m,
        "media unknown provider",
        "POST",
        "/api/v1/media/image/generate",
        Some(json!({"prompt": "x", "provider": "nope"})),
    )
    .await;
    r.call(
        &app,
        &m,
        "media health",
        "GET",
        "/api/v1/media/health",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "media models",
        "GET",
        "/api/v1/media/models",
        None,
    )
    .await;
    r.call(&app, &m, "services", "GET", "/api/v1/services", None)
        .await;
    r.call(&app, &m, "service", "GET", "/api/v1/services/svc", None)
        .await;
    r.call(
        &app,
        &m,
        "service logs",
        "GET",
        "/api/v1/services/svc/logs?tail=1",
        None,
    )
    .await;
    r.call(
        &app,
        &m,
        "usage",
        "GET",
        "/api/v1/usage?limit=4&kind=llm",
        None,
    )
    .await;
    r.check();
    app.stop().await;
}
