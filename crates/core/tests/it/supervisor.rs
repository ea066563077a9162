//! Supervisor tests with real child processes: `sparklio-test-service` (the workspace
//! member `crates/test-service`) serves a health URL and, on command, exits, hangs,
//! ignores SIGTERM or starts a grandchild.
//!
//! Locating the binary: it is another package, so `CARGO_BIN_EXE_*` does not exist here.
//! `sparklio_testkit::test_service()` runs `cargo build -p sparklio-test-service` once per
//! test run (a no-op when fresh) and takes the binary from the profile folder this test
//! executable lives in (`target/<profile>/`).

use serde_json::{json, Value};
use sparklio_testkit::{free_port, test_service, ServiceToml, TestApp};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A `[[services]]` block running the test service on `port` with extra args and keys.
fn service_toml(name: &str, port: u16, args: &[&str], extra: &str) -> String {
    ServiceToml::new(name, port)
        .args(args)
        .line(extra)
        .to_string()
}

pub(crate) async fn service(app: &TestApp, name: &str) -> Value {
    let (status, body) = app.get_json("/api/v1/services").await;
    assert_eq!(status, 200, "{body}");
    body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Poll until the service's state is `want` (bounded: 20 s).
pub(crate) async fn wait_state(app: &TestApp, name: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = service(app, name).await;
        if s["state"] == want {
            return s;
        }
        assert!(Instant::now() < deadline, "{name} never became {want}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until the service runs with a pid other than `old` (bounded: 20 s).
pub(crate) async fn wait_new_pid(app: &TestApp, name: &str, old: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = service(app, name).await;
        if s["state"] == "running" && s["pid"].is_u64() && &s["pid"] != old {
            return s;
        }
        assert!(Instant::now() < deadline, "{name} not restarted: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events of one service, oldest first.
pub(crate) async fn events(app: &TestApp, name: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/api/v1/events?limit=200&service={name}"))
        .await;
    assert_eq!(status, 200);
    let mut list = body["events"].as_array().unwrap().clone();
    list.reverse();
    list
}

pub(crate) fn transitions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{}->{}",
                e["from"].as_str().unwrap_or("-"),
                e["to"].as_str().unwrap()
            )
        })
        .collect()
}

async fn post(port: u16, path: &str) {
    let _ = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
}

/// Alive and not a zombie (Linux: a container's PID 1 may not reap orphans quickly).
#[cfg(target_os = "linux")]
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

async fn read_stream_until(resp: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never arrived: {seen}"
        );
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    seen
}

async fn stream_ends(resp: &mut reqwest::Response) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn crash_restarts_with_backoff() {
    let port = free_port();
    let app = TestApp::start(&service_toml("svc", port, &[], "")).await;
    let first = wait_state(&app, "svc", "running").await;
    assert!(first["last_probe_latency_ms"].as_f64().is_some(), "{first}");
    assert!(first["uptime_s"].is_u64(), "{first}");

    post(port, "/exit/3").await;
    let again = wait_new_pid(&app, "svc", &first["pid"]).await;
    assert_eq!(again["restarts"], 1);
    assert_eq!(again["last_exit"]["code"], 3);
    assert_eq!(again["last_exit"]["reason"], "exit code 3");

    let evs = events(&app, "svc").await;
    let t = transitions(&evs);
    let at = t
        .iter()
        .position(|x| x == "running->crashed")
        .expect("crash event");
    assert_eq!(
        &t[at..at + 4],
        [
            "running->crashed",
            "crashed->backoff",
            "backoff->starting",
            "starting->running"
        ],
        "{t:?}"
    );
    assert_eq!(evs[at]["reason"], "exit code 3");
    assert_eq!(evs[at]["actor"], "supervisor");
    let backoff = evs[at + 1]["reason"].as_str().unwrap();
    assert!(backoff.starts_with("restarting in 100 ms"), "{backoff}");
    app.stop().await;
}

