//! Attaching to a core that already runs (the Windows service `SparklioDesk`, or a
//! `sparklio-desk serve`) instead of starting a second one on the same port.
//!
//! At start the app asks `GET http://<server.bind>/api/v1/status`; when a Sparklio Desk
//! answers, the app runs no core of its own: its window shows that core's dashboard, its
//! tray icon and tooltip follow that core's `/api/v1/status` (every 2 s), "Restart all
//! services" calls its control API with the admin key from `<data_dir>/admin.key` (the file
//! the service creates, readable by the owner), and Quit closes only the tray app: the
//! service keeps serving. The service has no desktop to notify on: the app shows the
//! core's notifications itself (`GET /api/v1/notifications?after=N`, polled with the
//! status), from those delivered after it attached.

use crate::window;
use serde_json::Value;
use sparklio_core::config::LoadedConfig;
use sparklio_core::notify::glance::tooltip;
use sparklio_core::notify::Level;
use sparklio_core::supervisor::ServiceState;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};
use tauri_plugin_autostart::ManagerExt;

pub const TRAY_ID: &str = "sparklio-desk-attached";
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Managed state in attached mode.
pub struct Attached {
    pub addr: SocketAddr,
    pub pid: u64,
    base: String,
    admin_key: Option<String>,
    client: reqwest::Client,
}

/// A core already serving on `server.bind`, if any.
pub fn probe(loaded: &LoadedConfig) -> Option<Attached> {
    let addr: SocketAddr = loaded
        .config
        .server
        .bind
        .addresses()
        .first()?
        .parse()
        .ok()?;
    let base = window::dashboard_url(addr)
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .ok()?;
    let status = tauri::async_runtime::block_on(get_status(&client, &base, None))?;
    if status["name"] != "sparklio-desk" {
        return None;
    }
    let admin_key = status["data_dir"]
        .as_str()
        .and_then(|d| sparklio_core::platform::keyfile::read_admin_key(Path::new(d)));
    Some(Attached {
        addr,
        pid: status["pid"].as_u64().unwrap_or(0),
        base,
        admin_key,
        client,
    })
}

async fn get_status(client: &reqwest::Client, base: &str, key: Option<&str>) -> Option<Value> {
    get_json(client, &format!("{base}/api/v1/status"), key).await
}

async fn get_json(client: &reqwest::Client, url: &str, key: Option<&str>) -> Option<Value> {
    let mut req = client.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()
}

/// Level and tooltip from a `/api/v1/status` answer (the same words as the in-process tray).
pub fn level_and_tooltip(status: &Value) -> (Level, String) {
    // A state this build does not know (a newer core) reads as failed: worth a look.
    let services: Vec<(String, ServiceState)> = status["services"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("?").to_string(),
                        s["state"]
                            .as_str()
                            .and_then(ServiceState::parse)
                            .unwrap_or(ServiceState::Failed),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mode = status["generator_mode"].as_str().unwrap_or("?");
    let paused = status["paused"].as_bool().unwrap_or(false);
    let (level, _, text) = tooltip(&services, &[], &[], mode, paused);
    // The core's own verdict also counts what the lists here do not: the live
    // providers' reach. Its summary is the first line, as in the in-process tray.
    let level = serde_json::from_value::<Level>(status["health"]["level"].clone())
        .map_or(level, |core| core.max(level));
    let text = match status["health"]["summary"].as_str() {
        Some(summary) => {
            let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
            format!("Sparklio Desk: {summary}\n{rest}")
        }
        None => text,
    };
    (
        level,
        format!("{text}\n(attached to pid {})", status["pid"]),
    )
}

fn icon(level: Level) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match level {
        Level::Ok => include_bytes!("../../icons/tray-ok.png"),
        Level::Degraded => include_bytes!("../../icons/tray-warn.png"),
        Level::Down => include_bytes!("../../icons/tray-down.png"),
    })
}

