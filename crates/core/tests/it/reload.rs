//! Config reload (`POST /api/v1/config/reload`): a route and services change while
//! requests stream; no request fails, the new route takes the next request, unchanged
//! services keep running, breakers of unchanged instances survive, a bad file changes
//! nothing, and the opt-in watcher applies an edit by itself.

use serde_json::{json, Value};
use sparklio_testkit::fault::Fault;
use sparklio_testkit::ollama::{Behaviour, OllamaDouble};
use sparklio_testkit::ports::free_port;
use sparklio_testkit::service::ServiceToml;
use sparklio_testkit::TestApp;
use std::time::{Duration, Instant};

const GENERATE: &str = "/api/v1/llm/generate";

fn providers(a: &OllamaDouble, b: &OllamaDouble, route_to: &str) -> String {
    format!(
        "[llm.default_route]\nprovider = \"{route_to}\"\n\
         [llm.providers.a]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 20\ndefault_model = \"qwen2.5:7b\"\n\
         [llm.providers.b]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 20\ndefault_model = \"qwen2.5:7b\"\n",
        a.base_url(),
        b.base_url()
    )
}

fn chat(stream: bool) -> Value {
    json!({"role": "assistant", "task": "chat", "mode": "chat",
           "payload": {"message": "hello"}, "options": {"stream": stream}})
}

async fn pid_of(app: &TestApp, name: &str) -> Option<u64> {
    let (_, v) = app.get_json(&format!("/api/v1/services/{name}")).await;
    v["pid"].as_u64()
}

async fn wait_state(app: &TestApp, name: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = app.get_json(&format!("/api/v1/services/{name}")).await;
        if status == 200 && v["state"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} never {want}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reload(app: &TestApp) -> (u16, Value) {
    app.post_json("/api/v1/config/reload", &json!({})).await
}

#[tokio::test]
async fn a_route_and_services_change_while_requests_stream_and_none_fails() {
    let a = OllamaDouble::start().await;
    let b = OllamaDouble::start().await;
    // A's answers trickle out: the requests below are still streaming during the reload.
    a.set_fault(
        Fault::Trickle {
            bytes: 24,
            interval_ms: 40,
        }
        .on("/api/chat"),
    )
    .await;
    let (keep, change, remove, add) = (free_port(), free_port(), free_port(), free_port());
    let services = |change_args: &[&str], with_remove: bool, with_add: bool| {
        // The kit's probes leave room for a loaded machine: a spurious restart would read
        // as a reload that restarted an unchanged service.
        let mut t = ServiceToml::new("keep", keep).to_string();
        t += &ServiceToml::new("change", change)
            .args(change_args)
            .to_string();
        if with_remove {
            t += &ServiceToml::new("remove", remove).to_string();
        }
        if with_add {
            t += &ServiceToml::new("add", add).to_string();
        }
        t
    };
    let before = format!("{}{}", providers(&a, &b, "a"), services(&[], true, false));
    let app = TestApp::start_with(&before, &[("GENERATOR_MODE", "live")], Default::default()).await;
    for name in ["keep", "change", "remove"] {
        wait_state(&app, name, "running").await;
    }
    let (keep_pid, change_pid) = (pid_of(&app, "keep").await, pid_of(&app, "change").await);
    assert!(keep_pid.is_some() && change_pid.is_some());

    // Requests in flight on route "a": streamed and not.
    let mut inflight = Vec::new();
    for i in 0..6 {
        let client = app.client.clone();
        let url = app.url(GENERATE);
        inflight.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&chat(i % 2 == 0))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }));
    }
    // Every request has reached A (and is trickling) before the file changes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.requests().len() < 6 {
        assert!(Instant::now() < deadline, "requests never reached A");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let text = std::fs::read_to_string(app.config_file()).unwrap();
    let after = text
        .replace("provider = \"a\"", "provider = \"b\"")
        .replace(
            &services(&[], true, false),
            &services(&["--startup-ms", "50"], false, true),
        );
    assert_ne!(text, after, "the edit must change the file");
    std::fs::write(app.config_file(), after).unwrap();
    let (status, report) = reload(&app).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["services"]["unchanged"], json!(["keep"]), "{report}");
    assert_eq!(report["services"]["changed"], json!(["change"]), "{report}");
    assert_eq!(report["services"]["removed"], json!(["remove"]), "{report}");
    assert_eq!(report["services"]["added"], json!(["add"]), "{report}");
    let unchanged = report["llm_providers"]["unchanged"].as_array().unwrap();
    assert!(
        unchanged.contains(&json!("a")) && unchanged.contains(&json!("b")),
        "{report}"
    );
    assert_eq!(report["llm_providers"]["changed"], json!([]), "{report}");
    assert!(
        report["changed"]
            .as_array()
            .unwrap()
            .contains(&json!("llm.default_route.provider")),
        "{report}"
    );
    assert_eq!(report["restart_required"], json!([]), "{report}");

    // No request in flight failed: each finished on A with its whole answer.
    for h in inflight {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Double answer from"), "{body}");
        assert!(!body.contains("event: error"), "{body}");
    }
    // The next request takes the new route.
    let before_b = b.requests().len();
    let (status, v) = app.post_json(GENERATE, &chat(false)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["provider"], "b", "{v}");
    assert_eq!(b.requests().len(), before_b + 1);
    let (_, info) = app.get_json("/api/v1/llm/router/info").await;
    assert_eq!(info["default_route"]["provider"], "b", "{info}");

    // Services: the unchanged one kept its process, the changed one has a new one, the
    // removed one is gone (process and entry), the added one runs.
    assert_eq!(pid_of(&app, "keep").await, keep_pid);
    wait_state(&app, "change", "running").await;
    let new_change = pid_of(&app, "change").await;
    assert!(
        new_change.is_some() && new_change != change_pid,
        "{new_change:?} vs {change_pid:?}"
    );
    wait_state(&app, "add", "running").await;
    let (status, _) = app.get_json("/api/v1/services/remove").await;
    assert_eq!(status, 404);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", remove)).is_err(),
        "the removed service still listens"
    );
    // The reload is an event, naming who asked.
    let (_, events) = app.get_json("/api/v1/events?service=config").await;
    let list = events["events"].as_array().cloned().unwrap_or_default();
    assert!(
        list.iter().any(|e| e["to"] == "reloaded"
            && e["actor"].as_str().is_some_and(|a| a.contains("127.0.0.1"))),
        "{events}"
    );
    app.stop().await;
}

