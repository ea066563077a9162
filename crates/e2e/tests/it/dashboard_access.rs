//! The dashboard opened from another machine: the Key dialog, a refused key, and a
//! gateway (non-admin) key, which gets a read-only page. 127.0.0.1 is made an outside
//! address by trusting only `::1`.

use crate::dashboard_browser::{browser, chromedriver};
use sparklio_desk_e2e::artifacts_dir;
use sparklio_testkit::app::start_app;
use std::time::Duration;

const GATEWAY: &str = "dash-gateway-key-0123456789";
const ADMIN: &str = "dash-admin-key-0123456789ab";

fn remote_toml() -> String {
    format!(
        "[server]\ntrusted_networks = [\"::1/128\"]\napi_keys = [\"{GATEWAY}\"]\nadmin_keys = [\"{ADMIN}\"]\n\
         [[services]]\nname = \"sleeper\"\nkind = \"process\"\ncommand = \"sleep\"\nargs = [\"100000\"]\n"
    )
}

/// Enter in the Key dialog saves the key (the page reloads with it and connects); a wrong
/// key is named as refused, not as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_key_dialog_saves_on_enter_and_says_when_a_key_is_refused() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &remote_toml(), &[]).await;
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("http://{}/", app.addr)).await.unwrap();
    let banner = s
        .wait_for(
            "const b = document.querySelector('#banner'); return !b.hidden && b.textContent",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(
        banner.as_str().unwrap().contains("enter an admin key"),
        "{banner}"
    );

    // A wrong key, typed and confirmed with Enter.
    s.execute("document.querySelector('#key-button').click()", vec![])
        .await
        .unwrap();
    let input = s.find("#key-input").await.unwrap();
    s.send_keys(&input, "not-a-key-of-this-desk-000\u{E007}")
        .await
        .unwrap();
    let refused = s
        .wait_for(
            "const b = document.querySelector('#banner'); return localStorage.getItem('sparklio-desk.admin-key') && document.querySelector('#conn').textContent === 'key refused' && !b.hidden && b.textContent",
            Duration::from_secs(20),
        )
        .await
        .expect("Enter saved the key, and the page says it was refused");
    assert!(refused.as_str().unwrap().contains("401"), "{refused}");

    // The admin key, with Enter again: connected, services shown.
    s.execute("document.querySelector('#key-button').click()", vec![])
        .await
        .unwrap();
    let input = s.find("#key-input").await.unwrap();
    s.execute("document.querySelector('#key-input').value = ''", vec![])
        .await
        .unwrap();
    s.send_keys(&input, &format!("{ADMIN}\u{E007}"))
        .await
        .unwrap();
    s.wait_for(
        "return document.querySelector('#conn').dataset.state === 'up' && !!document.querySelector('article.service[data-name=sleeper]')",
        Duration::from_secs(20),
    )
    .await
    .expect("the admin key opens the dashboard");
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}

/// A gateway key: the page connects but says it is read-only, shows no service (the core
/// leaves them out of the stream as it refuses `GET /api/v1/services`) and no control the
/// core would refuse; what the key may read (models, the check, events) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_read_only_with_a_gateway_key() {
    let Some((_driver, driver_url)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, &remote_toml(), &[]).await;
    let base = format!("http://{}", app.addr);
    let s = browser(&driver_url, &dir.path().join("profile")).await;
    s.goto(&format!("{base}/")).await.unwrap();
    s.execute(
        "localStorage.setItem('sparklio-desk.admin-key', arguments[0]); location.reload();",
        vec![GATEWAY.into()],
    )
    .await
    .unwrap();
    let banner = s
        .wait_for(
            "const b = document.querySelector('#banner'); return document.querySelector('#conn').dataset.state === 'readonly' && !b.hidden && b.textContent",
            Duration::from_secs(20),
        )
        .await
        .expect("connected, read-only");
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("Read-only: this key is not an admin key"),
        "{banner}"
    );
    // Several snapshots later, still no service card and no visible control.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let state = s
        .execute(
            "const visible = (sel) => { const e = document.querySelector(sel); return !!e && e.getClientRects().length > 0; };\
             return JSON.stringify({cards: document.querySelectorAll('article.service').length,\
               pause: visible('#pause-button'), mode: visible('#mode-select'), restartAll: visible('#restart-all'),\
               pull: visible('#model-pull-form'), reload: visible('#reload-config'), e2e: visible('#e2e-run'),\
               services: document.querySelector('#services').textContent})",
            vec![],
        )
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(state.as_str().unwrap()).unwrap();
    assert_eq!(state["cards"], 0, "{state}");
    for control in ["pause", "mode", "restartAll", "pull", "reload"] {
        assert_eq!(state[control], false, "{control} shown: {state}");
    }
    assert_eq!(state["e2e"], true, "the check is a gateway route: {state}");
    assert!(
        state["services"].as_str().unwrap().contains("read-only"),
        "{state}"
    );
    s.screenshot(&artifacts_dir().join("dashboard-read-only.png"))
        .await
        .unwrap();
    s.close().await.unwrap();
    app.shutdown().await.unwrap();
}
