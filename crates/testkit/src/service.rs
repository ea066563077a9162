//! The workspace's `sparklio-test-service` (a stand-in program for the supervisor) and
//! `[[services]]` blocks that run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Path of the `sparklio-test-service` binary (workspace member `crates/test-service`).
/// It is another package, so `CARGO_BIN_EXE_*` does not exist for it: build it once per
/// run with the cargo that built the kit (a no-op when fresh), for the profile and
/// target folder the running test or bench executable comes from.
pub fn test_service() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_binary("sparklio-test-service", "sparklio-test-service"))
        .clone()
}

/// Path of the `sparklio-testkit` binary (the doubles as a separate process), built
/// the same way as [`test_service`]. Tests of this crate have `CARGO_BIN_EXE_sparklio-testkit`.
pub fn testkit_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_binary("sparklio-testkit", "sparklio-testkit"))
        .clone()
}

/// Build `bin` of workspace package `package` into the running executable's target
/// folder and profile, and return its path.
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable");
    // <target>/[<triple>/]<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let above = profile_dir.parent().expect("a target folder");
    // `<target>/<triple>/<profile>` with `--target <triple>`: the folder is named after the
    // triple this kit was built for (cargo tags both levels with CACHEDIR.TAG, and may tag
    // neither when it did not create them, so the tag decides nothing).
    let built_for_a_target =
        above.file_name().and_then(|n| n.to_str()) == Some(env!("SPARKLIO_KIT_TARGET"));
    let (target_dir, triple) = if !built_for_a_target {
        (above.to_path_buf(), None)
    } else {
        let triple = above.file_name().map(|t| t.to_string_lossy().into_owned());
        (
            above.parent().expect("a target folder").to_path_buf(),
            triple,
        )
    };
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(&target_dir)
        // Inside the workspace, whatever folder the test runs in.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    // Run outside cargo (a bench executable started by hand), rustup would pick the
    // toolchain from each dependency's folder (axum-macros pins a nightly there): keep
    // the one that built the kit.
    if let (None, Some(toolchain)) = (
        std::env::var_os("RUSTUP_TOOLCHAIN"),
        option_env!("RUSTUP_TOOLCHAIN"),
    ) {
        cmd.env("RUSTUP_TOOLCHAIN", toolchain);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(custom) => {
            cmd.args(["--profile", custom]);
        }
    }
    if let Some(triple) = &triple {
        cmd.args(["--target", triple]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A `[[services]]` block that runs the test service on `port` under the supervisor,
/// with its health URL. Defaults: probes every 200 ms (1 s timeout, 3 failures),
/// backoff 100–400 ms, 1.5 s to stop. The probe timeout is long enough that a test machine
/// stalled for a second does not restart a healthy service; a hang is still found within
/// about 4 s.
///
/// ```no_run
/// let toml = sparklio_testkit::ServiceToml::new("svc", 9000)
///     .args(&["--startup-ms", "300"])
///     .line("autostart = false")
///     .to_string();
/// assert!(toml.contains("name = \"svc\""));
/// ```
#[derive(Debug, Clone)]
pub struct ServiceToml {
    name: String,
    port: u16,
    args: Vec<String>,
    health: (u64, u64, u32),
    backoff: Option<(u64, u64)>,
    stop_timeout_ms: Option<u64>,
    lines: Vec<String>,
}

impl ServiceToml {
    pub fn new(name: &str, port: u16) -> Self {
        Self {
            name: name.to_string(),
            port,
            args: Vec::new(),
            health: (200, 1000, 3),
            backoff: Some((100, 400)),
            stop_timeout_ms: Some(1500),
            lines: Vec::new(),
        }
    }

    /// Test-service arguments after `--port <port>`.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn health(mut self, interval_ms: u64, timeout_ms: u64, failures: u32) -> Self {
        self.health = (interval_ms, timeout_ms, failures);
        self
    }

    pub fn backoff(mut self, initial_ms: u64, max_ms: u64) -> Self {
        self.backoff = Some((initial_ms, max_ms));
        self
    }

    /// Leave `backoff` to the config's default.
    pub fn default_backoff(mut self) -> Self {
        self.backoff = None;
        self
    }

    pub fn stop_timeout_ms(mut self, ms: u64) -> Self {
        self.stop_timeout_ms = Some(ms);
        self
    }

    /// One more `key = value` line for the block (`provides = ["comfyui"]`, ...).
    pub fn line(mut self, line: impl Into<String>) -> Self {
        let line = line.into();
        if !line.is_empty() {
            self.lines.push(line);
        }
        self
    }
}

impl std::fmt::Display for ServiceToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut args = vec!["--port".to_string(), self.port.to_string()];
        args.extend(self.args.iter().cloned());
        let (interval, timeout, failures) = self.health;
        let port = self.port;
        writeln!(f)?;
        writeln!(f, "[[services]]")?;
        writeln!(f, "name = {}", toml_value(&self.name))?;
        writeln!(f, "kind = \"process\"")?;
        writeln!(
            f,
            "command = {}",
            toml_value(&test_service().display().to_string())
        )?;
        writeln!(f, "args = {}", toml_value(&args))?;
        writeln!(f, "port = {port}")?;
        writeln!(
            f,
            "health = {{ url = \"http://127.0.0.1:{port}/health\", interval_ms = {interval}, timeout_ms = {timeout}, failures = {failures} }}"
        )?;
        if let Some((initial, max)) = self.backoff {
            writeln!(f, "backoff = {{ initial_ms = {initial}, max_ms = {max} }}")?;
        }
        if let Some(ms) = self.stop_timeout_ms {
            writeln!(f, "stop_timeout_ms = {ms}")?;
        }
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A string or a list of strings as TOML: JSON's spelling of them is valid TOML too.
fn toml_value<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("serializable")
}
