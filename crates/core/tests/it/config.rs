//! Config layering (defaults < file < .env < environment), provenance and validation.

use sparklio_core::config::{ConfigInput, GeneratorMode, Source};
use sparklio_core::load_config as load;
use std::collections::BTreeMap;
use std::path::PathBuf;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn input(
        &self,
        file: Option<PathBuf>,
        dotenv: Option<PathBuf>,
        env: &[(&str, &str)],
    ) -> ConfigInput {
        ConfigInput {
            config_flag: file,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            dotenv_path: dotenv,
            use_os_config_dir: false,
        }
    }
}

const FILE: &str = r#"
[server]
bind = "127.0.0.1:12000"

[llm.providers.ollama]
kind = "ollama"
base_url = "http://file.example:11434"
default_model = "from-file"
"#;

#[test]
fn defaults_alone_run_in_mock_mode_on_11500() {
    let l = load(&ConfigInput::default()).unwrap();
    assert_eq!(l.config.server.bind.to_string(), "127.0.0.1:11500");
    assert_eq!(l.config.mode(), GeneratorMode::Mock);
    assert!(matches!(
        l.source_of("generator_mode"),
        Source::Derived { .. }
    ));
    assert_eq!(l.source_of("server.bind"), Source::Default);
    assert_eq!(
        l.config.llm.providers["ollama"].base_url.as_deref(),
        Some("http://127.0.0.1:11434")
    );
    assert!(l.env_overrides.is_empty());
}

#[test]
fn file_beats_defaults_and_records_lines() {
    let f = Files::new();
    let path = f.write("c.toml", FILE);
    let l = load(&f.input(Some(path.clone()), None, &[])).unwrap();
    assert_eq!(l.config.server.bind.to_string(), "127.0.0.1:12000");
    assert_eq!(
        l.source_of("server.bind"),
        Source::File {
            path: path.clone(),
            line: 3
        }
    );
    assert_eq!(
        l.source_of("llm.providers.ollama.default_model"),
        Source::File { path, line: 8 }
    );
    // A live provider named in a file switches the derived mode to live.
    assert_eq!(l.config.mode(), GeneratorMode::Live);
    // Untouched keys stay defaults.
    assert_eq!(l.source_of("server.max_body_bytes"), Source::Default);
}

#[test]
fn dotenv_beats_file_and_environment_beats_dotenv() {
    let f = Files::new();
    let path = f.write("c.toml", FILE);
    let dotenv = f.write(
        ".env",
        "OLLAMA_BASE_URL=http://dotenv.example:11434\nOLLAMA_TIMEOUT=30\nGENERATOR_MODE=mock\n",
    );

    let l = load(&f.input(Some(path.clone()), Some(dotenv.clone()), &[])).unwrap();
    let ollama = &l.config.llm.providers["ollama"];
    assert_eq!(
        ollama.base_url.as_deref(),
        Some("http://dotenv.example:11434")
    );
    assert_eq!(ollama.timeout_s, 30.0);
    assert_eq!(l.config.mode(), GeneratorMode::Mock);
    assert_eq!(
        l.source_of("llm.providers.ollama.base_url"),
        Source::DotEnv {
            path: dotenv.clone(),
            var: "OLLAMA_BASE_URL".into()
        }
    );
    assert!(l.env_overrides.is_empty(), ".env is not an OS override");

    let l = load(&f.input(
        Some(path),
        Some(dotenv),
        &[
            ("OLLAMA_BASE_URL", "http://100.120.180.42:11434"),
            ("GENERATOR_MODE", "live"),
        ],
    ))
    .unwrap();
    assert_eq!(
        l.config.llm.providers["ollama"].base_url.as_deref(),
        Some("http://100.120.180.42:11434")
    );
    assert_eq!(l.config.mode(), GeneratorMode::Live);
    assert_eq!(
        l.source_of("generator_mode"),
        Source::Env {
            var: "GENERATOR_MODE".into()
        }
    );
    // The stale-OS-variable warning: each override says what it replaced.
    let o = l
        .env_overrides
        .iter()
        .find(|o| o.var == "OLLAMA_BASE_URL")
        .unwrap();
    assert_eq!(o.key, "llm.providers.ollama.base_url");
    assert!(
        matches!(o.replaced, Source::DotEnv { .. }),
        "{:?}",
        o.replaced
    );
}

