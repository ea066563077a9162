//! The headless binary as a user runs it: real processes, real signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sparklio-desk");

/// A command with a clean environment (no stray GENERATOR_MODE etc. from the machine)
/// running in a temp folder (so no `.env` is picked up).
fn cmd(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("RUST_LOG", "info")
        .current_dir(dir.path());
    c
}

/// Start `serve` on a free port; returns the child and its base URL, read from its log.
fn serve(
    dir: &tempfile::TempDir,
    extra: &[&str],
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd(dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(i) = line.find("http://127.0.0.1:") {
                let url = line[i..]
                    .split(['/', ' ', '"'])
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("/");
                return (child, url, rx);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not report its address in time");
}

#[cfg(unix)]
fn sigterm(child: &Child) {
    signal(child, libc::SIGTERM);
}

#[cfg(unix)]
#[allow(unsafe_code)] // a plain kill(2) of our own child
fn signal(child: &Child, signal: libc::c_int) {
    // libc rather than /bin/kill: Debian 12's procps kill has misread pid arguments.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill failed");
}

/// A child process ended even when an assertion fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[cfg(unix)]
#[test]
fn serve_runs_in_mock_mode_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, rx) = serve(&dir, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{url}/api/v1/status"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    assert_eq!(status["generator_mode"], "mock");

    sigterm(&child);
    let exit = wait_exit(&mut child, Duration::from_secs(15)).expect("serve exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let log: Vec<String> = rx.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("shutdown complete")),
        "{log:#?}"
    );
    let addr = url.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "port still open"
    );
}

/// A Desk whose standard error has gone (the terminal closed, `serve | head` exited)
/// still logs, and still stops on SIGTERM: a failed log write must not kill the task
/// that wrote it (it used to be the one waiting for the signal).
#[cfg(unix)]
#[test]
fn serve_stops_on_sigterm_after_its_stderr_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(&dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = lines
            .by_ref()
            .take(200)
            .map_while(Result::ok)
            .any(|l| l.contains("http://127.0.0.1:"));
        assert!(started, "serve did not report its address");
    } // the reading end closes here
    sigterm(&child);
    let exit = wait_exit(&mut child, Duration::from_secs(15));
    if exit.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let exit = exit.expect("serve exits after SIGTERM with its stderr gone");
    assert!(exit.success(), "exit status {exit:?}");
}

/// The database `serve` wrote under `dir` (its data folder).
fn find_db(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_db(&path) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == "sparklio-desk.db") {
            return Some(path);
        }
    }
    None
}

/// Issue 18: N answered requests, then SIGTERM while more are in flight, leaves N usage
/// rows (the usage log's queue is written out on a clean stop).
#[cfg(unix)]
#[test]
fn sigterm_under_load_loses_no_usage_row() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const WORKERS: usize = 16;
    const SIGNAL_AFTER: usize = 600;

    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, rx) = serve(&dir, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answered = rt.block_on(async {
        let client = reqwest::Client::new();
        let answered = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..WORKERS {
            let (client, answered, url) = (client.clone(), answered.clone(), url.clone());
            workers.spawn(async move {
                // Until the server stops answering (bounded, in case it never does).
                for i in 0..5_000 {
                    let body = serde_json::json!({
                        "role": "copywriter",
                        "task": "product_detail",
                        "request_id": format!("load-{w}-{i}"),
                        "payload": {"product_name": "프로틴플러스 초코맛", "features": ["30g 단백질"]},
                    });
                    match client
                        .post(format!("{url}/api/v1/llm/generate"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) | Err(_) => break,
                    }
                }
            });
        }
        let wait_for = |n: usize| {
            let answered = answered.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                while answered.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        wait_for(SIGNAL_AFTER - 4 * WORKERS).await;
        // Hold the database's write lock from here until after the signal, so rows are
        // still queued when the server stops (an idle writer would have caught up).
        // Briefly: a writer kept waiting past its busy timeout (5 s) gives up a batch.
        let db = find_db(dir.path()).expect("the data folder holds sparklio-desk.db");
        let blocker = rusqlite::Connection::open(db).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        wait_for(SIGNAL_AFTER).await;
        sigterm(&child);
        while workers.join_next().await.is_some() {}
        tokio::time::sleep(Duration::from_millis(200)).await;
        blocker.execute_batch("ROLLBACK").unwrap();
        answered.load(Ordering::SeqCst)
    });
    assert!(
        answered >= SIGNAL_AFTER,
        "only {answered} requests answered"
    );
    let exit = wait_exit(&mut child, Duration::from_secs(30)).expect("serve exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let log: Vec<String> = rx.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("shutdown complete")),
        "{log:#?}"
    );

    let db = find_db(dir.path()).expect("the data folder holds sparklio-desk.db");
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM usage WHERE request_id LIKE 'load-%' AND status = 200",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        rows, answered as i64,
        "every answered request has its usage row after SIGTERM"
    );
}

