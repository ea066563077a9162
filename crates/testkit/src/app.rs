//! A real Sparklio Desk core on 127.0.0.1 with its own temporary data folder and config
//! file: [`TestApp`] for integration tests, [`start_app`] for benchmarks.

use sparklio_core::config::ConfigInput;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub struct TestApp {
    pub addr: SocketAddr,
    pub app: Option<sparklio_core::RunningApp>,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// Build an input that reads `toml` as the config file, with `env` as the whole environment.
/// `bind` and `data_dir` are set to a free loopback port and a temp folder unless given.
pub fn input_for(dir: &tempfile::TempDir, toml: &str, env: &[(&str, &str)]) -> ConfigInput {
    let path = dir.path().join("sparklio-desk.toml");
    let mut text = String::new();
    if !toml.contains("[storage]") {
        text.push_str(&format!(
            "[storage]\ndata_dir = {:?}\n",
            dir.path().join("data")
        ));
    }
    text.push_str(toml);
    std::fs::write(&path, text).unwrap();
    let mut env_map: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env_map
        .entry("SPARKLIO_DESK_BIND".into())
        .or_insert_with(|| "127.0.0.1:0".into());
    ConfigInput {
        config_flag: Some(path),
        env: env_map,
        dotenv_path: None,
        use_os_config_dir: false,
    }
}

impl TestApp {
    /// Start with `toml` as the config file (appended after a temp `[storage]` section).
    pub async fn start(toml: &str) -> TestApp {
        Self::start_with(toml, &[], Default::default()).await
    }

    pub async fn start_with(
        toml: &str,
        env: &[(&str, &str)],
        mut opts: sparklio_core::StartOptions,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let input = input_for(&dir, toml, env);
        let loaded =
            sparklio_core::load_config(&input).unwrap_or_else(|p| panic!("config problems: {p:?}"));
        // A reload reads the same file and environment again.
        opts.config_input.get_or_insert(input);
        let app = sparklio_core::start(loaded, opts)
            .await
            .expect("app starts");
        TestApp {
            addr: app.addr,
            app: Some(app),
            dir,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file the app was started with (a test may edit it, then reload).
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("sparklio-desk.toml")
    }

    /// A client whose connections come from `source` (e.g. 127.0.0.5): a genuinely
    /// different peer address on Linux, for the untrusted-network paths.
    pub fn client_from(source: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(source.parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await.unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = &self.app {
            app.request_shutdown();
        }
    }
}

/// Start a real app for a benchmark or a browser test: `toml` as its config file (with
/// a temporary data folder), a free loopback port, and the given environment. Several
/// apps may share `dir`: each gets its own config file and data folder.
pub async fn start_app(
    dir: &tempfile::TempDir,
    toml: &str,
    env: &[(&str, &str)],
) -> sparklio_core::RunningApp {
    let n = std::fs::read_dir(dir.path())
        .map(|d| d.count())
        .unwrap_or(0);
    let path = dir.path().join(format!("bench-{n}.toml"));
    // `toml` first: its top-level keys must come before any table.
    std::fs::write(
        &path,
        format!(
            "{toml}\n[storage]\ndata_dir = {:?}\n",
            dir.path().join(format!("data-{n}"))
        ),
    )
    .unwrap();
    let mut env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("SPARKLIO_DESK_BIND".into(), "127.0.0.1:0".into());
    let input = ConfigInput {
        config_flag: Some(path),
        env,
        dotenv_path: None,
        use_os_config_dir: false,
    };
    let loaded = sparklio_core::load_config(&input).expect("config");
    // A reload reads the same file and environment again.
    let opts = sparklio_core::StartOptions {
        config_input: Some(input),
        ..Default::default()
    };
    sparklio_core::start(loaded, opts)
        .await
        .expect("the app starts")
}
