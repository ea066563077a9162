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
