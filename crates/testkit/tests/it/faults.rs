//! Each fault, seen from the client's side: a raw TCP client where the wire matters,
//! reqwest otherwise. Silence is "nothing within 300 ms"; everything else that must
//! happen has 10 s.

use crate::raw::{self, PATIENCE, SILENCE};
use serde_json::{json, Value};
use sparklio_testkit::{ComfyDouble, Fault, FaultRule, OllamaDouble};
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"qwen2.5:7b","messages":[{"role":"user","content":"a story about sparks, please"}]}"#;

fn chat_body(stream: bool) -> Value {
    let mut body: Value = serde_json::from_str(CHAT).unwrap();
    body["stream"] = json!(stream);
    body
}

async fn version_status(double: &OllamaDouble) -> u16 {
    reqwest::get(format!("{}/api/version", double.base_url()))
        .await
        .expect("answers")
        .status()
        .as_u16()
}

/// Poll (bounded) until the port accepts connections again.
async fn until_listening(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn refuse_closes_the_port_until_cleared_then_the_same_port_answers() {
    let double = OllamaDouble::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/version", double.base_url());
    // A pooled keep-alive connection exists before the fault.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    double.set_fault(Fault::Refuse).await;
    let err = TcpStream::connect(double.addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(
        client.get(&url).send().await.is_err(),
        "open connections are dropped too"
    );
    assert_eq!(double.faults().current(), Fault::Refuse.into());

    double.clear_fault().await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn hang_after_accept_takes_the_connection_and_never_answers() {
    let double = OllamaDouble::start().await;
    double.set_fault(Fault::HangAfterAccept).await;
    let mut stream = raw::send(double.addr, "GET", "/api/version", "").await;
    assert!(
        raw::read_some(&mut stream, SILENCE).await.is_none(),
        "no byte and no close"
    );
    assert!(
        double.request_log().is_empty(),
        "the request was never read"
    );
    double.clear_fault().await;
    assert_eq!(version_status(&double).await, 200);
}

#[tokio::test]
async fn hang_before_headers_on_one_path_leaves_health_probes_passing() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(Fault::HangBeforeHeaders.on("/api/chat"))
        .await;
    assert_eq!(version_status(&double).await, 200);
    let mut stream = raw::send(double.addr, "POST", "/api/chat", CHAT).await;
    assert!(raw::read_some(&mut stream, SILENCE).await.is_none());
    assert!(
        double.got_request_to("/api/chat", PATIENCE).await,
        "never read"
    );
    let log = double.request_log();
    let chat = log.iter().find(|r| r.path == "/api/chat").unwrap();
    assert_eq!(chat.method, "POST");
    assert_eq!(chat.body["model"], "qwen2.5:7b");
}

#[tokio::test]
async fn stall_mid_stream_sends_the_first_chunks_then_keeps_quiet_with_the_connection_open() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(Fault::StallMidStream { after_chunks: 2 })
        .await;
    let mut stream = raw::send(double.addr, "POST", "/api/chat", CHAT).await;
    let mut got = raw::read_until(&mut stream, b"\r\n\r\n").await;
    if raw::body_of(&got).is_empty() {
        got.extend(raw::read_until(&mut stream, b"\r\n").await);
    }
    // Whatever else of the two chunks was on its way, then silence (not EOF).
    loop {
        match raw::read_some(&mut stream, SILENCE).await {
            Some(Ok(bytes)) if !bytes.is_empty() => got.extend(bytes),
            None => break,
            other => panic!("the connection should stay open: {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"done\":false"), "{text}");
    assert!(!text.contains("\"done\":true"), "{text}");
}

#[tokio::test]
async fn trickle_dribbles_the_body_a_few_bytes_at_a_time() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(Fault::Trickle {
            bytes: 4,
            interval_ms: 200,
        })
        .await;
    let mut stream = raw::send(double.addr, "GET", "/api/version", "").await;
    let head = raw::read_until(&mut stream, b"\r\n\r\n").await;
    assert!(raw::body_of(&head).len() <= 4, "{head:?}");
    let next = raw::read_some(&mut stream, PATIENCE)
        .await
        .expect("a piece")
        .unwrap();
    assert!(!next.is_empty() && next.len() <= 4, "{next:?}");
    let (rest, err) = raw::read_to_end(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    let body = [raw::body_of(&head), &next, &rest].concat();
    assert_eq!(body, br#"{"version":"0.5.7"}"#);
}

#[tokio::test]
async fn status_answers_in_the_upstreams_own_error_shape_only_on_its_path() {
    let double = OllamaDouble::start().await;
    double.set_fault(Fault::Status(503).on("/api/chat")).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/chat", double.base_url()))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("server busy"),
        "{body}"
    );
    assert_eq!(version_status(&double).await, 200);

    let comfy = ComfyDouble::start().await;
    comfy.set_fault(Fault::Status(502)).await;
    let r = reqwest::get(format!("{}/system_stats", comfy.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "502: Bad Gateway");
}

#[tokio::test]
async fn once_and_times_count_the_requests_that_meet_the_fault() {
    let double = OllamaDouble::start().await;
    double.set_fault(Fault::Status(500).times(2)).await;
    assert_eq!(version_status(&double).await, 500);
    assert_eq!(version_status(&double).await, 500);
    assert_eq!(version_status(&double).await, 200);
    assert_eq!(double.faults().current(), FaultRule::default());

    double.set_fault(Fault::Reset.once()).await;
    let mut stream = TcpStream::connect(double.addr).await.unwrap();
    let err = raw::read_some(&mut stream, PATIENCE).await.expect("an end");
    assert_eq!(err.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(version_status(&double).await, 200);
}

#[tokio::test]
async fn bad_json_is_a_200_that_does_not_parse() {
    let double = OllamaDouble::start().await;
    double.set_fault(Fault::BadJson.on("/api/tags")).await;
    let r = reqwest::get(format!("{}/api/tags", double.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());
}

#[tokio::test]
async fn truncated_streams_end_before_done_and_bodies_short_of_their_length() {
    let double = OllamaDouble::start().await;
    double.set_fault(Fault::Truncated).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/chat", double.base_url());

    let text = client
        .post(&url)
        .json(&chat_body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .expect("the stream itself ends cleanly");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole lines"))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["done"] == false), "{text}");

    let r = client
        .post(&url)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "Content-Length not honoured");
}

#[tokio::test]
async fn reset_at_accept_is_a_connection_reset() {
    let double = OllamaDouble::start().await;
    double.set_fault(Fault::Reset).await;
    let mut stream = TcpStream::connect(double.addr).await.unwrap();
    match raw::read_some(&mut stream, PATIENCE).await {
        Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a reset, got {other:?}"),
    }
    let err = reqwest::get(format!("{}/api/version", double.base_url()))
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn reset_mid_stream_sends_part_of_the_answer_then_resets() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(Fault::ResetMidStream.on("/api/chat"))
        .await;
    let mut stream = raw::send(double.addr, "POST", "/api/chat", CHAT).await;
    let (got, err) = raw::read_to_end(&mut stream).await;
    let err = err.expect("the connection is reset, not closed");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(!text.contains("\"done\":true"), "{text}");
    // Through reqwest: headers, then a body error.
    let r = reqwest::Client::new()
        .post(format!("{}/api/chat", double.base_url()))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err());
}

/// The model-free graph the ComfyUI recordings used: an empty image, saved.
fn diagnostic_prompt() -> Value {
    json!({"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kit"}}
    }})
}

#[tokio::test]
async fn restart_refuses_then_comes_back_on_the_same_port_with_queue_and_history_empty() {
    let double = ComfyDouble::start().await;
    let client = reqwest::Client::new();
    let base = double.url();
    let accepted: Value = client
        .post(format!("{base}/prompt"))
        .json(&diagnostic_prompt())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["prompt_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + PATIENCE;
    while double.history_of(&id).is_none() {
        assert!(Instant::now() < deadline, "the prompt never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second prompt still running when the restart comes.
    double.node_ms(100);
    let running: Value = client
        .post(format!("{base}/prompt"))
        .json(&diagnostic_prompt())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let running = running["prompt_id"].as_str().unwrap().to_string();

    double.restart(Duration::from_millis(500)).await;
    let err = TcpStream::connect(double.addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    until_listening(double.addr).await;

    let history: Value = client
        .get(format!("{base}/history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history, json!({}));
    let queue: Value = client
        .get(format!("{base}/api/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
    assert_eq!(double.faults().current(), FaultRule::default());
    // The prompt that was running writes nothing after the restart.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(double.history_of(&id), None);
    assert_eq!(double.history_of(&running), None);

    // And the restarted double works.
    let again: Value = client
        .post(format!("{base}/prompt"))
        .json(&diagnostic_prompt())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = again["prompt_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + PATIENCE;
    while double.history_of(&id).is_none() {
        assert!(
            Instant::now() < deadline,
            "no prompt runs after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ollama_forgets_loaded_models_on_restart_and_keeps_installed_ones() {
    let double = OllamaDouble::start().await;
    double.restart(Duration::from_millis(100)).await;
    until_listening(double.addr).await;
    let ps: Value = reqwest::get(format!("{}/api/ps", double.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ps, json!({"models": []}));
    let tags: Value = reqwest::get(format!("{}/api/tags", double.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["models"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_rule_that_cannot_apply_is_refused_with_its_reason() {
    let double = OllamaDouble::start().await;
    let err = double
        .faults()
        .try_set(Fault::Refuse.on("/api/chat"))
        .await
        .unwrap_err();
    assert!(err.contains("whole port"), "{err}");
    assert_eq!(double.faults().current(), FaultRule::default());
}