/// The attached tray: open, restart all, edit config, start at login, quit (the tray only).
pub fn create_tray(app: &AppHandle) -> tauri::Result<()> {
    let att = app.state::<Attached>();
    let open = MenuItem::with_id(app, "open", "Open dashboard", true, None::<&str>)?;
    let serving = MenuItem::with_id(
        app,
        "serving",
        format!(
            "Attached to {} (pid {})",
            window::dashboard_url(att.addr),
            att.pid
        ),
        false,
        None::<&str>,
    )?;
    let restart_all = MenuItem::with_id(
        app,
        "restart-all",
        if att.admin_key.is_some() {
            "Restart all services"
        } else {
            "Restart all services (no admin key file)"
        },
        true,
        None::<&str>,
    )?;
    let edit = MenuItem::with_id(app, "edit-config", "Edit config", true, None::<&str>)?;
    let autostart = CheckMenuItem::with_id(
        app,
        "autostart",
        "Start at login",
        true,
        app.autolaunch().is_enabled().unwrap_or(false),
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(
        app,
        "quit",
        "Quit tray (the service keeps running)",
        true,
        None::<&str>,
    )?;
    let sep = || PredefinedMenuItem::separator(app);
    let menu = Menu::with_items(
        app,
        &[
            &open,
            &serving,
            &sep()?,
            &restart_all,
            &edit,
            &autostart,
            &sep()?,
            &quit,
        ],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(Level::Degraded)?)
        .tooltip("Sparklio Desk: attaching…")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(move |app, event| on_menu(app, event, &autostart))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                let app = tray.app_handle().clone();
                tauri::async_runtime::spawn(async move { window::open_dashboard(&app) });
            }
        })
        .build(app)?;
    spawn_refresher(app);
    Ok(())
}

fn on_menu(app: &AppHandle, event: MenuEvent, autostart: &CheckMenuItem<tauri::Wry>) {
    match event.id().as_ref() {
        "open" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move { window::open_dashboard(&app) });
        }
        "restart-all" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let att = app.state::<Attached>();
                let mut req = att
                    .client
                    .post(format!("{}/api/v1/services/restart-all", att.base));
                if let Some(k) = &att.admin_key {
                    req = req.bearer_auth(k);
                }
                match req.send().await.map(|r| r.status()) {
                    Ok(s) if s.is_success() => tracing::info!("restart of all services requested"),
                    Ok(s) => tracing::warn!("restart-all refused by the running core: HTTP {s}"),
                    Err(e) => tracing::warn!("restart-all failed: {e}"),
                }
            });
        }
        "edit-config" => crate::config_file::edit(),
        "autostart" => {
            let launcher = app.autolaunch();
            let result = match launcher.is_enabled() {
                Ok(true) => launcher.disable(),
                _ => launcher.enable(),
            };
            if let Err(e) = result {
                tracing::warn!("start at login not changed: {e}");
            }
            let _ = autostart.set_checked(launcher.is_enabled().unwrap_or(false));
        }
        "quit" => app.exit(0),
        _ => {}
    }
}

/// Most notifications shown at once; more in one poll (a burst, or a long sleep of the
/// machine) are summed up in one.
const SHOWN_AT_ONCE: usize = 3;

