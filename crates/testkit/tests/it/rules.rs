//! Fault rules: their control-API JSON, the ones refused, and how path scope and counts
//! select the requests that meet them.

use crate::raw::{self, SILENCE};
use serde_json::{json, Value};
use sparklio_testkit::fault::FAULT_NAMES;
use sparklio_testkit::{Fault, FaultRule, OllamaDouble};

#[test]
fn rules_read_and_write_the_control_json() {
    let rule: FaultRule =
        serde_json::from_value(json!({"fault": "status", "status": 503, "path": "/api/chat"}))
            .unwrap();
    assert_eq!(rule, Fault::Status(503).on("/api/chat"));
    assert_eq!(
        serde_json::to_value(&rule).unwrap(),
        json!({"fault": "status", "status": 503, "path": "/api/chat"})
    );
    let rule: FaultRule = serde_json::from_value(json!({"fault": "hang_after_accept"})).unwrap();
    assert_eq!(rule, Fault::HangAfterAccept.into());
    let rule: FaultRule =
        serde_json::from_value(json!({"fault": "trickle", "bytes": 4, "times": 2})).unwrap();
    assert_eq!(
        rule,
        Fault::Trickle {
            bytes: 4,
            interval_ms: 100
        }
        .times(2)
    );
    assert_eq!(
        serde_json::to_value(Fault::Restart { down_ms: 250 }.times(1)).unwrap(),
        json!({"fault": "restart", "down_ms": 250, "times": 1})
    );
    for name in FAULT_NAMES {
        let mut body = json!({ "fault": name });
        if *name == "status" {
            body["status"] = json!(500);
        }
        let rule: FaultRule = serde_json::from_value(body).unwrap();
        assert_eq!(rule.fault.name(), *name);
    }
}

#[test]
fn impossible_rules_are_refused_with_a_reason() {
    for (body, says) in [
        (json!({"fault": "refuse", "path": "/x"}), "whole port"),
        (json!({"fault": "restart", "times": 1}), "whole port"),
        (json!({"fault": "status"}), "needs \"status\""),
        (json!({"fault": "status", "status": 200}), "400-599"),
        (json!({"fault": "hang", "times": 1}), "unknown fault"),
        (json!({"fault": "reset", "times": 0}), "at least 1"),
        (json!({"fault": "reset", "colour": 1}), "unknown field"),
    ] {
        let err = serde_json::from_value::<FaultRule>(body.clone()).unwrap_err();
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
}

async fn chat_status(double: &OllamaDouble) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/chat", double.base_url()))
        .json(&json!({"model": "qwen2.5:7b", "stream": false, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn only_requests_under_the_path_count_towards_times() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(Fault::Status(503).on("/api/chat").times(2))
        .await;
    let tags = reqwest::get(format!("{}/api/tags", double.base_url()))
        .await
        .unwrap();
    assert_eq!(tags.status(), 200);
    assert_eq!(chat_status(&double).await, 503);
    assert_eq!(chat_status(&double).await, 503);
    assert_eq!(chat_status(&double).await, 200);
    assert_eq!(double.faults().current(), FaultRule::default());
}

#[tokio::test]
async fn an_accept_time_fault_scoped_to_a_path_waits_for_that_request() {
    let double = OllamaDouble::start().await;
    double
        .set_fault(Fault::HangAfterAccept.on("/api/chat"))
        .await;
    let version: Value = reqwest::get(format!("{}/api/version", double.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["version"], "0.5.7");
    let mut stream = raw::send(double.addr, "POST", "/api/chat", "{}").await;
    assert!(raw::read_some(&mut stream, SILENCE).await.is_none());
}