#[test]
fn backend_env_names_are_honoured() {
    let f = Files::new();
    let l = load(&f.input(
        None,
        None,
        &[
            ("OLLAMA_DEFAULT_MODEL", "llama3.2"),
            ("COMFYUI_BASE_URL", "http://127.0.0.1:8189"),
            ("COMFYUI_WORKFLOW_DIR", "workflows/"),
            ("COMFYUI_TIMEOUT", "45"),
            (
                "SPARKLIO_DESK_API_KEYS",
                "k1-0123456789abcdef, k2-0123456789abcdef",
            ),
        ],
    ))
    .unwrap();
    assert_eq!(
        l.config.llm.providers["ollama"].default_model.as_deref(),
        Some("llama3.2")
    );
    let c = &l.config.media.providers["comfyui"];
    assert_eq!(c.base_url.as_deref(), Some("http://127.0.0.1:8189"));
    assert_eq!(c.timeout_s(), 45.0);
    assert_eq!(
        c.workflow_dir.as_deref(),
        Some(std::path::Path::new("workflows/"))
    );
    assert_eq!(l.config.server.api_keys.len(), 2);
    // COMFYUI_BASE_URL configures a live provider.
    assert_eq!(l.config.mode(), GeneratorMode::Live);
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let f = Files::new();
    let path = f.write(
        "bad.toml",
        r#"[server]
bind = "not-an-address"
trusted_networks = ["10.0.0.0/8", "banana"]
api_keys = ["short"]

[[llm.routes]]
provider = "nobody"
tasks = ["x"]
"#,
    );
    let problems =
        load(&f.input(Some(path.clone()), None, &[("OLLAMA_TIMEOUT", "soon")])).unwrap_err();
    let find = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no problem for {key}: {problems:#?}"))
    };
    let bind = find("server.bind");
    assert_eq!(bind.line, Some(2));
    assert_eq!(bind.file.as_deref(), Some(path.as_path()));
    assert!(
        bind.to_string().contains("bad.toml:2: server.bind"),
        "{bind}"
    );
    assert_eq!(find("server.trusted_networks[1]").line, Some(3));
    assert_eq!(find("server.api_keys[0]").line, Some(4));
    assert_eq!(find("llm.routes[0].provider").line, Some(7));
    let timeout = find("llm.providers.ollama.timeout_s");
    assert!(timeout.message.contains("OLLAMA_TIMEOUT"), "{timeout}");
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn type_errors_and_unknown_keys_name_the_key_and_line() {
    let f = Files::new();
    let path = f.write("t.toml", "[server]\nmax_body_bytes = \"big\"\n");
    let p = load(&f.input(Some(path), None, &[])).unwrap_err();
    assert_eq!(p[0].key, "server.max_body_bytes");
    assert_eq!(p[0].line, Some(2));

    let path = f.write("u.toml", "\n[server]\nbindd = \"127.0.0.1:1\"\n");
    let p = load(&f.input(Some(path), None, &[])).unwrap_err();
    assert!(p[0].message.contains("bindd"), "{}", p[0]);
    assert_eq!(p[0].line, Some(3), "the line of the unknown key itself");

    let path = f.write("s.toml", "[server\nbind = 1\n");
    let p = load(&f.input(Some(path), None, &[])).unwrap_err();
    assert!(p[0].message.contains("not valid TOML"), "{}", p[0]);
    assert_eq!(p[0].line, Some(1));
}

#[test]
fn missing_config_file_is_a_problem() {
    let f = Files::new();
    let p = load(&f.input(Some(f.dir.path().join("nope.toml")), None, &[])).unwrap_err();
    assert!(p[0].message.contains("cannot read config file"), "{}", p[0]);
}

#[test]
fn show_redacts_secrets_and_names_sources() {
    let f = Files::new();
    let path = f.write(
        "k.toml",
        "[server]\napi_keys = [\"super-secret-key-0123456789\"]\n",
    );
    let l = load(&f.input(
        Some(path),
        None,
        &[("OLLAMA_BASE_URL", "http://127.0.0.1:1")],
    ))
    .unwrap();
    let shown = sparklio_core::config::render_show(&l);
    assert!(!shown.contains("super-secret-key"), "{shown}");
    assert!(shown.contains("server.api_keys"), "{shown}");
    assert!(shown.contains("[<1 redacted>]"), "{shown}");
    assert!(shown.contains("k.toml:2"), "{shown}");
    assert!(shown.contains("environment OLLAMA_BASE_URL"), "{shown}");
}

#[test]
fn services_share_no_name_or_container() {
    let f = Files::new();
    let path = f.write(
        "services.toml",
        r#"[[services]]
name = "ComfyUI"
kind = "process"
command = "python"
port = 8188

[[services]]
name = "comfyui"
kind = "process"
command = "python"
port = 8188

[[services]]
name = "ollama"
kind = "docker"
container = "ollama"
port = 11434

[[services]]
name = "ollama-2"
kind = "docker"
container = "ollama"
port = 11435
"#,
    );
    let problems = load(&f.input(Some(path), None, &[])).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["services[1].name", "services[3].container"],
        "{problems:#?}"
    );
    assert!(
        problems[0].message.contains("without case"),
        "{problems:#?}"
    );
    assert!(problems[1].message.contains("\"ollama\""), "{problems:#?}");
}

