//! The `sparklio-testkit` binary: a double in its own process, steered through the
//! control port.

use crate::raw::{self, PATIENCE, SILENCE};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sparklio-testkit");

/// The double's process, killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
    control: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `sparklio-testkit <args>` and read its one ready line (bounded).
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(PATIENCE).expect("a ready line");
    // listening on 127.0.0.1:P control 127.0.0.1:C
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (words.len(), words[0], words[1], words[3]),
        (5, "listening", "on", "control"),
        "{line}"
    );
    assert!(words[2].starts_with("127.0.0.1:") && words[4].starts_with("127.0.0.1:"));
    Running {
        addr: words[2].parse().unwrap(),
        control: format!("http://{}", words[4]),
        child,
    }
}

#[test]
fn help_explains_the_doubles_and_the_control_api() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "ollama",
        "comfyui",
        "PUT    /fault",
        "POST   /restart",
        "hang_after_accept",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    let out = Command::new(BIN)
        .args(["ollama", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["--port", "--control-port", "--models", "--loaded"] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[tokio::test]
async fn the_ollama_double_is_steered_through_its_control_port() {
    let double = start(&[
        "ollama",
        "--port",
        "0",
        "--models",
        "llama3.2:latest,qwen2.5:7b",
        "--loaded",
        "llama3.2:latest",
    ]);
    let client = reqwest::Client::new();
    let base = format!("http://{}", double.addr);
    let tags: Value = client
        .get(format!("{base}/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["models"].as_array().unwrap().len(), 2);

    let fault = |body: Value| {
        let client = client.clone();
        let url = format!("{}/fault", double.control);
        async move {
            let r = client.put(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, rule) =
        fault(json!({"fault": "status", "status": 503, "path": "/api/chat"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        rule,
        json!({"fault": "status", "status": 503, "path": "/api/chat"})
    );
    let r = client
        .post(format!("{base}/api/chat"))
        .json(&json!({"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    let (status, err) = fault(json!({"fault": "refuse", "path": "/x"})).await;
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("whole port"),
        "{err}"
    );

    // Refused, yet the control port answers; cleared, the same port again.
    fault(json!({"fault": "refuse"})).await;
    assert!(tokio::net::TcpStream::connect(double.addr).await.is_err());
    let now: Value = client
        .get(format!("{}/fault", double.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now, json!({"fault": "refuse"}));
    let r = client
        .delete(format!("{}/fault", double.control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"fault": "none"}));

    fault(json!({"fault": "hang_after_accept"})).await;
    let mut stream = raw::send(double.addr, "GET", "/api/version", "").await;
    assert!(raw::read_some(&mut stream, SILENCE).await.is_none());
    client
        .delete(format!("{}/fault", double.control))
        .send()
        .await
        .unwrap();

    // Restart: refused, then back with nothing loaded.
    let r: Value = client
        .post(format!("{}/restart", double.control))
        // Down long enough that the refusal is seen after the answer crossed processes.
        .json(&json!({"down_ms": 2000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["down_ms"], 2000);
    assert!(tokio::net::TcpStream::connect(double.addr).await.is_err());
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(double.addr).await.is_err() {
        assert!(Instant::now() < deadline, "never back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ps: Value = client
        .get(format!("{base}/api/ps"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ps, json!({"models": []}));

    let log: Vec<Value> = client
        .get(format!("{}/requests", double.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = log.iter().find(|r| r["path"] == "/api/chat").unwrap();
    assert_eq!(chat["method"], "POST");
    assert_eq!(chat["body"]["model"], "qwen2.5:7b");
}

#[tokio::test]
async fn the_comfyui_double_runs_as_a_process_with_its_checkpoints() {
    let double = start(&[
        "comfyui",
        "--port",
        "0",
        "--checkpoints",
        "sd_xl_base_1.0.safetensors",
    ]);
    let files: Value = reqwest::get(format!("http://{}/api/models/checkpoints", double.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(files, json!(["sd_xl_base_1.0.safetensors"]));
    let about: Value = reqwest::get(&double.control)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(about["double"], "comfyui");
    assert_eq!(about["listening"], double.addr.to_string());
}
