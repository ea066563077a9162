//! The notifier against a real core: real child processes (`sparklio-test-service`) crash
//! and come back under the supervisor, real gateway requests fail, and the notifications
//! the policy lets through reach the sink. Delivery to a desktop is the tray's business;
//! what is tested here is what gets notified, the rate limit and the event log.

use serde_json::{json, Value};
use sparklio_core::notify::{Level, Notification, Notifier, NotifierOptions};
use sparklio_testkit::{free_port, ServiceToml, TestApp};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A test service that exits with code 3 `exit_after_ms` after each launch.
fn crashing_service(name: &str, exit_after_ms: u64, crash_loop: &str) -> String {
    ServiceToml::new(name, free_port())
        .args(&[
            "--exit-after-ms",
            &exit_after_ms.to_string(),
            "--exit-code",
            "3",
        ])
        .health(100, 1000, 3)
        .backoff(100, 200)
        .line(format!("crash_loop = {crash_loop}"))
        .to_string()
}

/// Start the notifier on `app` with a sink that collects what it is handed.
fn collect(app: &TestApp, options: NotifierOptions) -> Arc<Mutex<Vec<Notification>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    Notifier::spawn(
        app.app.as_ref().unwrap().state.notifier_inputs(),
        options,
        move |n: Notification| sink.lock().unwrap().push(n),
    );
    got
}

fn titles(got: &Arc<Mutex<Vec<Notification>>>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .map(|n| n.title.clone())
        .collect()
}