#[tokio::test]
async fn crash_loop_ends_in_failed_with_an_event() {
    let port = free_port();
    let toml = service_toml(
        "loop",
        port,
        &["--exit-after-ms", "50", "--exit-code", "7"],
        "crash_loop = { restarts = 2, within_s = 60 }\nrestart = \"always\"",
    );
    let app = TestApp::start(&toml).await;
    let failed = wait_state(&app, "loop", "failed").await;
    assert_eq!(failed["restarts"], 2);
    let evs = events(&app, "loop").await;
    let last = evs.last().unwrap();
    assert_eq!(last["to"], "failed");
    assert_eq!(last["from"], "crashed");
    let why = last["reason"].as_str().unwrap();
    assert!(why.contains("crash loop: 2 restarts within 60 s"), "{why}");
    assert!(why.contains("exit code 7"), "{why}");
    // The backoff doubled between the two restarts.
    let delays: Vec<&str> = evs
        .iter()
        .filter(|e| e["to"] == "backoff")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(delays[0].starts_with("restarting in 100 ms"), "{delays:?}");
    assert!(delays[1].starts_with("restarting in 200 ms"), "{delays:?}");
    // No more retries: it stays failed.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(service(&app, "loop").await["state"], "failed");
    assert_eq!(events(&app, "loop").await.len(), evs.len());
    // A manual start tries again.
    let (status, body) = app
        .post_json("/api/v1/services/loop/start", &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while events(&app, "loop").await.len() == evs.len() {
        assert!(Instant::now() < deadline, "manual start made no event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let evs = events(&app, "loop").await;
    let manual = evs.iter().find(|e| e["from"] == "failed").unwrap();
    assert_eq!(manual["to"], "starting");
    let why = manual["reason"].as_str().unwrap();
    assert!(
        why.starts_with("started by trusted client from 127.0.0.1"),
        "{why}"
    );
    app.stop().await;
}

#[tokio::test]
async fn hang_is_unhealthy_then_restarted() {
    let port = free_port();
    let app = TestApp::start(&service_toml("hang", port, &[], "")).await;
    let first = wait_state(&app, "hang", "running").await;
    post(port, "/hang").await;
    wait_new_pid(&app, "hang", &first["pid"]).await;
    let evs = events(&app, "hang").await;
    let t = transitions(&evs);
    let at = t
        .iter()
        .position(|x| x == "running->unhealthy")
        .expect("unhealthy event");
    assert_eq!(
        &t[at..at + 4],
        [
            "running->unhealthy",
            "unhealthy->restarting",
            "restarting->starting",
            "starting->running"
        ],
        "{t:?}"
    );
    let why = evs[at]["reason"].as_str().unwrap();
    assert!(why.starts_with("3 health probes failed"), "{why}");
    assert!(why.contains("timed out after 1000 ms"), "{why}");
    #[cfg(target_os = "linux")]
    assert!(
        !alive(first["pid"].as_u64().unwrap() as u32),
        "the hung process was not ended"
    );
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn stop_ends_grandchildren_and_kills_what_ignores_sigterm() {
    let port = free_port();
    let app = TestApp::start(&service_toml("tree", port, &["--ignore-sigterm"], "")).await;
    let s = wait_state(&app, "tree", "running").await;
    let pid = s["pid"].as_u64().unwrap() as u32;
    let grandchild: u32 = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/grandchild"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .expect("grandchild pid");
    #[cfg(target_os = "linux")]
    assert!(alive(grandchild));
    let started = Instant::now();
    let (status, body) = app
        .post_json("/api/v1/services/tree/stop", &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let stopped = wait_state(&app, "tree", "stopped").await;
    // SIGTERM is ignored, so only the kill after stop_timeout_ms (1.5 s) ends it.
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "stopped too early for a kill"
    );
    assert_eq!(stopped["pid"], Value::Null);
    #[cfg(target_os = "linux")]
    {
        assert!(!alive(pid), "service still running");
        assert!(!alive(grandchild), "grandchild still running");
    }
    let (_, logs) = app.get_json("/api/v1/services/tree/logs?tail=50").await;
    let text = logs.to_string();
    assert!(text.contains("SIGTERM received and ignored"), "{text}");
    assert!(text.contains("killed the process tree"), "{text}");
    let ev = events(&app, "tree").await;
    let stop = ev.last().unwrap();
    assert_eq!(stop["to"], "stopped");
    let why = stop["reason"].as_str().unwrap();
    assert!(
        why.starts_with("stopped by trusted client from 127.0.0.1"),
        "{why}"
    );
    let _ = pid;
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn graceful_stop_ends_a_tree_without_a_kill() {
    let port = free_port();
    let app = TestApp::start(&service_toml("nice", port, &["--grandchild"], "")).await;
    wait_state(&app, "nice", "running").await;
    let started = Instant::now();
    app.post_json("/api/v1/services/nice/stop", &json!({}))
        .await;
    wait_state(&app, "nice", "stopped").await;
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "graceful stop waited for the kill"
    );
    let (_, logs) = app.get_json("/api/v1/services/nice/logs?tail=20").await;
    assert!(logs.to_string().contains("stopped gracefully"), "{logs}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_stops_services_unless_detached() {
    let (port, port2) = (free_port(), free_port());
    let toml = format!(
        "{}{}",
        service_toml("attached", port, &[], ""),
        service_toml("detached", port2, &[], "detach = true")
    );
    let app = TestApp::start(&toml).await;
    let a = wait_state(&app, "attached", "running").await["pid"]
        .as_u64()
        .unwrap() as u32;
    let d = wait_state(&app, "detached", "running").await["pid"]
        .as_u64()
        .unwrap() as u32;
    app.stop().await;
    #[cfg(target_os = "linux")]
    {
        assert!(!alive(a), "attached service left running");
        assert!(alive(d), "detached service was stopped");
    }
    let health = reqwest::get(format!("http://127.0.0.1:{port2}/health")).await;
    assert!(health.is_ok_and(|r| r.status() == 200));
    let refused = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    assert!(refused.is_err(), "attached service still answers");
    // Clean up the detached one ourselves.
    post(port2, "/exit/0").await;
    let _ = (a, d);
}

/// Two services may name one port (alternatives: a process or a container): the one
/// that cannot start says which of the Desk's own services holds the port (it blamed
/// "a process Sparklio Desk did not start"), and the executable's whole name.
#[tokio::test]
async fn a_port_held_by_another_of_the_desks_services_names_that_service() {
    let port = free_port();
    let toml = format!(
        "{}{}",
        service_toml("first", port, &[], ""),
        service_toml("second", port, &[], "autostart = false")
    );
    let app = TestApp::start(&toml).await;
    let first = wait_state(&app, "first", "running").await;
    app.post_json("/api/v1/services/second/start", &json!({}))
        .await;
    let s = wait_state(&app, "second", "unavailable").await;
    let why = s["reason"].as_str().unwrap();
    if cfg!(target_os = "linux") {
        assert!(
            why.contains(&format!("held by service first (pid {})", first["pid"])),
            "{why}"
        );
        assert!(!why.contains("did not start"), "{why}");
    } else {
        assert!(why.contains(&port.to_string()), "{why}");
    }
    app.stop().await;
}

#[tokio::test]
async fn port_taken_by_another_process_is_reported_and_not_started() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let app = TestApp::start(&service_toml("busy", port, &[], "provides = [\"comfyui\"]")).await;
    let s = wait_state(&app, "busy", "unavailable").await;
    let why = s["reason"].as_str().unwrap();
    assert!(
        why.contains(&format!("port {port} is already in use")),
        "{why}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            why.contains(&format!("pid {}", std::process::id())),
            "{why}"
        );
    }
    assert_eq!(s["pid"], Value::Null);
    assert_eq!(s["port_holder"].as_str(), Some(why));
    let down = app
        .app
        .as_ref()
        .unwrap()
        .state
        .provider_board
        .down_reason("comfyui");
    assert!(down.is_some_and(|d| d.contains("unavailable")));
    // Once the port is free, the service starts (the recheck runs every 5 s).
    drop(holder);
    wait_state(&app, "busy", "running").await;
    app.stop().await;
}

#[tokio::test]
async fn logs_api_tail_and_stream() {
    let port = free_port();
    let app = TestApp::start(&service_toml("talk", port, &["--print", "3"], "")).await;
    wait_state(&app, "talk", "running").await;
    let (status, body) = app.get_json("/api/v1/services/talk/logs?tail=100").await;
    assert_eq!(status, 200);
    let lines = body["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stdout" && l["line"] == "stdout line 2"),
        "{body}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["line"] == "stderr line 0"),
        "{body}"
    );
    let (_, two) = app.get_json("/api/v1/services/talk/logs?tail=2").await;
    assert_eq!(two["lines"].as_array().unwrap().len(), 2);
    let file = PathBuf::from(body["file"].as_str().unwrap());
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("stderr line 2"));

    let (status, bad) = app.get_json("/api/v1/services/talk/logs?tail=lots").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "VALIDATION_ERROR");
    let (status, missing) = app.get_json("/api/v1/services/nope/logs").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "NOT_FOUND");
    let (status, _) = app
        .post_json("/api/v1/services/nope/restart", &json!({}))
        .await;
    assert_eq!(status, 404);

    // Live tail: a line printed now arrives on the stream.
    let mut resp = app
        .client
        .get(app.url("/api/v1/services/talk/logs/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    post(port, "/print/1").await;
    let seen = read_stream_until(&mut resp, "stdout line 0").await;
    assert!(seen.contains("event: log"), "{seen}");
    // The stream ends when the app shuts down.
    app.app.as_ref().unwrap().request_shutdown();
    assert!(
        stream_ends(&mut resp).await,
        "log stream did not end on shutdown"
    );
    app.stop().await;
}

#[tokio::test]
async fn events_api_and_stream() {
    let port = free_port();
    let app = TestApp::start(&service_toml("ev", port, &[], "autostart = false")).await;
    assert_eq!(service(&app, "ev").await["state"], "stopped");
    let mut stream = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    app.post_json("/api/v1/services/ev/start", &json!({})).await;
    wait_state(&app, "ev", "running").await;
    let seen = read_stream_until(&mut stream, "\"to\":\"running\"").await;
    assert!(seen.contains("event: service_state"), "{seen}");
    assert!(seen.contains("\"to\":\"starting\""), "{seen}");

    let (status, body) = app.get_json("/api/v1/events?limit=1").await;
    assert_eq!(status, 200);
    let list = body["events"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["to"], "running");
    for key in ["id", "ts", "service", "from", "to", "reason", "actor"] {
        assert!(list[0].get(key).is_some(), "missing {key}: {}", list[0]);
    }
    let (status, bad) = app.get_json("/api/v1/events?limit=x").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "VALIDATION_ERROR");
    // Stored in SQLite.
    let rows: i64 = app
        .app
        .as_ref()
        .unwrap()
        .state
        .store
        .with(|c| {
            c.query_row(
                "SELECT count(*) FROM events WHERE service = 'ev'",
                [],
                |r| r.get(0),
            )
        })
        .await
        .unwrap();
    assert!(rows >= 2);
    app.app.as_ref().unwrap().request_shutdown();
    assert!(
        stream_ends(&mut stream).await,
        "event stream did not end on shutdown"
    );
    app.stop().await;
}

