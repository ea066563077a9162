//! Shared harness for integration tests: a real server on 127.0.0.1 with its own
//! temporary data folder and config file.
#![allow(dead_code)]

use sparklio_core::config::ConfigInput;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A loopback port nothing listens on (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
        opts: sparklio_core::StartOptions,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let input = input_for(&dir, toml, env);
        let loaded =
            sparklio_core::load_config(&input).unwrap_or_else(|p| panic!("config problems: {p:?}"));
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

/// Path of the `sparklio-test-service` binary (workspace member `crates/test-service`).
/// It is another package, so `CARGO_BIN_EXE_*` does not exist for it: build it once per
/// test run with the cargo that builds these tests (a no-op when fresh) and take it
/// from the profile folder this test executable lives in (`target/<profile>/`).
pub fn test_service() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test>-<hash>
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "sparklio-test-service"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the test service");
        assert!(
            status.success(),
            "cargo build -p sparklio-test-service failed"
        );
        let bin = profile_dir.join(format!(
            "sparklio-test-service{}",
            std::env::consts::EXE_SUFFIX
        ));
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}