#[test]
fn every_type_error_and_unknown_key_is_reported_in_file_order() {
    let f = Files::new();
    let path = f.write(
        "typo.toml",
        r#"[server]
bnd = "127.0.0.1:11600"
max_body_bytes = "big"
api_keys = "one-key-as-a-string-0123456789"

[llm.providers.ollama]
base_ur = "x"
timeout_s = "fast"

[[services]]
name = 1
kind = "process"
command = "python"

[[services]]
name = "ok"
kind = "proces"
"#,
    );
    let problems = load(&f.input(Some(path.clone()), None, &[])).unwrap_err();
    let found: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        found,
        [
            ("server.bnd", Some(2)),
            ("server.max_body_bytes", Some(3)),
            ("server.api_keys", Some(4)),
            ("llm.providers.ollama.base_ur", Some(7)),
            ("llm.providers.ollama.timeout_s", Some(8)),
            ("services[0].name", Some(11)),
            ("services[1].kind", Some(17)),
        ],
        "{problems:#?}"
    );
    assert!(problems
        .iter()
        .all(|p| p.file.as_deref() == Some(path.as_path())));
    assert!(problems[0].message.contains("bnd"), "{}", problems[0]);
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable_not_a_file_line() {
    let f = Files::new();
    let path = f.write("live.toml", "generator_mode = \"live\"\n");
    let problems =
        load(&f.input(Some(path.clone()), None, &[("GENERATOR_MODE", "Live")])).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert_eq!(
        (p.key.as_str(), p.line, p.file.as_ref()),
        ("generator_mode", None, None),
        "{p}"
    );
    assert!(p.to_string().contains("environment GENERATOR_MODE"), "{p}");
    assert!(!p.to_string().contains("live.toml"), "{p}");

    let dotenv = f.write(".env", "GENERATOR_MODE=Mock\n");
    let problems = load(&f.input(Some(path), Some(dotenv.clone()), &[])).unwrap_err();
    let p = &problems[0];
    assert_eq!((p.line, p.file.as_ref()), (None, None), "{p}");
    let shown = p.to_string();
    assert!(
        shown.contains("GENERATOR_MODE") && shown.contains(&dotenv.display().to_string()),
        "{shown}"
    );

    // With no file at all, the variable is still named.
    let problems = load(&f.input(None, None, &[("GENERATOR_MODE", "LIVE")])).unwrap_err();
    assert!(
        problems[0]
            .to_string()
            .contains("environment GENERATOR_MODE"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_file_route_list_names_the_built_in_routes_it_drops() {
    let f = Files::new();
    let path = f.write(
        "routes.toml",
        "[[llm.routes]]\nname = \"brand to llama\"\nroles = [\"brand\"]\nprovider = \"ollama\"\nmodel = \"llama3.2\"\n\
         [[llm.routes]]\nname = \"writers\"\nroles = [\"copywriter\"]\nprovider = \"ollama\"\nmodel = \"qwen2.5:14b\"\n",
    );
    let l = load(&f.input(Some(path), None, &[])).unwrap();
    // Replaced, not merged: a user can leave a built-in route out.
    let names: Vec<&str> = l
        .config
        .llm
        .routes
        .iter()
        .filter_map(|r| r.name.as_deref())
        .collect();
    assert_eq!(names, ["brand to llama", "writers"]);
    assert_eq!(l.replaced_defaults.len(), 1, "{:?}", l.replaced_defaults);
    let r = &l.replaced_defaults[0];
    assert_eq!(r.key, "llm.routes");
    assert_eq!(r.dropped, ["heavy reasoning", "light tasks", "analysts"]);
    let shown = sparklio_core::config::render_show(&l);
    assert!(
        shown.contains("# warning: llm.routes in")
            && shown.contains("replaces the 4 built-in routes"),
        "{shown}"
    );

    let l = load(&ConfigInput::default()).unwrap();
    assert!(l.replaced_defaults.is_empty(), "{:?}", l.replaced_defaults);
}

#[test]
fn show_redacts_exactly_the_credentials() {
    let f = Files::new();
    let path = f.write(
        "secrets.toml",
        r#"[server]
api_keys = ["gateway-secret-0123456789"]
admin_keys = ["admin-secret-0123456789"]

[[server.keys]]
name = "backend"
key = "named-secret-0123456789"

[llm.sampling]
max_tokens = 1234

[llm.providers.ollama]
base_url = "http://desk:url-password@127.0.0.1:11434"
cost_per_1k_prompt_tokens = 0.5
cost_per_1k_completion_tokens = 1.5

[[services]]
name = "comfyui"
kind = "process"
command = "python"
env = { HF_TOKEN = "hf-secret", CIVITAI_API_KEY = "civitai-secret", CUDA_VISIBLE_DEVICES = "0" }
"#,
    );
    let l = load(&f.input(Some(path), None, &[])).unwrap();
    let shown = sparklio_core::config::render_show(&l);
    for secret in [
        "gateway-secret",
        "admin-secret",
        "named-secret",
        "url-password",
        "hf-secret",
        "civitai-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    // Every leaf of the whole config: exactly the credentials are redacted.
    let redacted: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("<redacted>") || l.contains(" redacted>]"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        redacted,
        [
            "server.admin_keys",
            "server.api_keys",
            "server.keys[0].key",
            "services[0].env.CIVITAI_API_KEY",
            "services[0].env.HF_TOKEN",
        ],
        "{shown}"
    );
    let value = |key: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} not shown:\n{shown}"))
            .to_string()
    };
    assert!(value("llm.sampling.max_tokens").contains("= 1234"));
    assert!(value("llm.providers.ollama.cost_per_1k_prompt_tokens").contains("= 0.5"));
    assert!(value("llm.providers.ollama.cost_per_1k_completion_tokens").contains("= 1.5"));
    assert!(value("services[0].env.CUDA_VISIBLE_DEVICES").contains("\"0\""));
    assert!(
        value("llm.providers.ollama.base_url").contains("http://desk:redacted@127.0.0.1:11434"),
        "{shown}"
    );
}