#[tokio::test]
async fn breakers_survive_a_reload_for_unchanged_instances() {
    let a = OllamaDouble::start().await;
    let b = OllamaDouble::start().await;
    let base = format!(
        "{}[llm.providers.a.resilience]\nbreaker_errors = 2\nbreaker_open_s = 60\n",
        providers(&a, &b, "a")
    );
    let app = TestApp::start_with(&base, &[("GENERATOR_MODE", "live")], Default::default()).await;
    a.set(Behaviour::Fail(500, "boom".into()));
    for _ in 0..2 {
        let (status, _) = app.post_json(GENERATE, &chat(false)).await;
        assert_eq!(status, 502);
    }
    let breaker = |v: &Value| v["providers"]["a"]["instances"]["main"]["breaker"].clone();
    let (_, health) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(breaker(&health), "open", "{health}");

    // A setting of provider "a" changes (it is rebuilt), its instance does not.
    let text = std::fs::read_to_string(app.config_file()).unwrap();
    std::fs::write(
        app.config_file(),
        text.replacen("timeout_s = 20", "timeout_s = 25", 1),
    )
    .unwrap();
    let (status, report) = reload(&app).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["llm_providers"]["changed"], json!(["a"]), "{report}");
    let unchanged = report["llm_providers"]["unchanged"].as_array().unwrap();
    assert!(
        unchanged.contains(&json!("b")) && !unchanged.contains(&json!("a")),
        "{report}"
    );
    let (_, health) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(
        breaker(&health),
        "open",
        "the breaker was forgotten: {health}"
    );
    // Still failing fast, without a request reaching A.
    let seen = a.requests().len();
    let (status, v) = app.post_json(GENERATE, &chat(false)).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(a.requests().len(), seen);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_bind_changes_need_a_restart() {
    let a = OllamaDouble::start().await;
    let b = OllamaDouble::start().await;
    let app = TestApp::start_with(
        &providers(&a, &b, "a"),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await;
    let good = std::fs::read_to_string(app.config_file()).unwrap();
    std::fs::write(
        app.config_file(),
        good.replace("provider = \"a\"", "provider = \"nope\""),
    )
    .unwrap();
    let (status, v) = reload(&app).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "CONFIG_INVALID", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );
    let (_, v) = app.post_json(GENERATE, &chat(false)).await;
    assert_eq!(v["provider"], "a", "the bad file was applied: {v}");

    // A new listener is not opened by a reload: the answer says so, the rest applies.
    std::fs::write(
        app.config_file(),
        format!(
            "[server.limits]\nmax_connections = 100\n{}",
            good.replace("provider = \"a\"", "provider = \"b\"")
        ),
    )
    .unwrap();
    let (status, v) = reload(&app).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["restart_required"],
        json!(["server.limits.max_connections"]),
        "{v}"
    );
    let (_, v) = app.post_json(GENERATE, &chat(false)).await;
    assert_eq!(v["provider"], "b", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn reload_needs_admin_and_the_browser_rules() {
    let app = TestApp::start(
        "[server]\nadmin_keys = [\"admin-key-0123456789abcdef\"]\napi_keys = [\"gateway-key-0123456789abcd\"]\ntrusted_networks = []\n",
    )
    .await;
    let url = app.url("/api/v1/config/reload");
    let r = app
        .client
        .post(&url)
        .bearer_auth("gateway-key-0123456789abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app.client.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&url)
        .bearer_auth("admin-key-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["changed"], json!([]), "{v}");
    app.stop().await;

    // Loopback is trusted, but a web page the owner opens cannot trigger a reload.
    let app = TestApp::start("").await;
    let url = app.url("/api/v1/config/reload");
    let r = app
        .client
        .post(&url)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .post(&url)
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        421,
        "DNS rebinding: a host name that is not ours"
    );
    let r = app.client.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_watcher_applies_an_edit_by_itself() {
    let a = OllamaDouble::start().await;
    let b = OllamaDouble::start().await;
    let toml = format!("[server]\nwatch_config = true\n{}", providers(&a, &b, "a"));
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let text = std::fs::read_to_string(app.config_file()).unwrap();
    std::fs::write(
        app.config_file(),
        text.replace("provider = \"a\"", "provider = \"b\""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, info) = app.get_json("/api/v1/llm/router/info").await;
        if info["default_route"]["provider"] == "b" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edit was never applied: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, v) = app.post_json(GENERATE, &chat(false)).await;
    assert_eq!(v["provider"], "b", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn accepted_discoveries_are_written_and_supervised_without_a_restart() {
    let port = free_port();
    let _ollama = OllamaDouble::start_on(port, &["qwen2.5:7b"], &[])
        .await
        .unwrap();
    let app = TestApp::start("# the owner's notes\n").await;
    let tools = app.dir.path().join("tools");
    std::fs::create_dir_all(tools.join("ComfyUI/comfy")).unwrap();
    std::fs::write(tools.join("ComfyUI/main.py"), "").unwrap();

    // Accepting before any discovery (or a name it did not propose) writes nothing.
    let name = format!("ollama-{port}");
    let (status, v) = app
        .post_json("/api/v1/discover/accept", &json!({"names": [name]}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "NOT_DISCOVERED", "{v}");

    // Only this machine's own folders: a share's host would choose the command.
    for (dir, why) in [
        ("\\\\host\\share\\ComfyUI", "network path"),
        ("//host/share/ComfyUI", "network path"),
        ("tools/ComfyUI", "absolute"),
    ] {
        let (status, v) = app
            .post_json(
                "/api/v1/discover",
                &json!({"dirs": [dir], "no_docker": true}),
            )
            .await;
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (400, Some("dirs")),
            "{v}"
        );
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
    }

    let (status, found) = app
        .post_json(
            "/api/v1/discover",
            &json!({"ports": [port], "dirs": [tools], "no_docker": true}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let names: Vec<&str> = found["found"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&name.as_str()) && names.contains(&"comfyui"),
        "{found}"
    );
    assert_eq!(found["services_configured"], 0);
    // Only a proposal: the file is as it was.
    assert!(!std::fs::read_to_string(app.config_file())
        .unwrap()
        .contains("[[services]]"));

    let (status, v) = app
        .post_json("/api/v1/discover/accept", &json!({"names": [name]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reload"]["services"]["added"], json!([name]), "{v}");
    let text = std::fs::read_to_string(app.config_file()).unwrap();
    assert!(
        text.contains("# the owner's notes"),
        "comments kept: {text}"
    );
    assert!(text.contains(&format!("name = \"{name}\"")), "{text}");
    assert!(
        !text.contains("name = \"comfyui\""),
        "only the accepted one: {text}"
    );
    // The written file loads clean, and the service is watched at once.
    sparklio_core::load_config(&sparklio_core::config::ConfigInput {
        config_flag: Some(app.config_file()),
        env: Default::default(),
        dotenv_path: None,
        use_os_config_dir: false,
    })
    .unwrap_or_else(|p| panic!("the written config does not load: {p:?}"));
    wait_state(&app, &name, "running").await;
    let (_, health) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(
        health["providers"]["ollama"]["base_url"],
        format!("http://127.0.0.1:{port}"),
        "{health}"
    );
    // Discovered again: it is configured now, so not proposed.
    let (_, again) = app
        .post_json(
            "/api/v1/discover",
            &json!({"ports": [port], "no_docker": true}),
        )
        .await;
    assert!(!again["found"].to_string().contains(&name), "{again}");
    app.stop().await;
}

/// A file that sets one key of a provider the documented way (its `kind` from the
/// defaults) is a valid config: accepting a discovery writes into it and keeps the key.
#[tokio::test]
async fn accepting_a_discovery_keeps_a_partial_provider_table() {
    let port = free_port();
    let _ollama = OllamaDouble::start_on(port, &["qwen2.5:7b"], &[])
        .await
        .unwrap();
    let app = TestApp::start("[llm.providers.ollama]\ntimeout_s = 60\n").await;
    let (status, found) = app
        .post_json(
            "/api/v1/discover",
            &json!({"ports": [port], "no_docker": true}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let name = format!("ollama-{port}");
    let (status, v) = app
        .post_json("/api/v1/discover/accept", &json!({"names": [name]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["added"],
        json!([format!("service {name}"), "llm.providers.ollama.base_url"]),
        "{v}"
    );
    let text = std::fs::read_to_string(app.config_file()).unwrap();
    assert!(text.contains("timeout_s = 60"), "{text}");
    let (_, health) = app.get_json("/api/v1/llm/health").await;
    assert_eq!(
        health["providers"]["ollama"]["base_url"],
        format!("http://127.0.0.1:{port}"),
        "{health}"
    );
    app.stop().await;
}

#[tokio::test]
async fn media_providers_and_keys_change_on_reload() {
    let app = TestApp::start("[server]\ntrusted_networks = [\"127.0.0.0/8\"]\n").await;
    let (_, health) = app.get_json("/api/v1/media/health").await;
    assert!(health["providers"].get("comfy2").is_none(), "{health}");
    let text = std::fs::read_to_string(app.config_file()).unwrap();
    let edited = text.replace(
        "trusted_networks = [\"127.0.0.0/8\"]",
        "trusted_networks = []\napi_keys = [\"reload-gateway-key-0123456789\"]",
    )
        + "[media.providers.comfy2]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:9\"\n";
    std::fs::write(app.config_file(), edited).unwrap();
    let (status, report) = reload(&app).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["media_providers"]["added"],
        json!(["comfy2"]),
        "{report}"
    );
    // Loopback is no longer trusted: the new key is needed, and it works.
    let (status, _) = app.get_json("/api/v1/media/health").await;
    assert_eq!(status, 401);
    let r = app
        .client
        .get(app.url("/api/v1/media/health"))
        .bearer_auth("reload-gateway-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let health: Value = r.json().await.unwrap();
    assert!(health["providers"].get("comfy2").is_some(), "{health}");
    app.stop().await;
}
