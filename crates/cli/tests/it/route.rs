//! `sparklio-desk route`: which provider/model a request gets, and why.

use std::process::Command;

fn route(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparklio-desk"))
        .arg("--config")
        .arg(config)
        .arg("route")
        .args(args)
        .env_remove("GENERATOR_MODE")
        .env_remove("OLLAMA_DEFAULT_MODEL")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn prints_provider_model_and_the_rule_that_matched() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sparklio-desk.toml");
    std::fs::write(
        &config,
        "[[llm.routes]]\nname = \"chat writers\"\npriority = 1\nroles = [\"copywriter\"]\nmodes = [\"chat\"]\nprovider = \"ollama\"\nmodel = \"qwen2.5:7b\"\n\
         [[llm.routes]]\nname = \"heavy reasoning\"\npriority = 10\ntasks = [\"heavy_reasoning\"]\nprovider = \"ollama\"\nmodel = \"mistral-small\"\n",
    )
    .unwrap();
    let (ok, out) = route(
        &config,
        &["--role", "strategist", "--task", "heavy_reasoning"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("provider: ollama"), "{out}");
    assert!(out.contains("model:    mistral-small"), "{out}");
    assert!(out.contains("\"heavy reasoning\" (llm.routes[1])"), "{out}");
    assert!(
        out.contains("why:      rule \"heavy reasoning\" (llm.routes[1]) (priority 10) matches role=strategist task=heavy_reasoning mode=json"),
        "{out}"
    );

    let (ok, out) = route(
        &config,
        &["--role", "copywriter", "--task", "sns", "--mode", "text"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("model:    qwen2.5:7b") && out.contains("chat writers"),
        "{out}"
    );

    let (ok, out) = route(&config, &["--role", "brief_agent", "--task", "x"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("alias of brief_agent") && out.contains("default_route"),
        "{out}"
    );
    assert!(
        out.contains("why:      no rule matches role=") && out.contains(": llm.default_route"),
        "{out}"
    );

    let (ok, out) = route(
        &config,
        &[
            "--role",
            "copywriter",
            "--task",
            "sns",
            "--provider",
            "nope",
        ],
    );
    assert!(!ok, "an unknown provider is an error: {out}");
    let (ok, out) = route(
        &config,
        &["--role", "copywriter", "--task", "sns", "--mode", "yaml"],
    );
    assert!(!ok && out.contains("mode"), "{out}");
}