#[test]
fn serve_refuses_a_lan_address_without_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(&dir)
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api_keys") && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn insecure_no_auth_allows_a_lan_address_and_json_logs_parse() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(&dir)
        .args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--insecure-no-auth",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut saw_serving = false;
    for _ in 0..20 {
        let Some(Ok(line)) = lines.next() else { break };
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        if v["message"]
            .as_str()
            .is_some_and(|m| m.contains("is serving"))
        {
            saw_serving = true;
            break;
        }
    }
    sigterm(&child);
    let exit = wait_exit(&mut child, Duration::from_secs(15));
    assert!(saw_serving, "no JSON 'serving' line");
    assert!(exit.is_some_and(|e| e.success()), "exit: {exit:?}");
}

#[test]
fn config_check_reports_problems_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nbind = \"nope\"\n").unwrap();
    let out = cmd(&dir)
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2: server.bind"), "{err}");

    let out = cmd(&dir).args(["config", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_warns_when_the_file_routes_drop_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(
        &file,
        "[[llm.routes]]\nname = \"brand to llama\"\nroles = [\"brand\"]\nprovider = \"ollama\"\nmodel = \"llama3.2\"\n",
    )
    .unwrap();
    let out = cmd(&dir)
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "a valid config: {out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let warning = said
        .lines()
        .find(|l| l.starts_with("warning: llm.routes in"))
        .unwrap_or_else(|| panic!("no warning: {said}"));
    assert!(
        warning.contains("routes.toml replaces the 4 built-in routes and drops")
            && warning.contains("\"writers\""),
        "{warning}"
    );
}

#[test]
fn config_show_names_the_environment_and_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "OLLAMA_BASE_URL=http://10.9.9.9:11434\nCOMFYUI_TIMEOUT=60\n",
    )
    .unwrap();
    let out = cmd(&dir)
        .env("OLLAMA_BASE_URL", "http://100.120.180.42:11434")
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("llm.providers.ollama.base_url"))
        .unwrap();
    assert!(
        line.contains("100.120.180.42") && line.contains("environment OLLAMA_BASE_URL"),
        "{line}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("media.providers.comfyui.timeout_s"))
        .unwrap();
    assert!(line.contains("60") && line.contains(".env"), "{line}");
}

