//! Model actions through the Sparklio API against the Ollama double: pull with progress
//! (joined, cancelled), delete guarded by the routes that use a model and by admin keys,
//! load/unload seen in `/api/ps`, missing routed models marked, every action an event.

use serde_json::{json, Value};
use sparklio_testkit::fault::Fault;
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::TestApp;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-key-0123456789abcdef";
const GATEWAY: &str = "gateway-key-0123456789abcd";

async fn desk(double: &OllamaDouble, extra: &str) -> TestApp {
    let toml = format!(
        "{extra}[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 10\n",
        double.base_url()
    );
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

async fn wait_pull(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, p) = app.get_json(&format!("/api/v1/models/pulls/{id}")).await;
        if p["state"] != "running" {
            return p;
        }
        assert!(Instant::now() < deadline, "pull never ended: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pulls_report_progress_join_and_cancel() {
    let double = OllamaDouble::start().await;
    let app = desk(&double, "").await;
    double
        .set_fault(
            Fault::Trickle {
                bytes: 60,
                interval_ms: 25,
            }
            .on("/api/pull"),
        )
        .await;
    let (status, first) = app
        .post_json(
            "/api/v1/models/ollama/pull",
            &json!({"model": "llama3.2:1b"}),
        )
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["joined"], false);
    let id = first["id"].as_str().unwrap().to_string();
    let (status, second) = app
        .post_json(
            "/api/v1/models/ollama/pull",
            &json!({"model": "llama3.2:1b"}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(second["joined"], true);
    assert_eq!(second["id"], first["id"]);

    // The SSE stream: progress events with growing bytes, then done at 100 %.
    let text = app
        .client
        .get(app.url(&format!("/api/v1/models/pulls/{id}/events")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let done = events.last().unwrap();
    assert_eq!(done["state"], "succeeded", "{text}");
    assert_eq!(done["percent"], 100.0);
    assert!(
        done["total_bytes"].as_u64().unwrap() > 4_000_000_000,
        "{done}"
    );
    let partial: Vec<f64> = events
        .iter()
        .filter_map(|e| e["percent"].as_f64())
        .filter(|p| *p > 0.0 && *p < 100.0)
        .collect();
    assert!(
        !partial.is_empty(),
        "some progress between 0 and 100: {text}"
    );
    assert_eq!(
        double
            .request_log()
            .iter()
            .filter(|r| r.path == "/api/pull")
            .count(),
        1,
        "two requests, one download"
    );

    // A slow pull, cancelled: it stops and says so.
    double
        .set_fault(
            Fault::Trickle {
                bytes: 8,
                interval_ms: 100,
            }
            .on("/api/pull"),
        )
        .await;
    let (_, slow) = app
        .post_json(
            "/api/v1/models/ollama/pull",
            &json!({"model": "mistral-small"}),
        )
        .await;
    let slow_id = slow["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/models/pulls/{slow_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cancelled = wait_pull(&app, &slow_id).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let (_, list) = app.get_json("/api/v1/models/pulls").await;
    let states: Vec<&str> = list["pulls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"succeeded") && states.contains(&"cancelled"),
        "{list}"
    );

    // Each pull is in the event log, with who asked.
    let (_, events) = app.get_json("/api/v1/events?limit=50").await;
    let models: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["service"] == "models")
        .collect();
    for to in ["pulling", "pulled", "pull cancelled"] {
        assert!(models.iter().any(|e| e["to"] == to), "{to}: {events}");
    }
    assert!(models
        .iter()
        .all(|e| e["actor"].as_str().unwrap().contains("127.0.0.1")));
    app.stop().await;
}

#[tokio::test]
async fn delete_names_the_routes_and_needs_admin_load_and_unload_show_in_ps() {
    let double = OllamaDouble::start().await;
    let app = desk(
        &double,
        &format!("[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"{GATEWAY}\"]\nadmin_keys = [\"{ADMIN}\"]\n"),
    )
    .await;
    let outside = TestApp::client_from("127.0.0.5");
    // A gateway key cannot delete.
    let r = outside
        .delete(app.url("/api/v1/models/ollama/qwen2.5:14b"))
        .bearer_auth(GATEWAY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A routed model: refused with the routes that use it.
    let r = outside
        .delete(app.url("/api/v1/models/ollama/qwen2.5:14b"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MODEL_IN_USE");
    assert!(
        !body["error"]["routes"].as_array().unwrap().is_empty(),
        "{body}"
    );
    // Forced: gone from the instance.
    let r = outside
        .delete(app.url("/api/v1/models/ollama/qwen2.5:14b?force=true"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, tags) = app.get_json("/api/tags").await;
    assert!(!tags.to_string().contains("qwen2.5:14b"), "{tags}");
    // Now a route's model is missing: router/info says which and for which routes.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, info) = app.get_json("/api/v1/llm/router/info").await;
        let missing = &info["missing_models"];
        if missing
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["model"] == "qwen2.5:14b"))
        {
            assert!(missing.to_string().contains("routes"));
            break;
        }
        assert!(Instant::now() < deadline, "never marked missing: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Load, then unload: /api/ps follows.
    let r = outside
        .post(app.url("/api/v1/models/ollama/llama3.2/load"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, ps) = app.get_json("/api/ps").await;
    assert!(ps.to_string().contains("llama3.2"), "{ps}");
    let r = outside
        .post(app.url("/api/v1/models/ollama/llama3.2/unload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, ps) = app.get_json("/api/ps").await;
    assert!(!ps.to_string().contains("llama3.2"), "{ps}");
    let (_, events) = app.get_json("/api/v1/events?limit=50").await;
    for to in ["deleted", "loaded", "unloaded"] {
        assert!(
            events["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["service"] == "models" && e["to"] == to),
            "{to}: {events}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn comfyui_models_by_folder_with_sizes_and_workflows_missing_their_models() {
    let comfy = sparklio_testkit::ComfyDouble::start().await;
    comfy.set_checkpoints(&["other.safetensors"]);
    let models_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(models_dir.path().join("checkpoints")).unwrap();
    std::fs::write(
        models_dir.path().join("checkpoints/other.safetensors"),
        vec![0u8; 4096],
    )
    .unwrap();
    let toml = format!(
        "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\ncheckpoint = \"juggernautXL_ragnarokBy.safetensors\"\nmodels_dir = \"{}\"\n",
        comfy.url(),
        models_dir.path().display()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let (status, body) = app.get_json("/api/v1/models").await;
    assert_eq!(status, 200, "{body}");
    let comfyui = body["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == "comfyui")
        .unwrap();
    assert_eq!(
        comfyui["models"]["checkpoints"],
        json!([{"name": "other.safetensors", "size_bytes": 4096}]),
        "{comfyui}"
    );
    let sdxl = comfyui["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "sdxl_txt2img")
        .unwrap();
    // The configured checkpoint replaces the graph's own; it is not installed.
    assert_eq!(
        sdxl["missing_models"],
        json!([{"type": "checkpoint", "name": "juggernautXL_ragnarokBy.safetensors"}]),
        "{sdxl}"
    );
    let diagnostic = comfyui["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "diagnostic")
        .unwrap();
    assert_eq!(diagnostic["missing_models"], json!([]));

    // Installed: nothing missing any more.
    comfy.set_checkpoints(&["juggernautXL_ragnarokBy.safetensors"]);
    let (_, media) = app.get_json("/api/v1/media/models").await;
    let sdxl = media["providers"]["comfyui"]["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "sdxl_txt2img")
        .unwrap()
        .clone();
    assert_eq!(sdxl["missing_models"], json!([]), "{media}");
    assert_eq!(
        sdxl["requires"],
        json!([{"type": "checkpoint", "name": "juggernautXL_ragnarokBy.safetensors"}])
    );
    app.stop().await;
}
