//! The ComfyUI double's routes beyond the ones core's tests use.

use serde_json::{json, Value};
use sparklio_testkit::comfyui::{fixture, fixture_path};
use sparklio_testkit::ComfyDouble;

async fn get_json(url: String) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_is_also_served_under_api() {
    let double = ComfyDouble::start().await;
    let recorded = fixture("http/get_system_stats.json")["response"]["body_json"].clone();
    for prefix in ["", "/api"] {
        let (status, body) = get_json(format!("{}{prefix}/system_stats", double.url())).await;
        assert_eq!((status, &body), (200, &recorded));
        let (status, body) = get_json(format!("{}{prefix}/prompt", double.url())).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"exec_info": {"queue_remaining": 0}}));
    }
}

#[tokio::test]
async fn models_embeddings_and_free_answer_like_a_stock_comfyui() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&["sd_xl_base_1.0.safetensors"]);
    let (_, folders) = get_json(format!("{}/models", double.url())).await;
    assert!(folders.as_array().unwrap().contains(&json!("checkpoints")));
    let (_, files) = get_json(format!("{}/api/models/checkpoints", double.url())).await;
    assert_eq!(files, json!(["sd_xl_base_1.0.safetensors"]));
    let (status, _) = get_json(format!("{}/models/nope", double.url())).await;
    assert_eq!(status, 404);
    let (status, body) = get_json(format!("{}/embeddings", double.url())).await;
    assert_eq!((status, body), (200, json!([])));
    let r = reqwest::Client::new()
        .post(format!("{}/free", double.url()))
        .json(&json!({"unload_models": true, "free_memory": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(double.inner.frees.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn uploaded_images_are_named_like_comfyui_names_them_and_can_be_viewed() {
    let double = ComfyDouble::start().await;
    let client = reqwest::Client::new();
    let upload = |bytes: &'static [u8], overwrite: bool| {
        let client = client.clone();
        let url = format!("{}/upload/image", double.url());
        async move {
            let boundary = "kitboundary";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"in.png\"\r\nContent-Type: image/png\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(bytes);
            body.extend_from_slice(
                format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\n{overwrite}\r\n--{boundary}--\r\n").as_bytes(),
            );
            let r = client
                .post(url)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        upload(b"first", false).await,
        json!({"name": "in.png", "subfolder": "", "type": "input"})
    );
    assert_eq!(
        upload(b"first", false).await["name"],
        "in.png",
        "same file, same name"
    );
    assert_eq!(upload(b"second", false).await["name"], "in (1).png");
    assert_eq!(upload(b"third", true).await["name"], "in.png");
    let r = reqwest::get(format!("{}/view?filename=in.png&type=input", double.url()))
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"third"[..]);
    let r = reqwest::Client::new()
        .post(format!("{}/upload/image", double.url()))
        .body("not a form")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A two-node prompt the double runs at once (no model file).
fn small_prompt() -> Value {
    json!({"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kit"}}
    }})
}

#[tokio::test]
async fn history_can_be_listed_and_cleared_and_the_queue_deleted_from() {
    let double = ComfyDouble::start().await;
    double
        .inner
        .knobs
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let client = reqwest::Client::new();
    let prompt = small_prompt();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let v: Value = client
            .post(format!("{}/prompt", double.url()))
            .json(&prompt)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(v["prompt_id"].as_str().unwrap().to_string());
    }
    assert_eq!(double.pending_ids(), ids);
    client
        .post(format!("{}/api/queue", double.url()))
        .json(&json!({"delete": [ids[1]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(double.pending_ids(), [ids[0].clone()]);
    double
        .inner
        .knobs
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + crate::raw::PATIENCE;
    while double.history_of(&ids[0]).is_none() {
        assert!(std::time::Instant::now() < deadline, "never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, all) = get_json(format!("{}/history?max_items=5", double.url())).await;
    assert_eq!(all.as_object().unwrap().len(), 1);
    client
        .post(format!("{}/history", double.url()))
        .json(&json!({"clear": true}))
        .send()
        .await
        .unwrap();
    let (_, all) = get_json(format!("{}/history", double.url())).await;
    assert_eq!(all, json!({}));
    assert!(fixture_path("bodies/output.png").exists());
}

#[tokio::test]
async fn queue_and_history_bodies_are_read_as_comfyuis_python_reads_them() {
    let double = ComfyDouble::start().await;
    double
        .inner
        .knobs
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let client = reqwest::Client::new();
    let prompt = small_prompt();
    let post = |path: &str, body: String| {
        client
            .post(format!("{}{path}", double.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v: Value = post("/prompt", prompt.to_string())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(v["prompt_id"].as_str().unwrap().to_string());
    }
    // json.loads takes NaN; `for id in delete` goes through a dict's keys.
    let r = post(
        "/queue",
        format!(r#"{{"delete": ["{}"], "x": NaN}}"#, ids[0]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/queue", format!(r#"{{"delete": {{"{}": 1}}}}"#, ids[1]))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(double.pending_ids(), [ids[2].clone()]);
    // `if json_data["clear"]:` — a falsy value keeps the queue, any truthy one clears it.
    let r = post("/queue", r#"{"clear": 0}"#.into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(double.pending_ids(), [ids[2].clone()]);
    let r = post("/queue", r#"{"clear": 1}"#.into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(double.pending_ids().is_empty());
    // Not JSON even to Python, or not a dict: ComfyUI's plain 500.
    for body in ["{nope", r#"{"delete": 5}"#] {
        let r = post("/history", body.into()).await.unwrap();
        assert_eq!(r.status(), 500, "{body}");
    }
    // Every interrupt is recorded with the id it named; a falsy one is global.
    for body in [
        r#"{"prompt_id": "abc"}"#,
        r#"{"prompt_id": ""}"#,
        "not json",
    ] {
        let r = post("/interrupt", body.into()).await.unwrap();
        assert_eq!(r.status(), 200, "{body}");
    }
    assert_eq!(
        double.inner.interrupt_requests.lock().unwrap().as_slice(),
        &[Some(json!("abc")), None, None]
    );
}
