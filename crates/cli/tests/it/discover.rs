//! `sparklio-desk discover` finds an Ollama answering on a probed port and a ComfyUI
//! folder, proposes their entries, and `--write` adds them to a config that then loads
//! and checks clean, comments kept. Docker containers are listed by a test against the
//! real engine in CI's docker phase (`docker_engine` tests); here `--no-docker`.

use sparklio_testkit::free_port;
use sparklio_testkit::ollama::OllamaDouble;
use std::process::Command;

async fn run(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparklio-desk"));
    c.arg("--config").arg(config).args(args);
    for v in ["GENERATOR_MODE", "OLLAMA_BASE_URL", "COMFYUI_BASE_URL"] {
        c.env_remove(v);
    }
    let out = tokio::task::spawn_blocking(move || c.output().expect("runs"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_an_ollama_on_a_port_and_a_comfyui_folder_and_writes_them() {
    let port = free_port();
    let _ollama = OllamaDouble::start_on(port, &["qwen2.5:7b"], &[])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let comfy = dir.path().join("tools/ComfyUI");
    std::fs::create_dir_all(comfy.join("comfy")).unwrap();
    std::fs::write(comfy.join("main.py"), "").unwrap();
    let config = dir.path().join("sparklio-desk.toml");
    std::fs::write(
        &config,
        format!(
            "# the owner's notes\n[server]\nbind = \"127.0.0.1:{}\"\n",
            free_port()
        ),
    )
    .unwrap();
    let tools = dir.path().join("tools");
    let port_arg = port.to_string();
    let args = [
        "discover",
        "--ports",
        &port_arg,
        "--dir",
        tools.to_str().unwrap(),
        "--no-docker",
    ];

    let (ok, out) = run(&config, &args).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("found ollama — port {port}")),
        "{out}"
    );
    assert!(
        out.contains("found comfyui — folder") && out.contains("ComfyUI"),
        "{out}"
    );
    assert!(out.contains("--write"), "{out}");
    // Only a proposal: nothing written yet.
    assert!(!std::fs::read_to_string(&config)
        .unwrap()
        .contains("[[services]]"));

    let mut write = args.to_vec();
    write.push("--write");
    let (ok, out) = run(&config, &write).await;
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# the owner's notes"), "{text}");
    assert!(
        text.contains(&format!("name = \"ollama-{port}\"")),
        "{text}"
    );
    assert!(
        text.contains("name = \"comfyui\"") && text.contains("kind = \"process\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("base_url = \"http://127.0.0.1:{port}\"")),
        "{text}"
    );
    let (ok, out) = run(&config, &["config", "check"]).await;
    assert!(ok, "the written config checks clean: {out}");
    // Found again: nothing new.
    let (ok, out) = run(&config, &args).await;
    assert!(ok);
    assert!(out.contains("nothing new found"), "{out}");
}