#[test]
fn default_config_prints_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(&dir).args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let file = dir.path().join("copy.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = cmd(&dir)
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_e2e_writes_the_six_results_and_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("results/p0.json");
    let out = cmd(&dir)
        .args(["check", "e2e", "--out"])
        .arg(&out_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("brand_summary") && stdout.contains("passed"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    for key in [
        "brand_summary",
        "brief",
        "sections",
        "copy",
        "image",
        "review",
    ] {
        assert!(!report["result"][key].is_null(), "{key} missing");
    }
    assert_eq!(report["within_budget"], true);
    assert!(report["total_ms"].as_f64().unwrap() > 0.0);
    let image = std::fs::read(dir.path().join("results/p0.png")).unwrap();
    assert!(image.starts_with(b"\x89PNG"));
    assert_eq!(
        report["result"]["image"]["file"],
        serde_json::json!(dir.path().join("results/p0.png"))
    );
}

#[test]
fn check_e2e_names_the_failed_step() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback: the first step fails at once.
    let out = cmd(&dir)
        .args(["check", "e2e", "--url", "http://127.0.0.1:9", "--out"])
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAILED at step brand_summary"), "{err}");
}

/// The check started here runs apart from the operator's Desk: it starts none of the
/// config's services (a mock check used to start ComfyUI and the containers) and keeps
/// its data in a scratch folder (it used to share the serving Desk's database and fail
/// its running flow jobs at start). A file it cannot write is named.
#[cfg(unix)]
#[test]
fn check_e2e_runs_apart_from_the_configs_services_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started.txt");
    let data = dir.path().join("desk-data");
    let file = dir.path().join("desk.toml");
    std::fs::write(
        &file,
        format!(
            "[storage]\ndata_dir = {data:?}\n\n[[services]]\nname = \"marker\"\nkind = \"process\"\n\
             command = \"/bin/sh\"\nargs = [\"-c\", \"echo started >> {}; exec sleep 30\"]\nrestart = \"never\"\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = cmd(&dir)
        .args(["check", "e2e", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(!marker.exists(), "the check started the config's service");
    assert!(
        !data.exists() || std::fs::read_dir(&data).unwrap().next().is_none(),
        "the check wrote into the config's data folder"
    );

    // A report it cannot write: the error names the folder.
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let out = cmd(&dir)
        .args(["check", "e2e", "--out"])
        .arg(dir.path().join("a-file/r.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot make the folder {}",
            dir.path().join("a-file").display()
        )),
        "{err}"
    );
}

/// Ctrl-C during a check stops it at once, with the shell's code for it (130), and the
/// app it started is shut down, not left behind.
#[cfg(unix)]
#[test]
fn check_e2e_stopped_by_ctrl_c_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("desk.toml");
    // A mock image that takes 30 s: the check is still drawing when interrupted.
    std::fs::write(
        &file,
        "[media.providers.mock]\nkind = \"mock\"\nstep_delay_ms = 1000\n",
    )
    .unwrap();
    let mut child = cmd(&dir)
        .args(["check", "e2e", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("r.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("image_prompt")),
        "the check never reached the image"
    );
    signal(&child, libc::SIGINT);
    let exit = wait_exit(&mut child, Duration::from_secs(10)).expect("the check stops on Ctrl-C");
    assert_eq!(exit.code(), Some(130));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        !dir.path().join("r.json").exists(),
        "no report of a check that did not end"
    );
}

/// `config reload` asks the running `serve` to apply an edited file: it says what
/// changed; a broken file is refused with its problem and changes nothing.
#[test]
fn config_reload_applies_an_edit_to_the_running_desk() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("desk.toml");
    std::fs::write(&file, "[media]\ndefault_provider = \"mock\"\n").unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let (child, url, _log) = serve(&dir, &["--config", &file_arg]);
    let _serve = KillOnDrop(child);
    let reload = |dir: &tempfile::TempDir| {
        cmd(dir)
            .args(["--config", &file_arg, "config", "reload", "--url", &url])
            .output()
            .unwrap()
    };
    let out = reload(&dir);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("reloaded: no change"), "{text}");

    std::fs::write(
        &file,
        "[media]\ndefault_provider = \"mock\"\n[server]\nmax_body_bytes = 1000000\n",
    )
    .unwrap();
    let out = reload(&dir);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("reloaded: 1 setting(s) changed"), "{text}");

    std::fs::write(&file, "[media]\ndefault_provider = \"nowhere\"\n").unwrap();
    let out = reload(&dir);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Checked here first (the Desk checks again and keeps its last good config).
    assert!(text.contains("nowhere"), "{text}");
    // Still serving.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    let host = url.trim_start_matches("http://");
    conn.write_all(format!("GET /healthz HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "{answer}"
    );
}

/// When no Desk answers, `config reload` names the address it tried: the `--url` given,
/// or the file's `server.bind`; after `server.bind` was edited (restart-only), it points
/// at the address the running Desk started on, from this config file.
#[test]
fn config_reload_names_the_address_tried_and_where_the_running_desk_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("desk.toml");
    let file_arg = file.to_str().unwrap().to_string();
    std::fs::write(&file, "").unwrap();
    let (child, url, _log) = serve(&dir, &["--config", &file_arg]);
    let _serve = KillOnDrop(child);
    // The edited bind: nothing listens there.
    let edited = format!("127.0.0.1:{}", sparklio_testkit::free_port());
    std::fs::write(&file, format!("[server]\nbind = \"{edited}\"\n")).unwrap();

    let out = cmd(&dir)
        .args(["--config", &file_arg, "config", "reload"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("no Sparklio Desk answers at http://{edited}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("sparklio-desk config reload --url {url}")),
        "{err}"
    );

    let elsewhere = format!("http://127.0.0.1:{}", sparklio_testkit::free_port());
    let out = cmd(&dir)
        .args([
            "--config", &file_arg, "config", "reload", "--url", &elsewhere,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("no Sparklio Desk answers at {elsewhere}")),
        "{err}"
    );
    assert!(!err.contains(&edited), "{err}");

    // Applied there: the new bind waits for a restart.
    let out = cmd(&dir)
        .args(["--config", &file_arg, "config", "reload", "--url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check e2e --key` is read from SPARKLIO_DESK_API_KEY (the backend's and the Python
/// client's name) and still from the older SPARKLIO_DESK_KEY.
#[test]
fn check_e2e_takes_the_key_from_sparklio_desk_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("desk.toml");
    let key = "sk-e2e-key-0123456789abcdef";
    // Loopback untrusted: every request needs the key.
    std::fs::write(
        &file,
        format!("[server]\ntrusted_networks = []\napi_keys = [\"{key}\"]\n"),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let (child, url, _log) = serve(&dir, &["--config", &file_arg]);
    let _serve = KillOnDrop(child);
    let check = |env: Option<&str>| {
        let mut c = cmd(&dir);
        c.args(["check", "e2e", "--url", &url, "--out"])
            .arg(dir.path().join("r.json"));
        if let Some(var) = env {
            c.env(var, key);
        }
        c.output().unwrap()
    };
    let out = check(None);
    assert_eq!(out.status.code(), Some(1), "refused without a key");
    for var in ["SPARKLIO_DESK_API_KEY", "SPARKLIO_DESK_KEY"] {
        let out = check(Some(var));
        assert!(
            out.status.success(),
            "{var}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
