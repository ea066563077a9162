//! Helpers for end-to-end tests: a minimal W3C WebDriver client (enough to load a page,
//! find elements, click and take screenshots) and process utilities. Ports and the
//! supervised test service come from `sparklio-testkit` (re-exported here).
//!
//! The same client drives headless Chromium (through chromedriver) for the dashboard
//! and the Tauri window (through tauri-driver and WebKitWebDriver).

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod relay;

/// The W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

// The kit's port and test-service helpers, where the tests of this crate look for them.
pub use sparklio_testkit::{free_port, test_service, wait_for_port};

/// Where tests save screenshots: `$SPARKLIO_ARTIFACTS`, else `<workspace>/ci-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("SPARKLIO_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci-artifacts"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A child process that is killed (with its process group on Unix) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            // The driver was started in its own process group: end the whole group.
            // (Never `/bin/kill -SIG -PGID`: Debian 12's procps kill misreads it and
            // signals every process.)
            let pgid = self.0.id() as libc::pid_t;
            if pgid > 1 {
                unsafe {
                    libc::kill(-pgid, libc::SIGTERM);
                }
                std::thread::sleep(Duration::from_millis(200));
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a WebDriver server binary on a free port, in its own process group.
pub fn start_driver(program: &str, args: &[String], port: u16) -> anyhow::Result<Guard> {
    start_driver_with(program, args, &[], None, port)
}

/// [`start_driver`] with extra environment variables (the driver passes them on to the
/// program it launches) and its output (and that program's) appended to `log`.
pub fn start_driver_with(
    program: &str,
    args: &[String],
    envs: &[(&str, &str)],
    log: Option<&Path>,
    port: u16,
) -> anyhow::Result<Guard> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(path) = log {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        cmd.stdout(file.try_clone()?).stderr(file);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let guard = Guard(child);
    wait_for_port(port, Duration::from_secs(30))?;
    Ok(guard)
}

/// One WebDriver session.
pub struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    /// Open a session on the driver at `driver_url` with these capabilities.
    pub async fn new(driver_url: &str, capabilities: Value) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let resp: Value = http
            .post(format!("{driver_url}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": capabilities}}))
            .send()
            .await?
            .json()
            .await?;
        let id = resp["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session: {resp}"))?;
        Ok(Self {
            http,
            base: format!("{driver_url}/session/{id}"),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await?.json().await?;
        if let Some(err) = resp["value"].get("error") {
            bail!("webdriver {path}: {err}: {}", resp["value"]["message"]);
        }
        Ok(resp["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(|_| ())
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        Ok(self
            .call(reqwest::Method::GET, "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Run JavaScript in the page and return its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Find the first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no element id for {css}: {v}"))
    }

    pub async fn click(&self, element: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    pub async fn text(&self, element: &str) -> anyhow::Result<String> {
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Type into an element as a user would (`\u{E007}` is Enter).
    pub async fn send_keys(&self, element: &str, text: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await
        .map(|_| ())
    }

    /// The element's accessible name, as the browser computes it for assistive technology.
    pub async fn computed_label(&self, element: &str) -> anyhow::Result<String> {
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/computedlabel"),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Resize the window (the page's viewport follows in headless Chromium).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(|_| ())
    }

    /// Poll (bounded) until `script` returns something truthy; return that value.
    pub async fn wait_for(&self, script: &str, limit: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.execute(script, vec![]).await {
                Ok(v) if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) => {
                    return Ok(v)
                }
                Ok(v) => last = v,
                Err(e) => last = json!(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("timed out after {limit:?} waiting for `{script}` (last: {last})")
    }

    /// Save a PNG screenshot of the window.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?;
        std::fs::write(path, png)?;
        Ok(())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.http.delete(&self.base).send().await?;
        Ok(())
    }
}