/// What a `/api/v1/notifications` answer holds that this app has not shown, as (title,
/// body), and the id to ask after next. The first answer only says where to start: what
/// the core notified before the app attached is not news. A core that restarted counts
/// from 1 again and answers everything it has: all of it is new.
pub fn unseen(answer: &Value, seen: Option<u64>) -> (Vec<(String, String)>, Option<u64>) {
    let Some(last) = answer["last_id"].as_u64() else {
        return (Vec::new(), seen);
    };
    if seen.is_none() {
        return (Vec::new(), Some(last));
    }
    let items: Vec<(String, String)> = answer["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            Some((
                n["title"].as_str()?.to_string(),
                n["body"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut shown: Vec<(String, String)> = items.iter().take(SHOWN_AT_ONCE).cloned().collect();
    if items.len() > SHOWN_AT_ONCE {
        let more = &items[SHOWN_AT_ONCE..];
        shown.push((
            format!("{} more notifications", more.len()),
            more.iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    (shown, Some(last))
}

fn spawn_refresher(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut shown: Option<(Level, String)> = None;
        let mut seen: Option<u64> = None;
        loop {
            {
                let att = app.state::<Attached>();
                let url = format!(
                    "{}/api/v1/notifications?after={}",
                    att.base,
                    seen.unwrap_or(0)
                );
                if let Some(answer) = get_json(&att.client, &url, att.admin_key.as_deref()).await {
                    let (new, next) = unseen(&answer, seen);
                    seen = next;
                    for (title, body) in new {
                        // Showing may block (D-Bus on Linux): off the runtime's workers.
                        let app = app.clone();
                        tauri::async_runtime::spawn_blocking(move || {
                            crate::notify::show(&app, &title, &body);
                        });
                    }
                }
            }
            let now = {
                let att = app.state::<Attached>();
                match get_status(&att.client, &att.base, att.admin_key.as_deref()).await {
                    Some(status) => level_and_tooltip(&status),
                    None => (
                        Level::Down,
                        format!("Sparklio Desk: the core at {} does not answer", att.base),
                    ),
                }
            };
            if shown.as_ref() != Some(&now) {
                if let Some(tray) = app.tray_by_id(TRAY_ID) {
                    let _ = icon(now.0).and_then(|i| tray.set_icon(Some(i)));
                    let _ = tray.set_tooltip(Some(&now.1));
                }
                shown = Some(now);
            }
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooltip_from_a_status_answer() {
        let status = serde_json::json!({
            "name": "sparklio-desk", "pid": 4242, "generator_mode": "live", "paused": false,
            "services": [{"name": "comfyui", "state": "running"}, {"name": "ollama-sparklio", "state": "crashed"}],
        });
        let (level, text) = level_and_tooltip(&status);
        assert_eq!(level, Level::Down);
        assert!(text.contains("comfyui: running"), "{text}");
        assert!(text.contains("ollama-sparklio: crashed"), "{text}");
        assert!(text.ends_with("(attached to pid 4242)"), "{text}");
    }

    #[test]
    fn the_cores_notifications_are_shown_once_from_when_the_app_attached() {
        let answer = |last: u64, titles: &[&str]| {
            serde_json::json!({
                "last_id": last,
                "notifications": titles.iter().map(|t| serde_json::json!({"title": t, "body": format!("{t}!")})).collect::<Vec<_>>(),
            })
        };
        // At attach: nothing shown, whatever the core delivered before.
        let (shown, seen) = unseen(&answer(7, &["old news"]), None);
        assert!(shown.is_empty());
        assert_eq!(seen, Some(7));
        // After: what came since, once.
        let (shown, seen) = unseen(&answer(8, &["comfyui went down"]), seen);
        assert_eq!(
            shown,
            [(
                "comfyui went down".to_string(),
                "comfyui went down!".to_string()
            )]
        );
        assert_eq!(seen, Some(8));
        let (shown, seen) = unseen(&answer(8, &[]), seen);
        assert!(shown.is_empty());
        // A burst: three, then one that sums up the rest.
        let (shown, _) = unseen(&answer(13, &["a", "b", "c", "d", "e"]), seen);
        assert_eq!(shown.len(), 4);
        assert_eq!(shown[3].0, "2 more notifications");
        assert_eq!(shown[3].1, "d; e");
        // The core does not answer the shape: nothing shown, the place kept.
        let (shown, seen) = unseen(&serde_json::json!({"error": "x"}), Some(8));
        assert!(shown.is_empty());
        assert_eq!(seen, Some(8));
    }
}
