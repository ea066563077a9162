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

/// A config that sets one key of a provider the documented way (its `kind` from the
/// defaults) and a ComfyUI folder named relative to the working folder: both are written,
/// the provider keeps its key and gets the URL, the folder is written absolute (the
/// Windows service starts in System32).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_into_a_partial_provider_table_and_makes_a_relative_folder_absolute() {
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
            "[server]\nbind = \"127.0.0.1:{}\"\n\n[llm.providers.ollama]\ntimeout_s = 60\n",
            free_port()
        ),
    )
    .unwrap();
    let port_arg = port.to_string();
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparklio-desk"));
    c.current_dir(dir.path())
        .arg("--config")
        .arg(&config)
        .args([
            "discover",
            "--ports",
            &port_arg,
            "--dir",
            "tools",
            "--no-docker",
            "--write",
        ]);
    for v in ["GENERATOR_MODE", "OLLAMA_BASE_URL", "COMFYUI_BASE_URL"] {
        c.env_remove(v);
    }
    let out = tokio::task::spawn_blocking(move || c.output().expect("runs"))
        .await
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("timeout_s = 60"), "{text}");
    assert!(
        text.contains(&format!("base_url = \"http://127.0.0.1:{port}\"")),
        "{text}"
    );
    let cwd = text
        .lines()
        .find_map(|l| l.strip_prefix("cwd = "))
        .unwrap_or_else(|| panic!("no cwd: {text}"));
    let cwd = cwd.trim_matches('"');
    assert!(std::path::Path::new(cwd).is_absolute(), "{cwd}");
    assert_eq!(
        std::fs::canonicalize(cwd).unwrap(),
        std::fs::canonicalize(&comfy).unwrap()
    );
    let (ok, out) = run(&config, &["config", "check"]).await;
    assert!(ok, "the written config checks clean: {out}");
    let loaded = sparklio_core::load_config(&sparklio_core::config::ConfigInput {
        config_flag: Some(config.clone()),
        ..Default::default()
    })
    .unwrap();
    let ollama = &loaded.config.llm.providers["ollama"];
    assert_eq!(ollama.timeout_s, 60.0);
    assert_eq!(
        ollama.base_url.as_deref(),
        Some(format!("http://127.0.0.1:{port}").as_str())
    );
}