#[tokio::test]
async fn control_routes_need_the_admin_scope() {
    let port = free_port();
    let toml = format!(
        "[server]\ntrusted_networks = [\"127.0.0.1/32\"]\napi_keys = [\"gateway-key-0123456789\"]\nadmin_keys = [\"admin-key-0123456789ab\"]\n{}",
        service_toml("guarded", port, &[], "autostart = false")
    );
    let app = TestApp::start(&toml).await;
    let outside = TestApp::client_from("127.0.0.5");
    let url = app.url("/api/v1/services/guarded/start");
    let r = outside.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = outside
        .post(&url)
        .bearer_auth("gateway-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "FORBIDDEN"
    );
    for path in ["/api/v1/services", "/api/v1/services/guarded/logs"] {
        let r = outside
            .get(app.url(path))
            .bearer_auth("gateway-key-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(service(&app, "guarded").await["state"], "stopped");
    // The gateway key opens the event log and system status.
    for path in ["/api/v1/events", "/api/v1/system?history=false"] {
        let r = outside
            .get(app.url(path))
            .bearer_auth("gateway-key-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }

    let r = outside
        .post(&url)
        .bearer_auth("admin-key-0123456789ab")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let first = wait_state(&app, "guarded", "running").await;
    let ev = events(&app, "guarded").await;
    let who = ev.iter().find(|e| e["to"] == "starting").unwrap();
    let why = who["reason"].as_str().unwrap();
    assert!(
        why.starts_with("started by admin from 127.0.0.5 (key "),
        "{why}"
    );
    assert!(who["actor"]
        .as_str()
        .unwrap()
        .starts_with("admin from 127.0.0.5"));
    // A request cannot change the command: the body is ignored, the config wins.
    let r = outside
        .post(app.url("/api/v1/services/guarded/restart"))
        .bearer_auth("admin-key-0123456789ab")
        .json(&json!({"command": "/bin/sh", "args": ["-c", "echo pwned"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_new_pid(&app, "guarded", &first["pid"]).await;
    let (_, logs) = app.get_json("/api/v1/services/guarded/logs?tail=100").await;
    assert!(!logs.to_string().contains("pwned"));
    assert!(logs.to_string().contains("sparklio-test-service"), "{logs}");
    app.stop().await;
}

#[tokio::test]
async fn restart_all_restarts_every_controllable_service() {
    let (p1, p2) = (free_port(), free_port());
    let toml = format!(
        "{}{}",
        service_toml("one", p1, &[], ""),
        service_toml("two", p2, &[], "")
    );
    let app = TestApp::start(&toml).await;
    let a = wait_state(&app, "one", "running").await["pid"].clone();
    let b = wait_state(&app, "two", "running").await["pid"].clone();
    let (status, body) = app
        .post_json("/api/v1/services/restart-all", &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["services"], json!(["one", "two"]));
    wait_new_pid(&app, "one", &a).await;
    wait_new_pid(&app, "two", &b).await;
    app.stop().await;
}

#[tokio::test]
async fn docker_unavailable_is_reported_cleanly() {
    let dead = free_port();
    let toml = format!(
        r#"
[supervisor]
docker_host = "tcp://127.0.0.1:{dead}"

[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
provides = ["ollama"]
crash_loop = {{ restarts = 1, within_s = 60 }}
health = {{ url = "http://127.0.0.1:{dead}/", interval_ms = 200, timeout_ms = 200 }}
"#
    );
    let app = TestApp::start(&toml).await;
    let s = wait_state(&app, "ollama-sparklio", "unavailable").await;
    let why = s["reason"].as_str().unwrap();
    assert!(why.starts_with("Docker is not running"), "{why}");
    assert_eq!(s["restarts"], 0);
    let state = &app.app.as_ref().unwrap().state;
    let down = state
        .provider_board
        .down_reason("ollama")
        .expect("provider marked down");
    assert!(down.contains("Docker is not running"), "{down}");
    // Not a crash loop: still unavailable after a recheck, never crashed or failed.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(
        service(&app, "ollama-sparklio").await["state"],
        "unavailable"
    );
    let evs = events(&app, "ollama-sparklio").await;
    assert!(
        evs.iter()
            .all(|e| e["to"] != "crashed" && e["to"] != "failed"),
        "{evs:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn gateway_link_marks_the_provider_down_while_its_service_is_down() {
    let port = free_port();
    let app = TestApp::start(&service_toml(
        "comfy",
        port,
        &[],
        "provides = [\"comfyui\"]\nautostart = false\nrestart = \"never\"",
    ))
    .await;
    let board = |app: &TestApp| {
        app.app
            .as_ref()
            .unwrap()
            .state
            .provider_board
            .down_reason("comfyui")
    };
    wait_state(&app, "comfy", "stopped").await;
    assert!(board(&app).is_some_and(|r| r.contains("service comfy is stopped")));
    app.post_json("/api/v1/services/comfy/start", &json!({}))
        .await;
    wait_state(&app, "comfy", "running").await;
    assert_eq!(board(&app), None);
    post(port, "/exit/9").await;
    wait_state(&app, "comfy", "crashed").await;
    let r = board(&app).expect("down after the crash");
    assert!(r.contains("crashed") && r.contains("exit code 9"), "{r}");
    let backing = app
        .app
        .as_ref()
        .unwrap()
        .state
        .supervisor
        .provider_services("comfyui");
    assert_eq!(backing.len(), 1);
    assert_eq!(backing[0].name, "comfy");
    app.stop().await;
}

#[tokio::test]
async fn external_service_is_watched_not_controlled() {
    let port = free_port();
    let toml = format!(
        "[[services]]\nname = \"ext\"\nkind = \"external\"\nhealth = {{ url = \"http://127.0.0.1:{port}/health\", interval_ms = 100, timeout_ms = 200, failures = 2 }}\n"
    );
    let app = TestApp::start(&toml).await;
    let (status, body) = app
        .post_json("/api/v1/services/ext/restart", &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "NOT_CONTROLLABLE");
    let mut child = std::process::Command::new(test_service())
        .args(["--port", &port.to_string()])
        .spawn()
        .unwrap();
    wait_state(&app, "ext", "running").await;
    child.kill().unwrap();
    let _ = child.wait();
    let s = wait_state(&app, "ext", "unhealthy").await;
    let why = s["reason"].as_str().unwrap();
    assert!(why.contains("health probes failed"), "{why}");
    app.stop().await;
}

#[tokio::test]
async fn system_status_answers_without_a_gpu() {
    let app = TestApp::start("[system]\nsample_interval_ms = 500\n").await;
    let (status, body) = app.get_json("/api/v1/system").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["memory_total_bytes"].as_u64().unwrap() > 0, "{body}");
    assert!(body["cpu_percent"].is_number());
    assert!(body["disk"]["total_bytes"].as_u64().unwrap() > 0, "{body}");
    let gpu = &body["gpu"];
    if gpu["available"] == false {
        assert!(gpu["reason"].as_str().unwrap().contains("NVIDIA"), "{gpu}");
        assert_eq!(gpu["devices"], json!([]));
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, body) = app.get_json("/api/v1/system").await;
    assert!(body["history"].as_array().unwrap().len() >= 2, "{body}");
    app.stop().await;
}

#[test]
fn default_config_service_examples_are_valid() {
    // Uncomment the [[services]] examples of default.toml: they must parse and validate.
    let text = sparklio_core::config::DEFAULT_TOML;
    let start = text.find("# [[services]]").unwrap();
    let mut examples = String::new();
    for line in text[start..].lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            if rest.starts_with("[[services]]") || rest.contains(" = ") {
                examples.push_str(rest);
                examples.push('\n');
            }
        }
    }
    let full = format!("{text}\n[llm.providers.ollama_lab]\nkind = \"ollama\"\nbase_url = \"http://127.0.0.1:11435\"\n{examples}");
    let config: sparklio_core::config::Config = toml::from_str(&full).expect("examples parse");
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ollama-sparklio",
            "ollama-lab",
            "comfyui",
            "ollama-native",
            "comfyui-remote"
        ]
    );
    let comfy = &config.services[2];
    assert_eq!(
        comfy.command.as_deref(),
        Some(r"D:\AI\ComfyUI\python_embeded\python.exe")
    );
    assert!(comfy.args.windows(2).any(|w| w == ["--listen", "0.0.0.0"]));
    assert_eq!(
        comfy.env.get("PYTHONIOENCODING").map(String::as_str),
        Some("utf-8")
    );
    assert_eq!(
        comfy.env.get("PYTHONUNBUFFERED").map(String::as_str),
        Some("1")
    );
    let problems = sparklio_core::config::validate(&config, &sparklio_core::app::known_kinds());
    assert!(problems.is_empty(), "{problems:?}");
}

/// A test double of the Docker Engine API (the few calls the supervisor makes), with
/// the engine's real shapes: `/v1.xx/containers/{name}/json|start|stop|restart|logs`,
/// 404 `{"message"}` for unknown containers, and the multiplexed log stream; on demand
/// `/version`, the `/events` stream, and Docker Desktop's 500s while its engine starts.
mod docker_double {
    use axum::body::Body;
    use axum::http::{Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Default)]
    pub struct Engine {
        pub running: bool,
        pub pid: u32,
        pub exit_code: i64,
        pub calls: Vec<String>,
        /// Answer 500 with an empty body to every engine call, as Docker Desktop does
        /// through its named pipe while its engine starts or restarts (docker/for-win#13909,
        /// #15049); the event stream it serves ends.
        pub failing: bool,
        /// What `/version` says the engine's API version is; `None`: no `/version` (404),
        /// like an old proxy.
        pub api_version: Option<&'static str>,
        /// Serve `/events` (held open, no events, until the engine starts failing);
        /// off: 404, like a proxy without it.
        pub events: bool,
        /// `/events` subscriptions served.
        pub subscriptions: u32,
        /// Answer this many `/events` requests 500 while the rest works, as an engine
        /// whose event service is not up yet; when each came.
        pub events_refusals: u32,
        pub refused_at: Vec<std::time::Instant>,
        /// `/version` answers given (200).
        pub version_answers: u32,
        /// Refuse `start` with 500 and these words while the engine works, as the engine
        /// does for a port already allocated or an OCI runtime error.
        pub start_refusal: Option<&'static str>,
        /// Events the `/events` stream sends next (one JSON object per line).
        pub queued_events: std::collections::VecDeque<serde_json::Value>,
        /// Answer `inspect` this late (a busy Docker Desktop behind its named pipe).
        pub inspect_delay_ms: u64,
    }

    pub type Shared = Arc<Mutex<Engine>>;

    fn frame(stream: u8, text: &str) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(text.len() as u32).to_be_bytes());
        f.extend_from_slice(text.as_bytes());
        f
    }

    /// Held open until the engine starts failing (its restart ends the stream).
    fn event_stream(engine: Shared) -> Body {
        let stream = futures::stream::unfold(engine, |engine| async move {
            loop {
                {
                    let mut e = engine.lock().unwrap();
                    if e.failing {
                        return None;
                    }
                    if let Some(ev) = e.queued_events.pop_front() {
                        drop(e);
                        let line = axum::body::Bytes::from(format!("{ev}\n"));
                        return Some((Ok::<_, std::io::Error>(line), engine));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Body::from_stream(stream)
    }

    async fn handle(engine: Shared, method: Method, uri: Uri) -> Response {
        let path = uri.path();
        // Strip the API version prefix (/v1.53), if any.
        let path = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        if path == "/ollama/" {
            let up = engine.lock().unwrap().running;
            return if up {
                (StatusCode::OK, "Ollama is running").into_response()
            } else {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            };
        }
        {
            let mut e = engine.lock().unwrap();
            if e.failing {
                e.calls.push(format!("500 {method} {path}"));
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            match (path, e.api_version) {
                ("/_ping", _) => return (StatusCode::OK, "OK").into_response(),
                ("/version", Some(v)) => {
                    e.version_answers += 1;
                    return axum::Json(json!({
                        "Version": "27.3.1", "ApiVersion": v, "MinAPIVersion": "1.24",
                        "Os": "linux", "Arch": "amd64"
                    }))
                    .into_response();
                }
                ("/events", _) if e.events && e.events_refusals > 0 => {
                    e.events_refusals -= 1;
                    e.refused_at.push(std::time::Instant::now());
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                ("/events", _) if e.events => {
                    e.subscriptions += 1;
                    drop(e);
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(event_stream(engine.clone()))
                        .unwrap();
                }
                _ => {}
            }
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ["containers", name, action] = parts.as_slice() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let delay = engine.lock().unwrap().inspect_delay_ms;
        if *action == "json" && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut e = engine.lock().unwrap();
        e.calls.push(format!("{method} {action}"));
        if *name != "ollama-sparklio" {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"message": format!("No such container: {name}")})),
            )
                .into_response();
        }
        match (method, *action) {
            (Method::GET, "json") => {
                let status = if e.running { "running" } else { "exited" };
                axum::Json(json!({
                    "Id": "4c1e5a0f", "Name": "/ollama-sparklio",
                    "State": {"Status": status, "Running": e.running, "Paused": false,
                              "Restarting": false, "OOMKilled": false, "Dead": false,
                              "Pid": if e.running { e.pid } else { 0 }, "ExitCode": e.exit_code,
                              "Error": "", "StartedAt": "2026-01-01T00:00:00Z",
                              "FinishedAt": "0001-01-01T00:00:00Z"}
                }))
                .into_response()
            }
            (Method::POST, "start") => {
                if let Some(words) = e.start_refusal {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({ "message": words })),
                    )
                        .into_response();
                }
                if e.running {
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                e.running = true;
                e.pid += 1;
                StatusCode::NO_CONTENT.into_response()
            }
            (Method::POST, "stop") => {
                e.calls
                    .push(format!("stop query {}", uri.query().unwrap_or("")));
                e.running = false;
                e.exit_code = 0;
                StatusCode::NO_CONTENT.into_response()
            }
            (Method::POST, "restart") => {
                e.running = true;
                e.pid += 1;
                StatusCode::NO_CONTENT.into_response()
            }
            (Method::GET, "logs") => {
                let mut body = frame(1, "time=2026 level=INFO msg=\"Listening on [::]:11434\"\n");
                body.extend(frame(2, "warning: no GPU layers offloaded\n"));
                Response::builder()
                    .header("content-type", "application/vnd.docker.multiplexed-stream")
                    .body(Body::from(body))
                    .unwrap()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    /// Serve the double on 127.0.0.1; returns its port.
    pub async fn serve(engine: Shared) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
            let engine = engine.clone();
            async move { handle(engine, method, uri).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }
}

#[tokio::test]
async fn docker_container_is_started_watched_restarted_and_stopped() {
    let engine = docker_double::Shared::default();
    engine.lock().unwrap().pid = 4000;
    let port = docker_double::serve(engine.clone()).await;
    let toml = format!(
        r#"
[supervisor]
docker_host = "tcp://127.0.0.1:{port}"

[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
provides = ["ollama"]
stop_timeout_ms = 3000
backoff = {{ initial_ms = 100, max_ms = 400 }}
health = {{ url = "http://127.0.0.1:{port}/ollama/", interval_ms = 200, timeout_ms = 300, failures = 15 }}

[[services]]
name = "missing"
kind = "docker"
container = "not-there"
"#
    );
    let app = TestApp::start(&toml).await;
    let s = wait_state(&app, "ollama-sparklio", "running").await;
    assert_eq!(s["pid"], 4001);
    assert!(engine
        .lock()
        .unwrap()
        .calls
        .contains(&"POST start".to_string()));
    let board = &app.app.as_ref().unwrap().state.provider_board;
    assert_eq!(board.down_reason("ollama"), None);

    // The container's own output shows in the service logs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, logs) = app
            .get_json("/api/v1/services/ollama-sparklio/logs?tail=50")
            .await;
        let text = logs.to_string();
        if text.contains("Listening on [::]:11434") && text.contains("no GPU layers offloaded") {
            break;
        }
        assert!(Instant::now() < deadline, "no container logs: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The container dies: crashed → backoff → started again.
    {
        let mut e = engine.lock().unwrap();
        e.running = false;
        e.exit_code = 137;
    }
    let again = wait_new_pid(&app, "ollama-sparklio", &json!(4001)).await;
    assert_eq!(again["last_exit"]["code"], 137);
    let evs = events(&app, "ollama-sparklio").await;
    let crash = evs.iter().find(|e| e["to"] == "crashed").unwrap();
    assert_eq!(
        crash["reason"],
        "container ollama-sparklio exited with code 137"
    );

    // Restart through the engine's restart call; stop with the stop timeout in seconds.
    app.post_json("/api/v1/services/ollama-sparklio/restart", &json!({}))
        .await;
    wait_new_pid(&app, "ollama-sparklio", &again["pid"]).await;
    assert!(engine
        .lock()
        .unwrap()
        .calls
        .contains(&"POST restart".to_string()));
    app.post_json("/api/v1/services/ollama-sparklio/stop", &json!({}))
        .await;
    wait_state(&app, "ollama-sparklio", "stopped").await;
    assert!(!engine.lock().unwrap().running);
    assert!(engine
        .lock()
        .unwrap()
        .calls
        .iter()
        .any(|c| c.starts_with("stop query") && c.contains("t=3")));
    assert!(board.down_reason("ollama").is_some());

    // An unknown container fails at once with a clear reason (no retry loop).
    let m = wait_state(&app, "missing", "failed").await;
    let why = m["reason"].as_str().unwrap();
    assert!(why.contains("\"not-there\" does not exist"), "{why}");
    assert_eq!(m["restarts"], 0);
    app.stop().await;
}

#[tokio::test]
async fn docker_down_for_an_hour_of_checks_is_one_counted_event() {
    // An hour of checks at the default 5 s is 720; here they run every 1 ms against a
    // socket that does not exist (the engine is not running).
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("no-engine.sock");
    let toml = format!(
        r#"
[supervisor]
docker_host = "unix://{}"
unavailable_recheck_ms = 1

[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
"#,
        sock.display()
    );
    let app = TestApp::start(&toml).await;
    wait_state(&app, "ollama-sparklio", "unavailable").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let evs = loop {
        let evs = events(&app, "ollama-sparklio").await;
        if evs.last().and_then(|e| e["count"].as_u64()).unwrap_or(0) > 720 {
            break evs;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 720 checks in 60 s: {evs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        transitions(&evs),
        ["stopped->starting", "starting->unavailable"],
        "{evs:?}"
    );
    let down = &evs[1];
    assert!(down["reason"]
        .as_str()
        .unwrap()
        .starts_with("Docker is not running"));
    assert_eq!(down["level"], "down");
    assert!(down["last_ts"].as_str().unwrap() > down["ts"].as_str().unwrap());
    assert_eq!(
        service(&app, "ollama-sparklio").await["state"],
        "unavailable"
    );
    app.stop().await;
}

/// The double's engine at `port` behind one container service (restarts allowed: 1, so
/// a start failure counted as a crash would end in `failed` at once).
fn docker_500_toml(port: u16) -> String {
    format!(
        r#"
[supervisor]
docker_host = "tcp://127.0.0.1:{port}"
unavailable_recheck_ms = 100

[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
provides = ["ollama"]
backoff = {{ initial_ms = 100, max_ms = 400 }}
crash_loop = {{ restarts = 1, within_s = 60 }}
health = {{ url = "http://127.0.0.1:{port}/ollama/", interval_ms = 200, timeout_ms = 300, failures = 15 }}
"#
    )
}

/// No crash, backoff or failure in the service's events, and no restart counted.
async fn never_crashed(app: &TestApp) {
    let s = service(app, "ollama-sparklio").await;
    assert_eq!(s["restarts"], 0, "{s}");
    let evs = events(app, "ollama-sparklio").await;
    assert!(
        evs.iter()
            .all(|e| !["crashed", "backoff", "failed", "unhealthy"]
                .contains(&e["to"].as_str().unwrap())),
        "{:?}",
        transitions(&evs)
    );
}

#[tokio::test]
async fn docker_desktop_answering_500_while_its_engine_starts_is_not_running_then_running() {
    let engine = docker_double::Shared::default();
    {
        let mut e = engine.lock().unwrap();
        e.pid = 7000;
        e.failing = true;
        e.api_version = Some("1.47");
    }
    let port = docker_double::serve(engine.clone()).await;
    let app = TestApp::start(&docker_500_toml(port)).await;
    let s = wait_state(&app, "ollama-sparklio", "unavailable").await;
    let why = s["reason"].as_str().unwrap();
    assert!(
        why.starts_with("Docker is not running") && why.contains("answered 500"),
        "{why}"
    );
    // Several rechecks meet the 500s (version, inspect): still one unavailable event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.lock().unwrap().calls.len() < 5 {
        assert!(Instant::now() < deadline, "no rechecks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        service(&app, "ollama-sparklio").await["state"],
        "unavailable"
    );
    engine.lock().unwrap().failing = false;
    let s = wait_state(&app, "ollama-sparklio", "running").await;
    assert_eq!(s["pid"], 7001);
    never_crashed(&app).await;
    assert_eq!(
        transitions(&events(&app, "ollama-sparklio").await),
        [
            "stopped->starting",
            "starting->unavailable",
            "unavailable->starting",
            "starting->running"
        ]
    );
    // The API version was agreed once the engine answered: a 500 on /version is not
    // "this engine has no /version", remembered for good.
    assert_eq!(engine.lock().unwrap().version_answers, 1);
    app.stop().await;
}

#[tokio::test]
async fn docker_desktop_restarting_under_a_running_container_is_not_running_then_followed_again() {
    let engine = docker_double::Shared::default();
    {
        let mut e = engine.lock().unwrap();
        e.pid = 8000;
        e.api_version = Some("1.47");
        e.events = true;
    }
    let port = docker_double::serve(engine.clone()).await;
    let app = TestApp::start(&docker_500_toml(port)).await;
    let s = wait_state(&app, "ollama-sparklio", "running").await;
    assert_eq!(s["pid"], 8001);
    assert_eq!(s["docker"]["events_followed"], true, "{s}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.lock().unwrap().subscriptions == 0 {
        assert!(Instant::now() < deadline, "never subscribed to /events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Docker Desktop restarts: its containers stop, its event stream ends, and its pipe
    // answers 500 until the engine is back.
    {
        let mut e = engine.lock().unwrap();
        e.failing = true;
        e.running = false;
    }
    let s = wait_state(&app, "ollama-sparklio", "unavailable").await;
    let why = s["reason"].as_str().unwrap();
    assert!(why.starts_with("Docker is not running"), "{why}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.lock().unwrap().failing = false;
    let s = wait_new_pid(&app, "ollama-sparklio", &json!(8001)).await;
    assert_eq!(s["pid"], 8002);
    // Followed again through the engine's events, not left polling.
    assert_eq!(s["docker"]["events_followed"], true, "{s}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.lock().unwrap().subscriptions < 2 {
        assert!(Instant::now() < deadline, "not subscribed again to /events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    never_crashed(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_start_the_working_engine_refuses_with_500_is_a_failed_start_not_docker_down() {
    const REFUSAL: &str = "driver failed programming external connectivity on endpoint \
        ollama-sparklio: Bind for 127.0.0.1:11434 failed: port is already allocated";
    let engine = docker_double::Shared::default();
    {
        let mut e = engine.lock().unwrap();
        e.api_version = Some("1.47");
        e.start_refusal = Some(REFUSAL);
    }
    let port = docker_double::serve(engine.clone()).await;
    let app = TestApp::start(&docker_500_toml(port)).await;
    let s = wait_state(&app, "ollama-sparklio", "failed").await;
    let why = s["reason"].as_str().unwrap();
    assert!(why.contains("port is already allocated"), "{why}");
    let evs = events(&app, "ollama-sparklio").await;
    assert!(
        evs.iter().all(|e| e["to"] != "unavailable"),
        "{:?}",
        transitions(&evs)
    );
    let crash = evs.iter().find(|e| e["to"] == "crashed").unwrap();
    assert!(
        crash["reason"]
            .as_str()
            .unwrap()
            .starts_with("Docker engine answered 500: driver failed"),
        "{crash}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_event_stream_answered_500_is_asked_for_again_not_given_up_for_polling() {
    let engine = docker_double::Shared::default();
    {
        let mut e = engine.lock().unwrap();
        e.api_version = Some("1.47");
        e.events = true;
        e.events_refusals = 3;
    }
    let port = docker_double::serve(engine.clone()).await;
    let app = TestApp::start(&docker_500_toml(port)).await;
    wait_state(&app, "ollama-sparklio", "running").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while engine.lock().unwrap().subscriptions == 0 {
        assert!(Instant::now() < deadline, "never subscribed to /events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = service(&app, "ollama-sparklio").await;
    assert_eq!(s["docker"]["events_followed"], true, "{s}");
    assert_eq!(s["state"], "running", "{s}");
    // Asked again after a pause each time, not in a tight loop.
    let refused = engine.lock().unwrap().refused_at.clone();
    assert_eq!(refused.len(), 3);
    for pair in refused.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "{:?}",
            pair[1] - pair[0]
        );
    }
    never_crashed(&app).await;
    app.stop().await;
}

/// "started pid N" lines the supervisor wrote for `name`: one per instance launched.
async fn launched_pids(app: &TestApp, name: &str) -> Vec<u64> {
    let (status, body) = app
        .get_json(&format!("/api/v1/services/{name}/logs?tail=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == "supervisor")
        .filter_map(|l| l["line"].as_str()?.strip_prefix("started pid "))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect()
}

/// The restart race, made deterministic: the runner is held at each point of an automatic
/// recovery (pause hooks), the restart request lands exactly there, then it is let go.
/// Whatever the point, the service ends running, on exactly one instance launched after
/// the request (never a second restart of the fresh instance: that cost another
/// `stop_timeout_ms`, 10 s by default, and showed as a service stuck after recovery),
/// and that instance stays.
#[tokio::test]
async fn a_restart_requested_at_each_point_of_an_automatic_recovery_restarts_once() {
    use sparklio_core::supervisor::hooks::RecoveryPoint as P;
    let port = free_port();
    let toml = ServiceToml::new("racy", port)
        .health(100, 1000, 3)
        .backoff(100, 100)
        .line("crash_loop = { restarts = 50, within_s = 60 }")
        .to_string();
    let app = TestApp::start(&toml).await;
    let sup = &app.app.as_ref().unwrap().state.supervisor;
    for point in [
        P::Crashed,
        P::Backoff,
        P::Launching,
        P::Started,
        P::Probed,
        P::Stopping,
    ] {
        let before = wait_state(&app, "racy", "running").await;
        let old_pid = before["pid"].as_u64().unwrap();
        let pause = sup.hooks().pause_at("racy", point);
        // Automatic recovery: a crash, or (Stopping) a hang caught by the health probes.
        if point == P::Stopping {
            let _ = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/hang"))
                .timeout(Duration::from_millis(300))
                .send()
                .await;
        } else {
            post(port, "/exit/9").await;
        }
        tokio::time::timeout(Duration::from_secs(20), pause.arrived())
            .await
            .unwrap_or_else(|_| panic!("recovery never reached {point:?}"));
        let launched_before = launched_pids(&app, "racy").await.len();
        let (status, body) = app
            .post_json("/api/v1/services/racy/restart", &json!({}))
            .await;
        assert_eq!(status, 202, "{body}");
        pause.release();

        // Running on the latest instance launched (bounded: 20 s)...
        let deadline = Instant::now() + Duration::from_secs(20);
        let after = loop {
            let s = service(&app, "racy").await;
            let pids = launched_pids(&app, "racy").await;
            if s["state"] == "running"
                && pids.len() > launched_before
                && s["pid"].as_u64() == pids.last().copied()
            {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{point:?}: never running again: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // ...and still, after the time a wrongly queued second restart would take (the
        // stop is 1.5 s at most).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = service(&app, "racy").await;
        let pids = launched_pids(&app, "racy").await;
        let since_request = &pids[launched_before..];
        assert_eq!(
            since_request.len(),
            1,
            "{point:?}: instances launched after the restart request: {since_request:?} ({:?})",
            transitions(&events(&app, "racy").await)
        );
        assert_eq!(now["state"], "running", "{point:?}: {now}");
        assert_eq!(
            now["pid"], after["pid"],
            "{point:?}: restarted again: {now}"
        );
        assert_eq!(
            now["pid"].as_u64(),
            since_request.last().copied(),
            "{point:?}"
        );
        #[cfg(target_os = "linux")]
        assert!(
            !alive(old_pid as u32),
            "{point:?}: the old instance {old_pid} lives on"
        );
    }
    app.stop().await;
}

/// A `docker stop` from outside: the engine's kill (SIGTERM) and die events, then a
/// verdict after the grace, from an engine slower to answer `inspect` than the health
/// probe's cadence (Docker Desktop behind its named pipe). Before, the probe's timer
/// dropped the verdict while it waited for the engine: the die was lost to the safety
/// poll, and with it "stopped from outside".
#[tokio::test]
async fn a_die_is_not_lost_when_the_engine_answers_slower_than_the_probes() {
    let engine = docker_double::Shared::default();
    {
        let mut e = engine.lock().unwrap();
        e.pid = 9000;
        e.api_version = Some("1.47");
        e.events = true;
    }
    let port = docker_double::serve(engine.clone()).await;
    let app = TestApp::start(&docker_500_toml(port)).await;
    wait_state(&app, "ollama-sparklio", "running").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.lock().unwrap().subscriptions == 0 {
        assert!(Instant::now() < deadline, "never subscribed to /events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let mut e = engine.lock().unwrap();
        e.inspect_delay_ms = 450;
        e.running = false;
        e.exit_code = 0;
        let actor = |extra: serde_json::Value| {
            let mut attrs = json!({"name": "ollama-sparklio", "image": "ollama/ollama"});
            attrs
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"ID": "4c1e5a0f", "Attributes": attrs})
        };
        e.queued_events
            .push_back(json!({"Type": "container", "Action": "kill",
            "Actor": actor(json!({"signal": "15"})), "time": 1}));
        e.queued_events
            .push_back(json!({"Type": "container", "Action": "die",
            "Actor": actor(json!({"exitCode": "0"})), "time": 1}));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let outside = loop {
        let evs = events(&app, "ollama-sparklio").await;
        if let Some(e) = evs.iter().find(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("container ollama-sparklio"))
        }) {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no verdict: {:?}",
            transitions(&evs)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        outside["reason"]
            .as_str()
            .unwrap()
            .contains("stopped from outside Sparklio Desk (docker stop)"),
        "{outside}"
    );
    app.stop().await;
}
