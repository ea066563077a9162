//! The ComfyUI front (`/comfyui/*`): ComfyUI's own API through the Desk, in front of the
//! ComfyUI double — prompt, socket, history, files, the shared queue, uploads, rights,
//! fail-fast and bounded waits.

use futures::StreamExt;
use serde_json::{json, Value};
use sparklio_testkit::comfyui::ComfyDouble;
use sparklio_testkit::{Fault, TestApp};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CHECKPOINT: &str = "sd_xl_base_1.0.safetensors";
const GATEWAY: &str = "front-gateway-key-0123456789";
const GATEWAY2: &str = "front-gateway-key-abcdefghij";
const ADMIN: &str = "front-admin-key-0123456789ab";
const OLLAMA_ONLY: &str = "front-ollama-only-key-012345";
const LIMITED: &str = "front-limited-key-0123456789";

fn provider_toml(url: &str, extra: &str) -> String {
    format!(
        "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{url}\"\ntimeout_s = 20\npoll_interval_ms = 50\ncheckpoint = \"{CHECKPOINT}\"\n{extra}"
    )
}

async fn start(toml: &str) -> TestApp {
    TestApp::start_with(toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

async fn app_for(double: &ComfyDouble) -> TestApp {
    start(&provider_toml(&double.url(), "")).await
}

/// Loopback trusted only as 127.0.0.1 (127.0.0.5 is an outside client), with keys.
fn locked_down(double_url: &str) -> String {
    format!(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"{GATEWAY}\", \"{GATEWAY2}\"]\nadmin_keys = [\"{ADMIN}\"]\n\
         [[server.keys]]\nname = \"webui\"\nkey = \"{OLLAMA_ONLY}\"\nrole = \"gateway\"\nfronts = [\"ollama\"]\n\
         [[server.keys]]\nname = \"script\"\nkey = \"{LIMITED}\"\nrole = \"gateway\"\nfronts = [\"comfyui\"]\nrate_per_min = 2\n{}",
        provider_toml(double_url, "")
    )
}

/// A text-to-image graph in ComfyUI's API format (the KSampler reports progress).
fn graph(steps: u32, prefix: &str) -> Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red chair", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
              "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}}
    })
}

fn ws_url(app: &TestApp, path: &str) -> String {
    format!("ws://{}{}", app.addr, path)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// JSON messages of the socket until `executing {node: null}` for `prompt_id` (bounded).
async fn read_until_done(ws: &mut Ws, prompt_id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket stays open")
            .expect("a good frame");
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        let done = v["type"] == "executing"
            && v["data"]["node"].is_null()
            && v["data"]["prompt_id"] == prompt_id;
        seen.push(v);
        if done {
            return seen;
        }
    }
    panic!("no end message for {prompt_id}: {seen:?}");
}

async fn usage_rows(app: &TestApp) -> Vec<Value> {
    let (s, v) = app.get_json("/api/v1/usage?limit=200").await;
    assert_eq!(s, 200, "{v}");
    v["requests"].as_array().unwrap().clone()
}

