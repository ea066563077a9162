//! `sparklio-desk models …` against the Ollama double: straight to the provider when no
//! Desk answers, through a running Desk (whose event log then shows the action) when one does.

use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::{free_port, Fault, TestApp};
use std::process::Command;

async fn models(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparklio-desk"));
    c.arg("--config")
        .arg(config)
        .arg("models")
        .args(args)
        .env_remove("GENERATOR_MODE")
        .env_remove("OLLAMA_BASE_URL")
        .env_remove("SPARKLIO_DESK_ADMIN_KEY");
    let out = tokio::task::spawn_blocking(move || c.output().expect("runs"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn config(dir: &tempfile::TempDir, ollama: &str) -> std::path::PathBuf {
    let path = dir.path().join("sparklio-desk.toml");
    // Nothing listens on the bind address: the command goes straight to Ollama.
    std::fs::write(
        &path,
        format!(
            "[server]\nbind = \"127.0.0.1:{}\"\n[storage]\ndata_dir = \"{}\"\n[llm.providers.ollama]\nbase_url = \"{ollama}\"\n",
            free_port(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn straight_to_ollama_pull_shows_progress_per_10_percent_and_rm_guards_routes() {
    let double = OllamaDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &double.base_url());

    let (ok, out, err) = models(&cfg, &["pull", "llama3.2:1b"]).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("directly"), "{err}");
    // Not a terminal: plain lines, one per 10 % reached, then done.
    assert!(out.contains("llama3.2:1b: 50 %"), "{out}");
    assert!(out.contains("llama3.2:1b: 100 %"), "{out}");
    assert!(out.trim_end().ends_with("llama3.2:1b: pulled"), "{out}");
    assert!(
        out.lines().filter(|l| l.contains(" %")).count() <= 11,
        "{out}"
    );

    let (ok, out, _) = models(&cfg, &["list"]).await;
    assert!(ok);
    assert!(
        out.contains("llama3.2:1b") && out.contains("loaded"),
        "{out}"
    );

    let (ok, _, err) = models(&cfg, &["rm", "qwen2.5:14b"]).await;
    assert!(!ok);
    assert!(
        err.contains("--force") && err.contains("\"writers\""),
        "{err}"
    );
    let (ok, out, err) = models(&cfg, &["rm", "qwen2.5:14b", "--force"]).await;
    assert!(ok, "{out}{err}");
    assert!(!double
        .state
        .models
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "qwen2.5:14b"));

    let (ok, _, err) = models(&cfg, &["load", "llama3.2:1b"]).await;
    assert!(ok, "{err}");
    assert!(double
        .state
        .loaded
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.starts_with("llama3.2:1b")));
    let (ok, _, err) = models(&cfg, &["unload", "llama3.2:1b"]).await;
    assert!(ok, "{err}");
    assert!(!double
        .state
        .loaded
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.starts_with("llama3.2:1b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_running_desk_the_pull_is_an_event() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(
            Fault::Trickle {
                bytes: 64,
                interval_ms: 10,
            }
            .on("/api/pull"),
        )
        .await;
    let app = TestApp::start_with(
        &format!(
            "[llm.providers.ollama]\nbase_url = \"{}\"\n",
            double.base_url()
        ),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &double.base_url());
    let url = format!("http://{}", app.addr);
    let (ok, out, err) = models(&cfg, &["pull", "mistral-small", "--url", &url]).await;
    assert!(ok, "{out}{err}");
    assert!(!err.contains("directly"), "{err}");
    assert!(
        out.contains("mistral-small: 100 %") && out.contains("pulled"),
        "{out}"
    );
    let (_, events) = app.get_json("/api/v1/events?limit=20").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["service"] == "models" && e["to"] == "pulled"),
        "{events}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_fails_on_an_unknown_provider_naming_the_known_ones() {
    let double = OllamaDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &double.base_url());
    // Straight to Ollama: the config's providers.
    let (ok, out, err) = models(&cfg, &["list", "--provider", "nope"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("unknown provider \"nope\""), "{err}");
    assert!(err.contains("ollama"), "{err}");

    // Through a Desk: the Desk's providers; a known one is listed alone.
    let app = TestApp::start_with(
        &format!(
            "[llm.providers.ollama]\nbase_url = \"{}\"\n",
            double.base_url()
        ),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await;
    let url = format!("http://{}", app.addr);
    let (ok, out, err) = models(&cfg, &["list", "--provider", "nope", "--url", &url]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("unknown provider \"nope\"") && err.contains("ollama"),
        "{err}"
    );
    assert!(!out.contains("qwen2.5"), "nothing listed: {out}");
    let (ok, out, err) = models(&cfg, &["list", "--provider", "ollama", "--url", &url]).await;
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("ollama (ollama)"), "{out}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_exits_1_when_a_provider_is_unreachable() {
    let double = OllamaDouble::start().await;
    let app = TestApp::start_with(
        &format!(
            "[llm.providers.ollama]\nbase_url = \"{}\"\n",
            double.base_url()
        ),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await;
    double.set_fault(Fault::Refuse).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &double.base_url());
    let url = format!("http://{}", app.addr);
    let (ok, out, err) = models(&cfg, &["list", "--url", &url]).await;
    assert!(!ok, "{out}{err}");
    assert!(out.contains("unreachable"), "{out}");
    assert!(err.contains("unreachable: ollama"), "{err}");

    // Straight to an Ollama that refuses: the same exit code, naming the address.
    let (ok, _, err) = models(&cfg, &["list"]).await;
    assert!(!ok);
    assert!(
        err.contains(&format!("{} is unreachable", double.base_url())),
        "{err}"
    );
    app.stop().await;
}

/// A Desk downloading `model` slowly, started by a `models pull` child that is still
/// following it; returns the child and the pull's id.
async fn pull_in_progress(
    app: &TestApp,
    cfg: &std::path::Path,
    model: &str,
) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparklio-desk"))
        .arg("--config")
        .arg(cfg)
        .args([
            "models",
            "pull",
            model,
            "--url",
            &format!("http://{}", app.addr),
        ])
        .env_remove("SPARKLIO_DESK_ADMIN_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        let (_, pulls) = app.get_json("/api/v1/models/pulls").await;
        if let Some(p) = pulls["pulls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["model"] == model && p["state"] == "running")
        {
            // The child follows the events once its request is answered.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return (child, p["id"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the pull never started on the Desk");
}

async fn slow_pulls_desk(double: &OllamaDouble) -> TestApp {
    double
        .set_fault(
            Fault::Trickle {
                bytes: 40,
                interval_ms: 300,
            }
            .on("/api/pull"),
        )
        .await;
    TestApp::start_with(
        &format!(
            "[llm.providers.ollama]\nbase_url = \"{}\"\n",
            double.base_url()
        ),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await
}

/// Ctrl-C on a pull through the Desk cancels the download on the Desk (as Ctrl-C stops a
/// pull straight to Ollama), says so, and exits 130.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_pull_through_the_desk_cancels_it_there() {
    let double = OllamaDouble::start().await;
    let app = slow_pulls_desk(&double).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &double.base_url());
    let (child, id) = pull_in_progress(&app, &cfg, "slowmodel:1b").await;
    #[allow(unsafe_code)] // a plain kill(2) of our own child
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("cancelled on the Desk"), "{err}");
    let (_, pull) = app.get_json(&format!("/api/v1/models/pulls/{id}")).await;
    assert_eq!(pull["state"], "cancelled", "{pull}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_cancel_stops_a_pull_running_on_the_desk() {
    let double = OllamaDouble::start().await;
    let app = slow_pulls_desk(&double).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &double.base_url());
    let url = format!("http://{}", app.addr);
    let (status, started) = app
        .post_json(
            "/api/v1/models/ollama/pull",
            &serde_json::json!({"model": "slowmodel:1b"}),
        )
        .await;
    assert_eq!(status, 202, "{started}");

    let (ok, _, err) = models(&cfg, &["cancel", "othermodel", "--url", &url]).await;
    assert!(!ok);
    assert!(err.contains("no pull of othermodel is running"), "{err}");

    let (ok, out, err) = models(&cfg, &["cancel", "slowmodel:1b", "--url", &url]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("slowmodel:1b: pull cancelled on ollama"),
        "{out}"
    );
    let (_, pull) = app
        .get_json(&format!(
            "/api/v1/models/pulls/{}",
            started["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(pull["state"], "cancelled", "{pull}");
    app.stop().await;
}