/// Poll (bounded: 30 s) until `check` holds for the collected titles.
async fn wait_titles(
    got: &Arc<Mutex<Vec<Notification>>>,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = titles(got);
        if check(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "no {what}; notifications: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events(app: &TestApp, service: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/api/v1/events?service={service}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {body}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_service_is_told_down_then_back() {
    // Runs 1.5 s, exits 3, is restarted; never enough restarts for a crash loop.
    let app = TestApp::start(&crashing_service(
        "comfyui",
        1500,
        "{ restarts = 50, within_s = 60 }",
    ))
    .await;
    let got = collect(&app, NotifierOptions::default());

    let t = wait_titles(&got, "'went down' then 'is back'", |t| {
        t.iter()
            .position(|x| x == "comfyui went down")
            .is_some_and(|down| t[down..].iter().any(|x| x == "comfyui is back"))
    })
    .await;
    let all = got.lock().unwrap().clone();
    let down = all.iter().find(|n| n.title == "comfyui went down").unwrap();
    assert_eq!(down.level, Level::Down);
    assert!(
        down.body.contains("3"),
        "the exit code is said: {}",
        down.body
    );
    let back = all.iter().find(|n| n.title == "comfyui is back").unwrap();
    assert_eq!(back.level, Level::Ok);
    // The same ones, numbered, for a tray attached to this core (the Windows service's,
    // which has no desktop of its own): all of them, then only what came after.
    let (status, recent) = app.get_json("/api/v1/notifications").await;
    assert_eq!(status, 200, "{recent}");
    let listed = recent["notifications"].as_array().unwrap();
    let titles_listed: Vec<&str> = listed.iter().filter_map(|n| n["title"].as_str()).collect();
    let down_at = titles_listed
        .iter()
        .position(|t| *t == "comfyui went down")
        .unwrap();
    assert!(
        titles_listed[down_at..].contains(&"comfyui is back"),
        "{recent}"
    );
    assert_eq!(listed[down_at]["level"], "down");
    assert_eq!(listed[down_at]["topic"], "comfyui");
    let last = recent["last_id"].as_u64().unwrap();
    assert_eq!(listed.last().unwrap()["id"].as_u64(), Some(last));
    let (_, after) = app
        .get_json(&format!("/api/v1/notifications?after={last}"))
        .await;
    assert!(
        after["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["id"].as_u64().unwrap() > last),
        "{after}"
    );
    let (status, bad) = app.get_json("/api/v1/notifications?after=soon").await;
    assert_eq!(status, 400, "{bad}");
    // Both came from events that are in the log the dashboard shows.
    let log = events(&app, "comfyui").await;
    assert!(log.iter().any(|e| e["to"] == "crashed"), "{log:?}");
    assert!(
        log.iter().filter(|e| e["to"] == "running").count() >= 2,
        "{t:?} {log:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_service_is_rate_limited_and_its_crash_loop_told() {
    // Exits 300 ms after each launch; the 6th automatic restart within a minute is a crash loop.
    let app = TestApp::start(&crashing_service(
        "flappy",
        300,
        "{ restarts = 6, within_s = 60 }",
    ))
    .await;
    let got = collect(&app, NotifierOptions::default());

    let t = wait_titles(&got, "the crash-loop notification", |t| {
        t.iter().any(|x| x == "flappy failed (crash loop)")
    })
    .await;
    let log = events(&app, "flappy").await;
    let crashes = log.iter().filter(|e| e["to"] == "crashed").count();
    assert!(crashes >= 6, "the service crashed {crashes} times: {log:?}");
    // Many changes, few notifications: one "went down", at most one "is back", one "failed".
    let count = |title: &str| t.iter().filter(|x| *x == title).count();
    assert_eq!(count("flappy went down"), 1, "{t:?}");
    assert!(count("flappy is back") <= 1, "{t:?}");
    assert_eq!(count("flappy failed (crash loop)"), 1, "{t:?}");
    assert!(t.len() <= 3, "{t:?}");
    app.stop().await;
}

/// A live-mode core whose Ollama provider is a port nobody listens on: generate answers
/// 503 PROVIDER_UNAVAILABLE (the provider's failure), a malformed body 400 (the client's).
async fn app_with_dead_provider() -> TestApp {
    let dead = free_port();
    TestApp::start_with(
        &format!(
            "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"http://127.0.0.1:{dead}\"\n"
        ),
        &[("GENERATOR_MODE", "live")],
        Default::default(),
    )
    .await
}

fn generate_body() -> Value {
    json!({"role": "copywriter", "task": "sns", "mode": "text", "payload": {"product": "shake"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_error_alarm_fires_once_and_is_in_the_event_log() {
    let app = app_with_dead_provider().await;
    let got = collect(
        &app,
        NotifierOptions {
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        },
    );
    // Three requests the client got wrong (not failures, but told apart), then twelve
    // the provider fails (nobody listens on its port).
    for _ in 0..3 {
        let (status, body) = app.post_json("/api/v1/llm/generate", &json!({})).await;
        assert_eq!(status, 400, "{body}");
    }
    for _ in 0..12 {
        let (status, body) = app
            .post_json("/api/v1/llm/generate", &generate_body())
            .await;
        assert_eq!(status, 503, "{body}");
    }

    let t = wait_titles(&got, "the gateway alarm", |t| {
        t.iter().any(|x| x == "Gateway requests are failing")
    })
    .await;
    // More failures, more polls: still one alarm.
    for _ in 0..5 {
        app.post_json("/api/v1/llm/generate", &generate_body())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t2 = titles(&got);
    assert_eq!(
        t2.iter()
            .filter(|x| *x == "Gateway requests are failing")
            .count(),
        1,
        "{t:?} then {t2:?}"
    );
    let alarm = got
        .lock()
        .unwrap()
        .iter()
        .find(|n| n.title == "Gateway requests are failing")
        .cloned()
        .unwrap();
    assert_eq!(alarm.level, Level::Down);
    assert!(alarm.body.contains("provider's side"), "{}", alarm.body);

    // The dashboard's event list has it, once, with the client errors told apart.
    let log = events(&app, "gateway").await;
    let failing: Vec<_> = log.iter().filter(|e| e["to"] == "failing").collect();
    assert_eq!(failing.len(), 1, "{log:?}");
    assert_eq!(failing[0]["from"], "ok");
    assert_eq!(failing[0]["actor"], "notifier");
    let reason = failing[0]["reason"].as_str().unwrap();
    assert!(reason.contains("requests in the last"), "{reason}");
    assert!(reason.contains("3 client error(s) (4xx)"), "{reason}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_alone_raise_no_alarm() {
    let app = app_with_dead_provider().await;
    let got = collect(
        &app,
        NotifierOptions {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    // 40 requests, every one the client's fault: 100 % "errors" by status, 0 % outage.
    for _ in 0..40 {
        let (status, body) = app.post_json("/api/v1/llm/generate", &json!({})).await;
        assert_eq!(status, 400, "{body}");
    }
    let (_, summary) = app.get_json("/api/v1/usage/summary").await;
    assert!(
        summary["summary"]["errors"].as_u64().unwrap() >= 40,
        "{summary}"
    );
    // Ten polls later: nothing said, nothing logged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(titles(&got), Vec::<String>::new());
    assert_eq!(events(&app, "gateway").await, Vec::<Value>::new());
    // The same window with provider failures added does alarm (the test can fail).
    for _ in 0..15 {
        app.post_json("/api/v1/llm/generate", &generate_body())
            .await;
    }
    wait_titles(&got, "the alarm once the provider fails", |t| {
        t.iter().any(|x| x == "Gateway requests are failing")
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_the_usage_log_does_not_alarm_at_start_up() {
    let app = app_with_dead_provider().await;
    // A previous run's outage, still inside the window: 30 provider failures.
    let store = app.app.as_ref().unwrap().state.store.clone();
    for i in 0..30 {
        store
            .insert_usage(sparklio_core::store::UsageRow {
                ts: sparklio_core::store::now_text(),
                request_id: format!("old-{i}"),
                client: "127.0.0.1".into(),
                kind: "llm".into(),
                latency_ms: 5.0,
                status: 503,
                error_code: Some("PROVIDER_UNAVAILABLE".into()),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let got = collect(
        &app,
        NotifierOptions {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        titles(&got),
        Vec::<String>::new(),
        "the old outage alarmed again"
    );
    assert_eq!(events(&app, "gateway").await, Vec::<Value>::new());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_topic_is_decided_and_logged_but_not_shown() {
    let app = app_with_dead_provider().await;
    let got = collect(
        &app,
        NotifierOptions {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    // As the dashboard's "until it changes" button does.
    let (status, body) = app
        .post_json(
            "/api/v1/notifications/mutes",
            &json!({"topic": "gateway", "for": "until_change"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..12 {
        app.post_json("/api/v1/llm/generate", &generate_body())
            .await;
    }
    // The alarm is in the event log...
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events(&app, "gateway")
        .await
        .iter()
        .any(|e| e["to"] == "failing")
    {
        assert!(Instant::now() < deadline, "no alarm event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...counted as held back, and not shown.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = app.get_json("/api/v1/notifications/mutes").await;
        if body["mutes"][0]["held_back"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(titles(&got), Vec::<String>::new());
    app.stop().await;
}

/// `server.watch_config = true`: the owner saves a broken file, then a good one; both
/// are notified (nothing else tells them the watcher acted), and the broken one changed
/// nothing.
#[tokio::test]
async fn the_config_watcher_tells_what_it_applied_and_what_it_refused() {
    let app = TestApp::start("[server]\nwatch_config = true\n").await;
    let got = collect(&app, NotifierOptions::default());
    let file = app.config_file();
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{good}[media]\ndefault_provider = \"nowhere\"\n"),
    )
    .unwrap();
    let t = wait_titles(&got, "refusal", |t| {
        t.iter().any(|x| x == "Config not applied")
    })
    .await;
    assert!(!t.iter().any(|x| x == "Config reloaded"), "{t:?}");
    let refusal = got
        .lock()
        .unwrap()
        .iter()
        .find(|n| n.title == "Config not applied")
        .cloned()
        .unwrap();
    assert!(refusal.body.contains("nowhere"), "{}", refusal.body);
    assert_eq!(refusal.level, Level::Down);
    let (_, media) = app.get_json("/api/v1/media/health").await;
    assert_ne!(media["active_provider"], "nowhere");

    std::fs::write(
        &file,
        format!("{good}[media]\ndefault_provider = \"mock\"\n"),
    )
    .unwrap();
    wait_titles(&got, "applied", |t| {
        t.iter().any(|x| x == "Config reloaded")
    })
    .await;
    let applied = got
        .lock()
        .unwrap()
        .iter()
        .find(|n| n.title == "Config reloaded")
        .cloned()
        .unwrap();
    assert!(applied.body.contains("setting(s)"), "{}", applied.body);
    app.stop().await;
}