#[tokio::test]
async fn prompt_socket_history_and_view_through_the_front() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    double.node_ms(40);
    let app = app_for(&double).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(&app, "/comfyui/ws?clientId=front-test-1"))
            .await
            .expect("the front upgrades /ws");
    // ComfyUI greets with the queue status and the socket id it routes by.
    let hello = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
    assert_eq!(hello["type"], "status");
    assert_eq!(hello["data"]["sid"], "front-test-1");

    // A same-origin browser page may call without a key; its Origin never reaches
    // ComfyUI (which would answer 403 to a host that is not its own).
    let origin = format!("http://{}", app.addr);
    let r = app
        .client
        .post(app.url("/comfyui/prompt"))
        .header("origin", &origin)
        .json(&json!({"prompt": graph(4, "front"), "client_id": "front-test-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let queued: Value = r.json().await.unwrap();
    let prompt_id = queued["prompt_id"].as_str().unwrap().to_string();
    assert!(queued["number"].is_number(), "{queued}");
    assert!(queued["node_errors"].as_object().unwrap().is_empty());

    let seen = read_until_done(&mut ws, &prompt_id).await;
    let types: Vec<&str> = seen.iter().filter_map(|m| m["type"].as_str()).collect();
    for t in ["execution_start", "executing", "progress", "executed"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let steps: Vec<u64> = seen
        .iter()
        .filter(|m| m["type"] == "progress")
        .map(|m| m["data"]["value"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4], "every sampler step, in order");
    assert!(
        double.inner.origins.lock().unwrap().is_empty(),
        "no Origin forwarded"
    );

    // History, through both prefixes ComfyUI serves.
    let (s, h) = app.get_json(&format!("/comfyui/history/{prompt_id}")).await;
    assert_eq!(s, 200, "{h}");
    let (s2, h2) = app
        .get_json(&format!("/comfyui/api/history/{prompt_id}"))
        .await;
    assert_eq!((s2, &h2), (200, &h));
    let entry = &h[&prompt_id];
    assert_eq!(entry["status"]["status_str"], "success");
    let image = &entry["outputs"]["9"]["images"][0];
    let filename = image["filename"].as_str().unwrap();
    assert!(filename.starts_with("front"), "{filename}");

    // The file, byte for byte as ComfyUI stored it.
    let r = app
        .client
        .get(app.url("/comfyui/view"))
        .query(&[
            ("filename", filename),
            ("subfolder", ""),
            ("type", "output"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let bytes = r.bytes().await.unwrap();
    let stored = double.output_file(filename).unwrap();
    assert_eq!(bytes.as_ref(), stored.as_slice());

    // ComfyUI's own 404 for a missing file, in its error shape.
    let r = app
        .client
        .get(app.url("/comfyui/view?filename=missing.png&type=output"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("404"),
        "{v}"
    );
    assert!(v["node_errors"].is_object());

    // A 400 from ComfyUI (its node_errors) passes through unchanged.
    let mut bad = graph(2, "x");
    bad["4"]["inputs"]["ckpt_name"] = json!("nope.safetensors");
    let (s, v) = app
        .post_json("/comfyui/prompt", &json!({"prompt": bad}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["node_errors"]["4"]["errors"][0]["type"],
        "value_not_in_list"
    );

    // Other read routes answer what ComfyUI answers.
    let (s, stats) = app.get_json("/comfyui/system_stats").await;
    assert_eq!(s, 200);
    assert!(stats["system"]["comfyui_version"].is_string(), "{stats}");
    let (s, ckpts) = app.get_json("/comfyui/models/checkpoints").await;
    assert_eq!((s, ckpts), (200, json!([CHECKPOINT])));
    let (s, info) = app.get_json("/comfyui/object_info/KSampler").await;
    assert_eq!(s, 200);
    assert!(info["KSampler"]["input"]["required"]["steps"].is_array());
    let (s, emb) = app.get_json("/comfyui/api/embeddings").await;
    assert_eq!((s, emb), (200, json!([])));
    let (s, ext) = app.get_json("/comfyui/extensions").await;
    assert_eq!(s, 200);
    assert!(
        ext[0].as_str().unwrap().starts_with("/extensions/"),
        "{ext}"
    );
    // ComfyUI's own web UI is not served.
    let r = app.client.get(app.url("/comfyui/")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Usage rows and metrics by front and endpoint.
    let rows = usage_rows(&app).await;
    let prompt_row = rows
        .iter()
        .find(|r| r["role"] == "front:comfyui" && r["task"] == "prompt" && r["status"] == 200)
        .unwrap_or_else(|| panic!("a prompt row in {rows:?}"));
    assert_eq!(prompt_row["kind"], "front");
    assert_eq!(prompt_row["provider"], "comfyui");
    assert!(prompt_row["request_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(prompt_row["latency_ms"].as_f64().unwrap() >= 0.0);
    for task in ["view", "history", "system_stats"] {
        assert!(
            rows.iter()
                .any(|r| r["role"] == "front:comfyui" && r["task"] == task),
            "{task} row"
        );
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"front_requests_total{front="comfyui",endpoint="prompt",status="2xx"} 1"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"front_requests_total{front="comfyui",endpoint="prompt",status="4xx"} 1"#));

    // Closing the client's socket closes the upstream one; the socket gets its usage row.
    ws.close(None).await.unwrap();
    let mut closed = false;
    for _ in 0..400 {
        if usage_rows(&app).await.iter().any(|r| {
            r["role"] == "front:comfyui"
                && r["task"] == "ws"
                && r["status"] == 101
                && r["request_id"].as_str().is_some_and(|id| !id.is_empty())
        }) {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the closed socket was recorded");
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_close_closes_the_clients_socket() {
    let double = ComfyDouble::start().await;
    let app = app_for(&double).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&app, "/comfyui/api/ws?clientId=c2"))
        .await
        .unwrap();
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"sid\":\"c2\""));
    // ComfyUI restarts: its sockets drop; ours must end too, not hang.
    double.restart(Duration::from_millis(200)).await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the client's socket closed when ComfyUI's did");
    app.stop().await;
}

#[tokio::test]
async fn outside_prompts_share_the_queue_and_the_desk_counts_them() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    double.node_ms(20);
    let app = app_for(&double).await;
    // ComfyUI busy with nothing yet holds every prompt in its queue.
    double.inner.knobs.hold.store(true, Ordering::SeqCst);
    let (s, v) = app
        .post_json(
            "/comfyui/prompt",
            &json!({"prompt": graph(2, "outside"), "client_id": "someone"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let outside = v["prompt_id"].as_str().unwrap().to_string();

    // The Desk's own job waits behind it: place 2 in ComfyUI's one queue.
    let job = desk_job(&app).await;
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let (_, view) = app.get_json(&format!("/api/v1/media/jobs/{job_id}")).await;
    assert_eq!(view["queue_position"], 2, "{view}");

    // ComfyUI's queue through the front shows both.
    let (s, q) = app.get_json("/comfyui/queue").await;
    assert_eq!(s, 200);
    let pending: Vec<&str> = q["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[1].as_str().unwrap())
        .collect();
    assert_eq!(pending.len(), 2, "{q}");
    assert_eq!(pending[0], outside);

    // The Media Gateway says whose each prompt is.
    let (s, h) = app.get_json("/api/v1/media/health").await;
    assert_eq!(s, 200);
    let iq = &h["comfyui_queue"]["instances"][0];
    assert_eq!(iq["instance"], "main", "{h}");
    assert_eq!(iq["pending_total"], 2);
    assert_eq!(iq["pending_outside"], 1);
    assert_eq!(iq["pending_desk"], 1);
    assert_eq!(iq["pending"][0]["owner"], "front");
    assert_eq!(iq["pending"][0]["who"], "127.0.0.1");
    assert_eq!(iq["pending"][1]["owner"], "desk");
    assert_eq!(iq["pending"][1]["job_id"], job_id.as_str());
    // The outside prompt is recorded with who sent it and its request id.
    let recent = &h["comfyui_queue"]["recent_outside"][0];
    assert_eq!(recent["prompt_id"], outside.as_str(), "{h}");
    assert_eq!(recent["who"]["client"], "127.0.0.1");
    assert_eq!(recent["instance"], "main");
    let rid = recent["request_id"].as_str().unwrap();
    assert!(usage_rows(&app)
        .await
        .iter()
        .any(|r| r["request_id"] == rid && r["task"] == "prompt"));

    // Running: the dashboard's snapshot names the outside prompt's sender.
    double.inner.knobs.hold.store(false, Ordering::SeqCst);
    double.node_ms(300);
    let mut named = false;
    for _ in 0..100 {
        let (_, h) = app.get_json("/api/v1/media/health").await;
        let run = &h["comfyui_queue"]["instances"][0]["running"][0];
        if run["prompt_id"] == outside.as_str() {
            assert_eq!(run["owner"], "front");
            assert_eq!(run["who"], "127.0.0.1");
            named = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(named, "the running outside prompt was named");
    let r = app
        .client
        .get(app.url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let mut text = String::new();
    for _ in 0..200 {
        if text.contains("\n\n") {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let event = text.split("\n\n").next().unwrap();
    let data: String = event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    let snap: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(snap["media_queue"]["provider"], "comfyui", "{snap}");
    let run = &snap["media_queue"]["instances"][0]["running"][0];
    assert_eq!(run["owner"], "front", "{snap}");
    drop(body);

    // The Desk's job still ends well, after the outside prompt.
    let mut done = Value::Null;
    for _ in 0..400 {
        let (_, v) = app.get_json(&format!("/api/v1/media/jobs/{job_id}")).await;
        if v["status"] == "succeeded" || v["status"] == "failed" {
            done = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(double.history_of(&outside).is_some());
    app.stop().await;
}

/// A multipart body by hand (one file field plus text fields).
fn multipart(boundary: &str, filename: &str, data: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
    );
    b.extend_from_slice(data);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

#[tokio::test]
async fn uploads_take_their_own_larger_limit() {
    let double = ComfyDouble::start().await;
    let app = start(&format!(
        "[server]\nmax_body_bytes = 65536\n[fronts.comfyui]\nmax_upload_bytes = 4194304\n{}",
        provider_toml(&double.url(), "")
    ))
    .await;
    // 1 MB: over max_body_bytes, under max_upload_bytes.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let boundary = "sparklioFrontBoundary7MA4YWxkTrZu0gW";
    let body = multipart(
        boundary,
        "ref.png",
        &data,
        &[("type", "input"), ("overwrite", "true")],
    );
    let r = app
        .client
        .post(app.url("/comfyui/upload/image"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"name": "ref.png", "subfolder": "", "type": "input"})
    );
    let r = app
        .client
        .get(app.url("/comfyui/api/view?filename=ref.png&type=input"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    // Over the upload limit: 413 in ComfyUI's shape, before the body is read.
    let big = vec![0u8; 5 * 1024 * 1024];
    let r = app
        .client
        .post(app.url("/comfyui/upload/image"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(multipart(boundary, "big.png", &big, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "payload_too_large", "{v}");
    // Other routes keep server.max_body_bytes.
    let r = app
        .client
        .post(app.url("/comfyui/prompt"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn keys_fronts_and_admin_rights_in_comfyuis_shape() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    let app = start(&locked_down(&double.url())).await;
    let lan = TestApp::client_from("127.0.0.5");
    let call = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let mut rb = lan.request(method, app.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb
    };
    let r = call(reqwest::Method::GET, "/comfyui/system_stats", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "unauthorized", "{v}");
    assert!(v["node_errors"].as_object().unwrap().is_empty());
    assert!(v["error"]["extra_info"].is_object());

    let r = call(
        reqwest::Method::GET,
        "/comfyui/system_stats",
        Some(OLLAMA_ONLY),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("comfyui"),
        "{v}"
    );

    let r = call(reqwest::Method::GET, "/comfyui/system_stats", Some(GATEWAY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // /free unloads everyone's models: admin only.
    let free = json!({"unload_models": true, "free_memory": true});
    let r = call(reqwest::Method::POST, "/comfyui/free", Some(GATEWAY))
        .json(&free)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "forbidden", "{v}");
    assert!(double.inner.frees.lock().unwrap().is_empty());
    let r = call(reqwest::Method::POST, "/comfyui/api/free", Some(ADMIN))
        .json(&free)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(double.inner.frees.lock().unwrap().as_slice(), &[free]);

    // Interrupting: the sender of the running prompt may, another gateway key may not.
    double.node_ms(3000);
    let r = call(reqwest::Method::POST, "/comfyui/prompt", Some(GATEWAY))
        .json(&json!({"prompt": graph(30, "mine")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mine: Value = r.json().await.unwrap();
    let mine = mine["prompt_id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if double.running_id().as_deref() == Some(mine.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(double.running_id().as_deref(), Some(mine.as_str()));
    let r = call(reqwest::Method::POST, "/comfyui/interrupt", Some(GATEWAY2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("admin"),
        "{v}"
    );
    assert_eq!(double.inner.interrupts.load(Ordering::SeqCst), 0);
    // Nor delete it from the queue or clear the history.
    let r = call(reqwest::Method::POST, "/comfyui/queue", Some(GATEWAY2))
        .json(&json!({"delete": [mine]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = call(reqwest::Method::POST, "/comfyui/history", Some(GATEWAY))
        .json(&json!({"clear": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = call(reqwest::Method::POST, "/comfyui/interrupt", Some(GATEWAY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(double.inner.interrupts.load(Ordering::SeqCst), 1);
    // The interrupt named the prompt checked, so no other one can be hit instead.
    let sent = double
        .request_log()
        .into_iter()
        .rev()
        .find(|r| r.path == "/interrupt")
        .unwrap();
    assert_eq!(sent.body["prompt_id"], mine.as_str());

    // A keyless cross-site page cannot open the socket of a trusted client either.
    let r = app
        .client
        .get(app.url("/comfyui/ws?clientId=x"))
        .header("origin", "http://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "cross_site_refused", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn a_down_comfyui_is_answered_at_once_in_its_shape() {
    // Nothing listens: refused at once, never waiting for the 5 s control timeout.
    let port = sparklio_testkit::free_port();
    let app = start(&provider_toml(
        &format!("http://127.0.0.1:{port}"),
        "control_timeout_ms = 5000\n",
    ))
    .await;
    for path in [
        "/comfyui/system_stats",
        "/comfyui/queue",
        "/comfyui/history/x",
    ] {
        let t = Instant::now();
        let r = app.client.get(app.url(path)).send().await.unwrap();
        let took = t.elapsed();
        assert_eq!(r.status(), 503, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "provider_unavailable", "{v}");
        assert!(v["node_errors"].is_object());
        assert!(took < Duration::from_secs(2), "{path} took {took:?}");
    }
    let t = Instant::now();
    let r = app
        .client
        .get(app.url("/comfyui/ws?clientId=a"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_secs(2));
    let rows = usage_rows(&app).await;
    assert!(rows.iter().any(|r| r["role"] == "front:comfyui"
        && r["status"] == 503
        && r["error_code"] == "PROVIDER_UNAVAILABLE"));
    app.stop().await;

    // The supervisor says ComfyUI is down: answered without a call.
    let double = ComfyDouble::start().await;
    let app = app_for(&double).await;
    double.faults().clear_requests();
    app.app
        .as_ref()
        .unwrap()
        .state
        .provider_board
        .mark_down("comfyui", "service comfyui is crashed (exit code 1)");
    let r = app
        .client
        .post(app.url("/comfyui/prompt"))
        .json(&json!({"prompt": graph(1, "x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("crashed"),
        "{v}"
    );
    assert!(
        double.request_log().iter().all(|r| r.path != "/prompt"),
        "no call reached ComfyUI"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hung_comfyui_is_bounded_then_failed_fast() {
    let double = ComfyDouble::start().await;
    let app = start(&provider_toml(
        &double.url(),
        "control_timeout_ms = 400\nconnect_timeout_ms = 300\n[media.providers.comfyui.resilience]\nprobe_interval_ms = 60000\n",
    ))
    .await;
    double.set_fault(Fault::HangBeforeHeaders).await;
    let t = Instant::now();
    let (s, v) = app.get_json("/comfyui/system_stats").await;
    let took = t.elapsed();
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["type"], "provider_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{v}"
    );
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A file transfer that stalls after its headers ends within the transfer limit.
    double.clear_fault().await;
    let (s, _) = app.get_json("/comfyui/system_stats").await;
    assert_eq!(s, 200);
    app.stop().await;

    let double = ComfyDouble::start().await;
    let app = start(&format!(
        "[fronts.comfyui]\ntransfer_timeout_s = 0.5\n{}",
        provider_toml(&double.url(), "")
    ))
    .await;
    double
        .set_fault(Fault::StallMidStream { after_chunks: 0 }.on("/object_info"))
        .await;
    let t = Instant::now();
    let r = app
        .client
        .get(app.url("/comfyui/object_info"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the headers came");
    let body = tokio::time::timeout(Duration::from_secs(5), r.bytes()).await;
    assert!(
        body.expect("bounded by transfer_timeout_s").is_err(),
        "the stalled body is cut"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    app.stop().await;
}

#[tokio::test]
async fn an_extra_listener_serves_comfyuis_paths_with_the_same_rules() {
    let double = ComfyDouble::start().await;
    let port = sparklio_testkit::free_port();
    let app = start(&format!(
        "{}\n[fronts.comfyui]\nbind = \"127.0.0.1:{port}\"\n",
        locked_down(&double.url())
    ))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let lan = TestApp::client_from("127.0.0.5");
    // The same keys: keyless from outside the trusted network is 401 in ComfyUI's shape.
    let r = lan
        .get(format!("{base}/system_stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "unauthorized", "{v}");
    let r = lan
        .get(format!("{base}/api/system_stats"))
        .bearer_auth(GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["system"]["comfyui_version"].is_string(), "{v}");
    let r = lan
        .post(format!("{base}/free"))
        .bearer_auth(GATEWAY)
        .json(&json!({"free_memory": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Only the front: neither the Desk's own API nor ComfyUI's web UI.
    for path in ["/api/v1/status", "/", "/comfyui/system_stats"] {
        let r = app
            .client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // The socket at ComfyUI's own path.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?clientId=plain"))
            .await
            .unwrap();
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"sid\":\"plain\""));
    ws.close(None).await.unwrap();
    // Usage rows as for /comfyui.
    let rows = usage_rows(&app).await;
    assert!(rows.iter().any(|r| r["role"] == "front:comfyui"
        && r["task"] == "system_stats"
        && r["status"] == 200
        && r["key_id"].is_string()));
    app.stop().await;
}

#[tokio::test]
async fn a_keys_rate_limit_applies_on_the_front() {
    let double = ComfyDouble::start().await;
    let app = start(&locked_down(&double.url())).await;
    let lan = TestApp::client_from("127.0.0.5");
    for _ in 0..2 {
        let r = lan
            .get(app.url("/comfyui/queue"))
            .bearer_auth(LIMITED)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = lan
        .get(app.url("/comfyui/queue"))
        .bearer_auth(LIMITED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limited", "{v}");
    assert!(v["node_errors"].is_object());
    // The key opens only this front.
    let r = lan
        .get(app.url("/api/v1/status"))
        .bearer_auth(LIMITED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

/// Wait (bounded) until the double has `n` sockets open.
async fn sockets_open(double: &ComfyDouble, n: i64) -> bool {
    for _ in 0..200 {
        if double.inner.open_sockets.load(Ordering::SeqCst) == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_client_close_closes_comfyuis_socket_and_sockets_are_bounded() {
    let double = ComfyDouble::start().await;
    let app = start(&format!(
        "[fronts.comfyui]\nmax_websockets = 1\n{}",
        provider_toml(&double.url(), "")
    ))
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&app, "/comfyui/ws?clientId=one"))
        .await
        .unwrap();
    let _ = ws.next().await.unwrap().unwrap();
    assert!(sockets_open(&double, 1).await, "ComfyUI's end is open");
    // A second socket is over max_websockets: 503 in ComfyUI's shape, nothing opened upstream.
    let r = app
        .client
        .get(app.url("/comfyui/ws?clientId=two"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded", "{v}");
    assert_eq!(double.inner.open_sockets.load(Ordering::SeqCst), 1);
    // The client goes: ComfyUI's socket closes too, and the slot is free again.
    ws.close(None).await.unwrap();
    assert!(
        sockets_open(&double, 0).await,
        "ComfyUI's end closed with the client's"
    );
    let (mut again, _) =
        tokio_tungstenite::connect_async(ws_url(&app, "/comfyui/ws?clientId=three"))
            .await
            .expect("the slot came back");
    let _ = again.next().await.unwrap().unwrap();
    again.close(None).await.unwrap();
    app.stop().await;
}

/// A JSON body sent as it is (for what serde would not write: `NaN`).
async fn post_raw(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, Value) {
    let r = client
        .post(app.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Queue a prompt as `key` from the LAN client.
async fn queue_as(lan: &reqwest::Client, app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    post_raw(lan, app, "/comfyui/prompt", key, &body.to_string()).await
}

/// A Desk media job (async, the diagnostic workflow): its 202 answer.
async fn desk_job(app: &TestApp) -> Value {
    let (s, job) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"kind": "product_shot", "prompt": "desk", "async": true,
                    "options": {"workflow": "diagnostic", "width": 64, "height": 64, "seed": 1}}),
        )
        .await;
    assert_eq!(s, 202, "{job}");
    job
}

#[tokio::test]
async fn any_clear_and_any_body_the_desk_cannot_read_are_refused_to_a_gateway_key() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    double.inner.knobs.hold.store(true, Ordering::SeqCst);
    let app = start(&locked_down(&double.url())).await;
    let lan = TestApp::client_from("127.0.0.5");
    let (s, v) = queue_as(&lan, &app, GATEWAY, &json!({"prompt": graph(2, "victim")})).await;
    assert_eq!(s, 200, "{v}");
    let victim = v["prompt_id"].as_str().unwrap().to_string();
    double.faults().clear_requests();

    // ComfyUI clears on any truthy `clear`: any `clear` at all takes an admin.
    for (path, body) in [
        ("/comfyui/queue", r#"{"clear": 1}"#),
        ("/comfyui/api/queue", r#"{"clear": "no"}"#),
        ("/comfyui/queue", r#"{"clear": false}"#),
        ("/comfyui/history", r#"{"clear": [0]}"#),
    ] {
        let (s, v) = post_raw(&lan, &app, path, GATEWAY2, body).await;
        assert_eq!(s, 403, "{path} {body}: {v}");
        assert_eq!(v["error"]["type"], "forbidden", "{v}");
        assert!(v["node_errors"].is_object());
    }
    // Python reads what serde does not: such a body is refused, never sent unchecked.
    for body in [
        format!(r#"{{"delete": ["{victim}"], "x": NaN}}"#),
        format!(r#"{{"delete": ["{victim}"], "x": -Infinity}}"#),
        format!(r#"{{"delete": {{"{victim}": 1}}}}"#),
        format!(r#"{{"delete": "{victim}"}}"#),
        format!(r#"[{{"delete": ["{victim}"]}}]"#),
    ] {
        let (s, v) = post_raw(&lan, &app, "/comfyui/queue", GATEWAY2, &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "validation_error", "{v}");
        assert!(v["node_errors"].is_object());
    }
    let (s, _) = post_raw(
        &lan,
        &app,
        "/comfyui/history",
        GATEWAY2,
        &format!(r#"{{"delete": ["{victim}"], "x": NaN}}"#),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        double
            .request_log()
            .iter()
            .all(|r| r.path != "/queue" && r.path != "/history"),
        "nothing reached ComfyUI"
    );
    assert_eq!(double.pending_ids(), std::slice::from_ref(&victim));

    // The same NaN body sent to ComfyUI itself deletes the prompt: what was at stake.
    let r = reqwest::Client::new()
        .post(format!("{}/queue", double.url()))
        .header("content-type", "application/json")
        .body(format!(r#"{{"delete": ["{victim}"], "x": NaN}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(double.pending_ids().is_empty());

    // The owner may still delete, and an admin may clear with any truthy value.
    let (s, v) = queue_as(&lan, &app, GATEWAY, &json!({"prompt": graph(2, "again")})).await;
    assert_eq!(s, 200, "{v}");
    let mine = v["prompt_id"].as_str().unwrap().to_string();
    let (s, v) = queue_as(&lan, &app, GATEWAY, &json!({"prompt": graph(2, "third")})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post_raw(
        &lan,
        &app,
        "/comfyui/queue",
        GATEWAY,
        &format!(r#"{{"delete": ["{mine}"]}}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(double.pending_ids().len(), 1);
    let (s, v) = post_raw(&lan, &app, "/comfyui/queue", ADMIN, r#"{"clear": 1}"#).await;
    assert_eq!(s, 200, "{v}");
    assert!(double.pending_ids().is_empty(), "cleared on a truthy 1");
    app.stop().await;
}

/// A prompt id the Desk never saw (queued on ComfyUI directly, or older than what the
/// Desk remembers) is someone's all the same: ComfyUI is asked, and an id it has,
/// queued or finished, is refused (the sender became that prompt's owner and could
/// delete or interrupt it). A fresh id still goes through.
#[tokio::test]
async fn a_prompt_id_comfyui_already_has_is_refused_though_the_desk_never_saw_it() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    double.inner.knobs.hold.store(true, Ordering::SeqCst);
    let app = start(&locked_down(&double.url())).await;
    let lan = TestApp::client_from("127.0.0.5");
    // Queued on ComfyUI itself, past the Desk.
    let direct = "0f0e0d0c-0000-4000-8000-00000000d1ec";
    let r = reqwest::Client::new()
        .post(format!("{}/prompt", double.url()))
        .json(&json!({"prompt": graph(2, "direct"), "prompt_id": direct}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let refused = |lan: &reqwest::Client| {
        let (lan, app) = (lan.clone(), &app);
        async move {
            queue_as(
                &lan,
                app,
                GATEWAY2,
                &json!({"prompt": graph(2, "thief"), "prompt_id": direct}),
            )
            .await
        }
    };
    let (s, v) = refused(&lan).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ComfyUI already has"),
        "{v}"
    );
    // Run and finished: in ComfyUI's history, still someone's.
    double.inner.knobs.hold.store(false, Ordering::SeqCst);
    for _ in 0..500 {
        if double.history_of(direct).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(double.history_of(direct).is_some(), "the direct prompt ran");
    let (s, v) = refused(&lan).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        double.received().len(),
        1,
        "no refused prompt reached ComfyUI"
    );
    // A fresh id of the caller's own is queued.
    let (s, v) = queue_as(
        &lan,
        &app,
        GATEWAY2,
        &json!({"prompt": graph(2, "mine"), "prompt_id": "0f0e0d0c-0000-4000-8000-000000000f5e"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn a_prompt_id_the_desk_knows_as_someone_elses_cannot_be_queued_again() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    double.inner.knobs.hold.store(true, Ordering::SeqCst);
    let app = start(&locked_down(&double.url())).await;
    let lan = TestApp::client_from("127.0.0.5");
    let (s, v) = queue_as(&lan, &app, GATEWAY, &json!({"prompt": graph(2, "victim")})).await;
    assert_eq!(s, 200, "{v}");
    let victim = v["prompt_id"].as_str().unwrap().to_string();
    // A Desk job's prompt id too (chosen by the Desk, stored before its submit).
    desk_job(&app).await;
    let mut desk = None;
    for _ in 0..500 {
        desk = double.pending_ids().into_iter().find(|id| *id != victim);
        if desk.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let desk = desk.expect("the Desk's job reached ComfyUI's queue");

    for (taken, whose) in [(&victim, "127.0.0.5"), (&desk, "media job")] {
        let (s, v) = queue_as(
            &lan,
            &app,
            GATEWAY2,
            &json!({"prompt": graph(2, "thief"), "prompt_id": taken}),
        )
        .await;
        assert_eq!(s, 409, "{v}");
        assert_eq!(v["error"]["type"], "prompt_id_taken", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(whose), "{message}");
        assert!(v["node_errors"].is_object());
        // Still not the thief's to delete.
        let (s, _) = post_raw(
            &lan,
            &app,
            "/comfyui/queue",
            GATEWAY2,
            &format!(r#"{{"delete": ["{taken}"]}}"#),
        )
        .await;
        assert_eq!(s, 403);
    }
    // An admin cannot take one either (the Desk would follow the wrong prompt).
    let (s, v) = queue_as(
        &lan,
        &app,
        ADMIN,
        &json!({"prompt": graph(2, "admin"), "prompt_id": desk}),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(double.pending_ids(), [victim.clone(), desk.clone()]);
    // Only a string is an id the Desk can check.
    let (s, v) = queue_as(
        &lan,
        &app,
        GATEWAY2,
        &json!({"prompt": graph(2, "n"), "prompt_id": 12345}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (400, Some("validation_error")),
        "{v}"
    );
    let (s, _) = post_raw(
        &lan,
        &app,
        "/comfyui/prompt",
        GATEWAY2,
        &format!(
            r#"{{"prompt": {}, "prompt_id": "{victim}", "x": NaN}}"#,
            graph(2, "n")
        ),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        double.received().len(),
        2,
        "no refused prompt reached ComfyUI"
    );

    // A fresh id of the client's choosing works, and is the client's own.
    let fresh = "client-chosen-0001";
    let (s, v) = queue_as(
        &lan,
        &app,
        GATEWAY2,
        &json!({"prompt": graph(2, "fresh"), "prompt_id": fresh}),
    )
    .await;
    assert_eq!((s, v["prompt_id"].as_str()), (200, Some(fresh)), "{v}");
    let (s, v) = queue_as(
        &lan,
        &app,
        GATEWAY,
        &json!({"prompt": graph(2, "late"), "prompt_id": fresh}),
    )
    .await;
    assert_eq!(s, 409, "now someone else's: {v}");
    let (s, v) = post_raw(
        &lan,
        &app,
        "/comfyui/queue",
        GATEWAY2,
        &format!(r#"{{"delete": ["{fresh}"]}}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(double.pending_ids(), [victim, desk]);
    app.stop().await;
}

#[tokio::test]
async fn an_interrupt_with_nothing_running_is_answered_without_a_global_one() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&[CHECKPOINT]);
    let app = start(&locked_down(&double.url())).await;
    let lan = TestApp::client_from("127.0.0.5");
    // Nothing runs: ComfyUI's own answer (200, empty), and no interrupt sent, which
    // ComfyUI would take as global and apply to a prompt started meanwhile.
    for body in ["{}", "", r#"{"prompt_id": null}"#, r#"{"prompt_id": ""}"#] {
        let r = lan
            .post(app.url("/comfyui/interrupt"))
            .bearer_auth(GATEWAY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{body:?}");
        assert!(r.bytes().await.unwrap().is_empty(), "{body:?}");
        assert!(
            double.inner.interrupt_requests.lock().unwrap().is_empty(),
            "{body:?}: an interrupt reached ComfyUI: {:?}",
            double.inner.interrupt_requests.lock().unwrap()
        );
    }
    // A body the Desk cannot read is refused; a non-string id too.
    for body in [r#"{"x": NaN}"#, r#"{"prompt_id": 7}"#] {
        let (s, v) = post_raw(&lan, &app, "/comfyui/interrupt", GATEWAY, body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "validation_error");
    }
    assert!(double.inner.interrupt_requests.lock().unwrap().is_empty());

    // The caller's own running prompt: one interrupt, naming it.
    double.node_ms(3000);
    let (s, v) = queue_as(&lan, &app, GATEWAY, &json!({"prompt": graph(30, "mine")})).await;
    assert_eq!(s, 200, "{v}");
    let mine = v["prompt_id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if double.running_id().as_deref() == Some(mine.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, _) = post_raw(&lan, &app, "/comfyui/interrupt", GATEWAY, "{}").await;
    assert_eq!(s, 200);
    assert_eq!(
        double.inner.interrupt_requests.lock().unwrap().as_slice(),
        &[Some(json!(mine))]
    );
    assert_eq!(double.inner.interrupts.load(Ordering::SeqCst), 1);
    app.stop().await;
}
