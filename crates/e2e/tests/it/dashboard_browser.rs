//! The dashboard in a real browser: headless Chromium (Debian's package) driven through
//! chromedriver, against a real `sparklio-desk` core on 127.0.0.1.

use serde_json::{json, Value};
use sparklio_desk_e2e::{artifacts_dir, free_port, start_driver, Guard, Session};
use sparklio_testkit::app::start_app;
use sparklio_testkit::{OllamaDouble, ServiceToml};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromedriver, or None (with a note) when Chromium is not installed outside CI.
pub(crate) fn chromedriver() -> Option<(Guard, String)> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver (see .ci/run)"
        );
        eprintln!("skipping: {CHROMEDRIVER} not installed (bash scripts/test.sh installs it)");
        return None;
    }
    let port = free_port();
    let guard =
        start_driver(CHROMEDRIVER, &[format!("--port={port}")], port).expect("chromedriver starts");
    Some((guard, format!("http://127.0.0.1:{port}")))
}

pub(crate) async fn browser(driver: &str, profile: &std::path::Path) -> Session {
    Session::new(
        driver,
        json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,2300",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }),
    )
    .await
    .expect("browser session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_status_and_switches_mode() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, "", &[]).await;
    let base = format!("http://{}", app.addr);
    let profile = dir.path().join("profile");
    let s = browser(&driver_url, &profile).await;

    s.goto(&format!("{base}/")).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up'",
        Duration::from_secs(20),
    )
    .await
    .expect("dashboard connects to the core");
    let about: Value = s
        .wait_for(
            "return document.querySelector('#status-list').textContent",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        about.as_str().unwrap().contains(env!("CARGO_PKG_VERSION")),
        "{about}"
    );
    let mode = s
        .execute(
            "return document.querySelector('#mode-select').value",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(mode, "mock");

    // Switch to live through the page; the core must agree.
    s.execute(
        "const sel = document.querySelector('#mode-select'); sel.value = 'live'; sel.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let mut live = false;
    for _ in 0..50 {
        let st: Value = client
            .get(format!("{base}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if st["generator_mode"] == "live" {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "the mode switch did not reach the core");

    s.screenshot(&artifacts_dir().join("dashboard-basic.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_says_when_the_core_is_unreachable() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, "", &[]).await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up'",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    app.shutdown().await.unwrap();
    let banner = s
        .wait_for(
            "const b = document.querySelector('#banner'); return !b.hidden && b.textContent",
            Duration::from_secs(20),
        )
        .await
        .expect("banner appears");
    assert!(banner.as_str().unwrap().contains("unreachable"), "{banner}");
    assert_eq!(
        s.execute(
            "return document.querySelector('#conn').dataset.state",
            vec![]
        )
        .await
        .unwrap(),
        "down"
    );
    s.screenshot(&artifacts_dir().join("dashboard-unreachable.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
}

/// The whole page against real parts: a supervised process (the test service), a Docker
/// service whose engine is not running, an Ollama double lacking two routed models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_services_models_events_and_restarts_a_service() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let ollama =
        OllamaDouble::start_with(&["qwen2.5:7b", "llama3.2:latest"], &["qwen2.5:7b"]).await;
    let port = free_port();
    let dead = free_port();
    let toml = format!(
        r#"
generator_mode = "mock"

[llm.providers.ollama]
kind = "ollama"
base_url = "{ollama}"

[supervisor]
docker_host = "tcp://127.0.0.1:{dead}"

{comfyui}
[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
"#,
        ollama = ollama.base_url(),
        comfyui = ServiceToml::new("comfyui", port)
            .default_backoff()
            .line(r#"provides = ["comfyui"]"#),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &toml, &[]).await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();

    // Service cards: the process comes up, Docker's absence is said plainly.
    s.wait_for(
        "return document.querySelector('article.service[data-name=comfyui]')?.dataset.state === 'running'",
        Duration::from_secs(30),
    )
    .await
    .expect("comfyui card shows running");
    let docker = s
        .wait_for(
            "const c = document.querySelector('article.service[data-name=\"ollama-sparklio\"]'); return c && c.dataset.state === 'unavailable' && c.textContent",
            Duration::from_secs(30),
        )
        .await
        .expect("docker card");
    assert!(
        docker.as_str().unwrap().contains("Docker is not running"),
        "{docker}"
    );

    // Models: the installed ones, and the routed ones that are missing, highlighted.
    let models = s
        .wait_for("return document.querySelector('#models table') && document.querySelector('#models').textContent", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(models.as_str().unwrap().contains("qwen2.5:7b"), "{models}");
    let missing = s
        .wait_for(
            "return [...document.querySelectorAll('#models tr.missing')].map(r => r.textContent).join('|')",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        missing.as_str().unwrap().contains("qwen2.5:14b")
            && missing.as_str().unwrap().contains("mistral-small"),
        "{missing}"
    );

    // Events render (the service start-up is in the timeline).
    s.wait_for(
        "return document.querySelectorAll('#events li').length > 0",
        Duration::from_secs(20),
    )
    .await
    .expect("events render");

    // Click Restart on the service card; the core restarts it and the page shows it.
    let pid_before = service(&base, "comfyui").await["pid"].clone();
    let button = s
        .find("article.service[data-name=comfyui] button[data-action=restart]")
        .await
        .unwrap();
    s.click(&button).await.unwrap();
    let restart_event = s
        .wait_for(
            "return [...document.querySelectorAll('#events li')].map(l => l.textContent).find(t => t.includes('comfyui') && t.includes('restart'))",
            Duration::from_secs(20),
        )
        .await
        .expect("the restart shows in the event list");
    // Who asked is in the event log.
    assert!(
        restart_event.as_str().unwrap().contains("restarted by"),
        "{restart_event}"
    );
    // The new process runs (the card may still show the old one's "running" until the
    // next snapshot: the API decides when the restart is done, then the card follows).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = service(&base, "comfyui").await;
        if (now["state"] == "running" && now["pid"] != pid_before)
            || std::time::Instant::now() > deadline
        {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after["state"], "running", "{after}");
    assert_ne!(after["pid"], pid_before, "a new process after the restart");
    s.wait_for(
        "return document.querySelector('article.service[data-name=comfyui]')?.dataset.state === 'running'",
        Duration::from_secs(30),
    )
    .await
    .unwrap();

    // The end-to-end check from its button.
    let run = s.find("#e2e-run").await.unwrap();
    s.click(&run).await.unwrap();
    let verdict = s
        .wait_for(
            "const v = document.querySelector('#e2e-verdict'); return (v.className === 'pass' || v.className === 'fail') && v.className + ': ' + v.textContent",
            Duration::from_secs(60),
        )
        .await
        .expect("the check passes");
    assert!(
        verdict.as_str().unwrap().starts_with("pass: PASS"),
        "{verdict}"
    );
    s.wait_for(
        "return document.querySelector('#e2e-image').naturalWidth",
        Duration::from_secs(20),
    )
    .await
    .expect("the image loads");

    s.screenshot(&artifacts_dir().join("dashboard.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

async fn service(base: &str, name: &str) -> Value {
    reqwest::get(format!("{base}/api/v1/services/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The event list in the browser: a blocked Docker service checked again and again is one
/// line whose count grows live; the filters narrow the list; a topic is muted and unmuted
/// from the page (and the core agrees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_counts_repeats_filters_events_and_mutes_a_topic() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
generator_mode = "mock"

[supervisor]
docker_host = "unix://{sock}"
unavailable_recheck_ms = 100

{comfyui}
[[services]]
name = "ollama-sparklio"
kind = "docker"
container = "ollama-sparklio"
"#,
        sock = dir.path().join("no-engine.sock").display(),
        comfyui = ServiceToml::new("comfyui", port).default_backoff(),
    );
    let app = start_app(&dir, &toml, &[]).await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();

    // One line for the blocked service, its count rising as the checks come in (live).
    let line = "[...document.querySelectorAll('#events li')].find(li => li.querySelector('strong')?.textContent === 'ollama-sparklio' && li.textContent.includes('unavailable'))";
    let first = s
        .wait_for(
            &format!("const li = {line}; return li && Number(li.dataset.count) >= 3 && Number(li.dataset.count)"),
            Duration::from_secs(30),
        )
        .await
        .expect("a counted unavailable event");
    let later = s
        .wait_for(
            &format!("const li = {line}; return li && Number(li.dataset.count) > {first} && li.textContent"),
            Duration::from_secs(30),
        )
        .await
        .expect("the count grows live");
    assert!(later.as_str().unwrap().contains(" since "), "{later}");
    let lines = s
        .execute(
            "return [...document.querySelectorAll('#events li')].filter(li => li.textContent.includes('starting → unavailable')).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(lines, 1, "repeats are one line");

    // Filters: one service; then the down level only.
    let set = |id: &str, value: &str| {
        format!("const sel = document.querySelector('{id}'); sel.value = '{value}'; sel.dispatchEvent(new Event('change')); return sel.value")
    };
    s.wait_for(
        "return [...document.querySelector('#event-service').options].some(o => o.value === 'comfyui')",
        Duration::from_secs(20),
    )
    .await
    .expect("the service filter lists the services");
    assert_eq!(
        s.execute(&set("#event-service", "comfyui"), vec![])
            .await
            .unwrap(),
        "comfyui"
    );
    s.wait_for(
        "const names = [...document.querySelectorAll('#events li strong')].map(n => n.textContent); return names.length > 0 && names.every(n => n === 'comfyui')",
        Duration::from_secs(20),
    )
    .await
    .expect("only comfyui's events");
    s.execute(&set("#event-service", ""), vec![]).await.unwrap();
    s.execute(&set("#event-level", "down"), vec![])
        .await
        .unwrap();
    s.wait_for(
        "const lis = [...document.querySelectorAll('#events li')]; return lis.length > 0 && lis.every(li => li.dataset.level === 'down')",
        Duration::from_secs(20),
    )
    .await
    .expect("only down events");

    // Mute the docker topic until it changes, from the event's own button. The line is
    // updated in place as its count grows: the button found before an update is still the
    // one clicked after it.
    let button = s
        .find("#events li button.mute[data-topic='docker'][data-for='until_change']")
        .await
        .unwrap();
    let before = s
        .execute(&format!("return Number(({line}).dataset.count)"), vec![])
        .await
        .unwrap();
    s.wait_for(
        &format!("return Number(({line}).dataset.count) > {before}"),
        Duration::from_secs(20),
    )
    .await
    .expect("still counting");
    s.click(&button).await.unwrap();
    let muted = s
        .wait_for(
            "const m = document.querySelector('#mutes'); return !m.hidden && m.textContent",
            Duration::from_secs(20),
        )
        .await
        .expect("the mute is listed");
    assert!(
        muted.as_str().unwrap().contains("docker until it changes"),
        "{muted}"
    );
    let client = reqwest::Client::new();
    let mutes: Value = client
        .get(format!("{base}/api/v1/notifications/mutes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mutes["mutes"][0]["topic"], "docker", "{mutes}");
    s.screenshot(&artifacts_dir().join("dashboard-events-mute.png"))
        .await
        .unwrap();

    let unmute = s.find("#mutes button").await.unwrap();
    s.click(&unmute).await.unwrap();
    s.wait_for(
        "return document.querySelector('#mutes').hidden",
        Duration::from_secs(20),
    )
    .await
    .expect("unmuted");
    let mutes: Value = client
        .get(format!("{base}/api/v1/notifications/mutes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mutes["mutes"], json!([]));
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// Model actions in the page: "Pull" on a missing routed model shows a progress bar that
/// moves and finishes, the model joins the table; "Delete" asks, names the routes that
/// use the model, and deletes only when confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pulls_a_missing_model_with_progress_and_deletes_after_confirming() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let ollama =
        OllamaDouble::start_with(&["qwen2.5:7b", "llama3.2:latest"], &["qwen2.5:7b"]).await;
    // A download slow enough to watch: the pull's body trickles.
    ollama
        .set_fault(
            // Slow enough (about 6 s) that the page's 0.5 s polls see it between 0 and 100 %
            // even on a loaded machine.
            sparklio_testkit::Fault::Trickle {
                bytes: 16,
                interval_ms: 100,
            }
            .on("/api/pull"),
        )
        .await;
    let toml = format!(
        "generator_mode = \"live\"\n[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        ollama.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &toml, &[]).await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();

    s.wait_for(
        "const b = document.querySelector('#models tr.missing[data-model=\"qwen2.5:14b\"] button'); if (!b) return false; b.click(); return true;",
        Duration::from_secs(20),
    )
    .await
    .expect("a Pull button on the missing model");
    let moving = s
        .wait_for(
            "const p = document.querySelector('.pull[data-model=\"qwen2.5:14b\"] progress'); return p && p.value > 0 && p.value < 100 && p.value",
            Duration::from_secs(20),
        )
        .await
        .expect("the bar moves");
    assert!(moving.as_f64().unwrap() > 0.0);
    s.screenshot(&artifacts_dir().join("dashboard-model-pull.png"))
        .await
        .unwrap();
    s.wait_for(
        "return !!document.querySelector('.pull.succeeded[data-model=\"qwen2.5:14b\"]')",
        Duration::from_secs(60),
    )
    .await
    .expect("the pull finishes");
    s.wait_for(
        "return !!document.querySelector('#models tr:not(.missing)[data-model=\"qwen2.5:14b\"]')",
        Duration::from_secs(20),
    )
    .await
    .expect("the pulled model joins the table");

    // Delete: asked first, then refused with the routes, deleted only when confirmed.
    s.execute(
        "document.querySelector('#models tr[data-model=\"qwen2.5:7b\"] td.actions button.danger').click()",
        vec![],
    )
    .await
    .unwrap();
    s.wait_for(
        "const b = [...document.querySelectorAll('#models tr[data-model=\"qwen2.5:7b\"] button')].find(b => b.textContent === 'Confirm delete'); if (!b) return false; b.click(); return true;",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let warning = s
        .wait_for(
            "const r = document.querySelector('#models tr[data-model=\"qwen2.5:7b\"]'); return r && [...r.querySelectorAll('button')].some(b => b.textContent === 'Delete anyway') && r.textContent",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        warning.as_str().unwrap().contains("default_route"),
        "{warning}"
    );
    let tags_before: Vec<String> = ollama.state.models.lock().unwrap().clone();
    assert!(
        tags_before.iter().any(|m| m == "qwen2.5:7b"),
        "not deleted before confirming"
    );
    s.execute(
        "[...document.querySelectorAll('#models tr[data-model=\"qwen2.5:7b\"] button')].find(b => b.textContent === 'Delete anyway').click()",
        vec![],
    )
    .await
    .unwrap();
    s.wait_for(
        "return !document.querySelector('#models tr:not(.missing)[data-model=\"qwen2.5:7b\"]')",
        Duration::from_secs(20),
    )
    .await
    .expect("the deleted model leaves the table");
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// ComfyUI's one queue on the dashboard: an outside prompt sent through `/comfyui` with a
/// named key is shown running, with whose it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_whose_comfyui_prompt_runs() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let comfy = sparklio_testkit::ComfyDouble::start().await;
    comfy.node_ms(3000);
    let toml = format!(
        r#"
generator_mode = "live"

[[server.keys]]
name = "comfy-scripts"
key = "comfy-scripts-key-0123456789"
role = "gateway"
fronts = ["comfyui"]

[media.providers.comfyui]
kind = "comfyui"
base_url = "{}"
"#,
        comfy.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &toml, &[]).await;
    let base = format!("http://{}", app.addr);
    let graph = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "dash"}}
    });
    let r = reqwest::Client::new()
        .post(format!("{base}/comfyui/prompt"))
        .bearer_auth("comfy-scripts-key-0123456789")
        .json(&json!({"prompt": graph}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();
    let line = s
        .wait_for(
            "const t = document.querySelector('#comfy-queue').textContent; return t.includes('running') && t",
            Duration::from_secs(20),
        )
        .await
        .expect("the ComfyUI queue line");
    let line = line.as_str().unwrap();
    assert!(
        line.contains("running an outside prompt from 127.0.0.1 (key comfy-scripts)"),
        "{line}"
    );
    assert!(line.contains("ComfyUI queue (comfyui)"), "{line}");
    s.screenshot(&artifacts_dir().join("dashboard-comfyui-queue.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// First run: with no services configured the dashboard offers discovery; the owner
/// searches (a port and a folder given in the panel), keeps one proposal, adds it, and
/// the service is supervised at once — written into the config file, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_discovers_services_and_supervises_the_accepted_one() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let port = free_port();
    let _ollama = OllamaDouble::start_on(port, &["qwen2.5:7b"], &[])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(tools.join("ComfyUI/comfy")).unwrap();
    std::fs::write(tools.join("ComfyUI/main.py"), "").unwrap();
    let app = start_app(&dir, "# the owner's notes", &[]).await;
    let config_file = app.state.config().file.clone().unwrap();
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();

    // No services: the panel is offered without asking.
    s.wait_for(
        "return !document.querySelector('#discovery').hidden",
        Duration::from_secs(20),
    )
    .await
    .expect("the discovery panel opens on a first run");
    s.execute(
        "document.querySelector('#discover-ports').value = arguments[0];\
         document.querySelector('#discover-dirs').value = arguments[1];\
         document.querySelector('#discover-run').click();",
        vec![json!(port.to_string()), json!(tools.display().to_string())],
    )
    .await
    .unwrap();
    let name = format!("ollama-{port}");
    let found = s
        .wait_for(
            "const l = [...document.querySelectorAll('#discover-results .proposal')].map(p => p.dataset.name); return l.length >= 2 && l",
            Duration::from_secs(20),
        )
        .await
        .expect("proposals listed");
    let found: Vec<String> = serde_json::from_value(found).unwrap();
    assert!(
        found.contains(&name) && found.contains(&"comfyui".to_string()),
        "{found:?}"
    );
    // Keep only the Ollama.
    s.execute(
        "document.querySelector('#discover-results input[data-name=\"comfyui\"]').click()",
        vec![],
    )
    .await
    .unwrap();
    s.screenshot(&artifacts_dir().join("dashboard-discovery.png"))
        .await
        .unwrap();
    assert!(
        !std::fs::read_to_string(&config_file)
            .unwrap()
            .contains("[[services]]"),
        "nothing is written before accepting"
    );
    s.execute("document.querySelector('#discover-accept').click()", vec![])
        .await
        .unwrap();
    let state = s
        .wait_for(
            &format!(
                "const c = [...document.querySelectorAll('#services .service')].find(c => c.textContent.includes('{name}')); return c && c.dataset.state === 'running' && c.dataset.state"
            ),
            Duration::from_secs(30),
        )
        .await
        .expect("the accepted service is supervised without a restart");
    assert_eq!(state, "running");
    // The Models panel follows the new provider's service as it comes up: no Refresh click
    // (it was read once, at accept, while the service was still starting).
    s.wait_for(
        "return !!document.querySelector('#models tr[data-model=\"qwen2.5:7b\"]')",
        Duration::from_secs(20),
    )
    .await
    .expect("the models panel refreshes by itself");
    let note = s
        .text(&s.find("#discover-note").await.unwrap())
        .await
        .unwrap();
    assert!(note.contains(&name), "{note}");
    let text = std::fs::read_to_string(&config_file).unwrap();
    assert!(text.contains("# the owner's notes"), "{text}");
    assert!(text.contains(&format!("name = \"{name}\"")), "{text}");
    assert!(!text.contains("name = \"comfyui\""), "{text}");
    s.screenshot(&artifacts_dir().join("dashboard-discovery-accepted.png"))
        .await
        .unwrap();

    // "Reload config" applies an edit of the file and says what changed.
    std::fs::write(
        &config_file,
        text.replace(
            "# the owner's notes",
            "# the owner's notes\n[media]\ndefault_provider = \"mock\"",
        ),
    )
    .unwrap();
    s.execute("document.querySelector('#reload-config').click()", vec![])
        .await
        .unwrap();
    let note = s
        .wait_for(
            "const t = document.querySelector('#reload-note').textContent; return t.startsWith('Config reloaded') && t",
            Duration::from_secs(20),
        )
        .await
        .expect("the reload is reported");
    assert!(
        note.as_str().unwrap().contains("setting(s) changed"),
        "{note}"
    );
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}
