//! The tray icon and its menu. The icon's colour is the core's overall health
//! (`sparklio_core::notify::glance`: green all up, amber something degraded, red something
//! down or failed), the tooltip has one line per service; both are refreshed on every
//! supervisor event and every 2 s. The menu acts on the core directly (the same calls
//! the control API makes).
//!
//! Creating the tray is allowed to fail (no tray host, e.g. a bare X server): the app then
//! quits when its window closes instead of hiding in a tray nobody can see.

use crate::lifecycle::{self, Core};
use crate::window;
use sparklio_core::app::SharedState;
use sparklio_core::config::{GeneratorMode, ServiceKind};
use sparklio_core::notify::{Glance, Level, MuteFor};
use sparklio_core::supervisor::Control;
use std::sync::Mutex;
use std::time::Duration;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};
use tauri_plugin_autostart::ManagerExt;

const TRAY_ID: &str = "sparklio-desk";
const MENU_OPEN: &str = "open-dashboard";
const MENU_RESTART_PREFIX: &str = "restart:";
const MENU_RESTART_ALL: &str = "restart-all";
const MENU_MODE: &str = "mode-live";
const MENU_PAUSE: &str = "pause";
const MENU_AUTOSTART: &str = "autostart";
const MENU_EDIT_CONFIG: &str = "edit-config";
const MENU_RELOAD_CONFIG: &str = "reload-config";
const MENU_QUIT: &str = "quit";
const MENU_MUTE_HOUR: &str = "mute-hour";
const MENU_MUTE_CHANGE: &str = "mute-until-change";
/// Who the tray's actions name in the event log.
const ACTOR: &str = "tray";
/// The tooltip and labels are also refreshed on this period (uptime-free, so cheap).
const REFRESH_EVERY: Duration = Duration::from_secs(2);

fn icon(level: Level) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match level {
        Level::Ok => include_bytes!("../../icons/tray-ok.png"),
        Level::Degraded => include_bytes!("../../icons/tray-warn.png"),
        Level::Down => include_bytes!("../../icons/tray-down.png"),
    })
}

/// The menu items whose text or check mark follows the core's state.
struct TrayMenu {
    menu: Menu<tauri::Wry>,
    /// One per service; rebuilt when a config reload changes the services.
    restart: Mutex<Vec<(String, MenuItem<tauri::Wry>)>>,
    restart_all: MenuItem<tauri::Wry>,
    mode: CheckMenuItem<tauri::Wry>,
    pause: MenuItem<tauri::Wry>,
    autostart: CheckMenuItem<tauri::Wry>,
    /// "Don't tell me again" for the topic of the last notification shown.
    mute_hour: MenuItem<tauri::Wry>,
    mute_change: MenuItem<tauri::Wry>,
    /// That topic (a service, `docker`, `gateway`, …).
    last_topic: Mutex<Option<String>>,
    /// What was last shown, so an unchanged state costs nothing (on Linux a new icon is
    /// a new temporary PNG file).
    shown: Mutex<Option<Glance>>,
}

/// Create the tray icon and start refreshing it; a failure is logged, never fatal.
pub fn create(app: &AppHandle) {
    match build(app) {
        Ok(_) => {
            tracing::info!("tray icon ready");
            refresh(app);
            spawn_refresher(app);
        }
        Err(e) => {
            tracing::warn!("no tray icon ({e}); closing the window will quit the app")
        }
    }
}

/// Whether a tray icon exists to keep the app reachable with no window open.
pub fn is_available(app: &AppHandle) -> bool {
    app.tray_by_id(TRAY_ID).is_some() || app.tray_by_id(crate::attach::TRAY_ID).is_some()
}

/// Show that the app is on its way out (red icon, tooltip says so).
pub fn show_stopping(app: &AppHandle) {
    set_icon_and_tooltip(app, Level::Down, "Sparklio Desk: stopping");
}

fn set_icon_and_tooltip(app: &AppHandle, level: Level, tooltip: &str) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let result = icon(level)
        .and_then(|icon| tray.set_icon(Some(icon)))
        .and_then(|()| tray.set_tooltip(Some(tooltip)));
    if let Err(e) = result {
        tracing::debug!("tray not updated: {e}");
    }
}

fn core_state(app: &AppHandle) -> Option<SharedState> {
    app.try_state::<Core>().map(|core| core.state.clone())
}

/// Bring icon, tooltip and menu labels in line with the core (only what changed).
pub fn refresh(app: &AppHandle) {
    let (Some(state), Some(menu)) = (core_state(app), app.try_state::<TrayMenu>()) else {
        return;
    };
    if state.shutdown.is_cancelled() {
        return; // `show_stopping` has the last word.
    }
    let now = state.glance();
    // Swap under the lock, update the tray after it: tray calls from a worker wait for the
    // main thread, which may itself be waiting for this lock (a menu click).
    let previous = {
        let mut shown = menu.shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.as_ref() == Some(&now) {
            return;
        }
        shown.replace(now.clone())
    };
    if previous.as_ref().map(|g| g.level) != Some(now.level) {
        // The end-to-end test follows the icon through this line.
        let summary = now.tooltip.lines().next().unwrap_or_default();
        tracing::info!("tray icon: {} ({summary})", level_name(now.level));
    }
    if previous.as_ref().map(|g| (g.level, &g.tooltip)) != Some((now.level, &now.tooltip)) {
        set_icon_and_tooltip(app, now.level, &now.tooltip);
    }
    sync_service_items(app, &menu, &state);
    let restart = menu
        .restart
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let failed = restart
        .iter()
        .map(|(name, item)| {
            let st = now
                .services
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.as_str())
                .unwrap_or("?");
            item.set_text(format!("Restart {name} ({st})"))
        })
        .chain([
            menu.mode.set_text(mode_label(now.mode)),
            menu.mode.set_checked(now.mode == GeneratorMode::Live),
            menu.pause.set_text(pause_label(now.paused)),
        ])
        .filter_map(Result::err)
        .next();
    if let Some(e) = failed {
        tracing::debug!("tray menu not updated: {e}");
    }
}

/// Where the per-service items start in the menu: after "Open dashboard", "Serving on"
/// and a separator.
const FIRST_SERVICE_ITEM: usize = 3;

fn restart_item(
    app: &AppHandle,
    entry: &sparklio_core::supervisor::ServiceEntry,
) -> tauri::Result<(String, MenuItem<tauri::Wry>)> {
    let name = entry.config.name.clone();
    // External services are only watched: nothing to restart.
    let controllable = entry.config.kind != ServiceKind::External;
    let item = MenuItem::with_id(
        app,
        format!("{MENU_RESTART_PREFIX}{name}"),
        format!("Restart {name}"),
        controllable,
        None::<&str>,
    )?;
    Ok((name, item))
}

/// A config reload may add or remove services: keep one item per service.
fn sync_service_items(app: &AppHandle, menu: &TrayMenu, state: &SharedState) {
    let services = state.supervisor.services();
    let now: Vec<&str> = services.iter().map(|e| e.config.name.as_str()).collect();
    let old = {
        let items = menu.restart.lock().unwrap_or_else(|p| p.into_inner());
        if items
            .iter()
            .map(|(n, _)| n.as_str())
            .eq(now.iter().copied())
        {
            return;
        }
        items.clone()
    };
    let mut fresh = Vec::new();
    let result = (|| -> tauri::Result<()> {
        for (_, item) in &old {
            menu.menu.remove(item)?;
        }
        for (i, entry) in services.iter().enumerate() {
            let (name, item) = restart_item(app, entry)?;
            menu.menu.insert(&item, FIRST_SERVICE_ITEM + i)?;
            fresh.push((name, item));
        }
        menu.restart_all.set_enabled(!fresh.is_empty())
    })();
    if let Err(e) = result {
        tracing::debug!("tray service items not rebuilt: {e}");
    }
    *menu.restart.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Degraded => "degraded",
        Level::Down => "down",
    }
}

fn mode_label(mode: GeneratorMode) -> String {
    format!("Live generators (now: {})", mode.as_str())
}

fn pause_label(paused: bool) -> &'static str {
    if paused {
        "Resume gateway (paused)"
    } else {
        "Pause gateway"
    }
}

/// Refresh on every supervisor event, and every [`REFRESH_EVERY`] for the switches that
/// the control API may flip behind the tray's back.
fn spawn_refresher(app: &AppHandle) {
    let Some(state) = core_state(app) else {
        return;
    };
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut events = state.supervisor.events.subscribe();
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                received = events.recv() => {
                    if matches!(received, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        break;
                    }
                }
                _ = tick.tick() => {}
            }
            refresh(&app);
        }
    });
}

fn build(app: &AppHandle) -> tauri::Result<TrayIcon> {
    let core = app.state::<Core>();
    let state = core.state.clone();
    let open = MenuItem::with_id(app, MENU_OPEN, "Open dashboard", true, None::<&str>)?;
    let serving = MenuItem::with_id(
        app,
        "serving",
        format!("Serving on {}", window::dashboard_url(core.addr)),
        false,
        None::<&str>,
    )?;
    let mut restart = Vec::new();
    for entry in state.supervisor.services() {
        restart.push(restart_item(app, &entry)?);
    }
    let restart_all = MenuItem::with_id(
        app,
        MENU_RESTART_ALL,
        "Restart all services",
        !restart.is_empty(),
        None::<&str>,
    )?;
    let mode = CheckMenuItem::with_id(
        app,
        MENU_MODE,
        mode_label(state.runtime.mode()),
        true,
        state.runtime.mode() == GeneratorMode::Live,
        None::<&str>,
    )?;
    let pause = MenuItem::with_id(
        app,
        MENU_PAUSE,
        pause_label(state.runtime.paused()),
        true,
        None::<&str>,
    )?;
    let autostart_on = app.autolaunch().is_enabled().unwrap_or_else(|e| {
        tracing::debug!("cannot tell whether start at login is on: {e}");
        false
    });
    let autostart = CheckMenuItem::with_id(
        app,
        MENU_AUTOSTART,
        "Start at login",
        true,
        autostart_on,
        None::<&str>,
    )?;
    // Opens the config file in Notepad (the template first when there is none).
    let edit_config = MenuItem::with_id(app, MENU_EDIT_CONFIG, "Edit config", true, None::<&str>)?;
    // Applies the edited file without a restart; a notification says what changed.
    let reload_config =
        MenuItem::with_id(app, MENU_RELOAD_CONFIG, "Reload config", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, MENU_QUIT, "Quit", true, None::<&str>)?;
    // Enabled once a notification was shown: they mute its topic.
    let mute_hour = MenuItem::with_id(
        app,
        MENU_MUTE_HOUR,
        "Mute the last notification for 1 h",
        false,
        None::<&str>,
    )?;
    let mute_change = MenuItem::with_id(
        app,
        MENU_MUTE_CHANGE,
        "Mute the last notification until it changes",
        false,
        None::<&str>,
    )?;

    let separator = || PredefinedMenuItem::separator(app);
    let menu = Menu::with_items(app, &[&open, &serving, &separator()?])?;
    for (_, item) in &restart {
        menu.append(item)?;
    }
    menu.append_items(&[
        &restart_all,
        &separator()?,
        &mode,
        &pause,
        &autostart,
        &edit_config,
        &reload_config,
        &separator()?,
        &mute_hour,
        &mute_change,
        &separator()?,
        &quit,
    ])?;
    app.manage(TrayMenu {
        menu: menu.clone(),
        restart: Mutex::new(restart),
        restart_all: restart_all.clone(),
        mode,
        pause,
        autostart: autostart.clone(),
        mute_hour,
        mute_change,
        last_topic: Mutex::new(None),
        shown: Mutex::new(None),
    });

    let initial = state.glance();
    // No `title`: on Linux it becomes a text label beside the icon; the tooltip names the app.
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(initial.level)?)
        .tooltip(&initial.tooltip)
        .menu(&menu)
        // Left click opens the dashboard (Windows, macOS); the menu is on the right click.
        .show_menu_on_left_click(false)
        .on_menu_event(on_menu_event)
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                open_dashboard_async(tray.app_handle());
            }
        })
        .build(app)
}

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    let id = event.id().as_ref();
    match id {
        MENU_OPEN => open_dashboard_async(app),
        MENU_QUIT => lifecycle::quit(app),
        MENU_AUTOSTART => toggle_autostart(app),
        MENU_EDIT_CONFIG => crate::config_file::edit(),
        _ => {
            let Some(state) = core_state(app) else {
                return;
            };
            match id {
                MENU_RESTART_ALL => {
                    for entry in state.supervisor.services() {
                        restart(&state, &entry.config.name);
                    }
                }
                MENU_MODE => {
                    let mode = match state.runtime.mode() {
                        GeneratorMode::Mock => GeneratorMode::Live,
                        GeneratorMode::Live => GeneratorMode::Mock,
                    };
                    state.runtime.set_mode(mode);
                    tracing::info!(mode = mode.as_str(), by = ACTOR, "generator mode switched");
                }
                MENU_MUTE_HOUR | MENU_MUTE_CHANGE => {
                    let for_ = if id == MENU_MUTE_HOUR {
                        MuteFor::Hour
                    } else {
                        MuteFor::UntilChange
                    };
                    mute_last(app, &state, for_);
                }
                MENU_RELOAD_CONFIG => {
                    let app = app.clone();
                    tauri::async_runtime::spawn(async move {
                        let (title, body) = match state.reload_config(ACTOR).await {
                            Ok(r) => ("Config reloaded", r.summary),
                            Err(e) => ("Config not applied", e.message()),
                        };
                        crate::notify::show(&app, title, &body);
                    });
                }
                MENU_PAUSE => {
                    let paused = !state.runtime.paused();
                    state.runtime.set_paused(paused);
                    tracing::info!(paused, by = ACTOR, "gateway pause switched");
                }
                _ => match id.strip_prefix(MENU_RESTART_PREFIX) {
                    Some(name) => restart(&state, name),
                    None => tracing::debug!("unknown tray menu item {id}"),
                },
            }
            // The check item toggled itself; make every label say the truth again.
            if let Some(menu) = app.try_state::<TrayMenu>() {
                *menu.shown.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            refresh(app);
        }
    }
}

/// A notification about `topic` was shown: the mute items now name it.
pub fn notified(app: &AppHandle, topic: &str, title: &str) {
    let Some(menu) = app.try_state::<TrayMenu>() else {
        return;
    };
    *menu.last_topic.lock().unwrap_or_else(|p| p.into_inner()) = Some(topic.to_string());
    let result = menu
        .mute_hour
        .set_text(format!("Mute “{title}” for 1 h"))
        .and_then(|()| {
            menu.mute_change
                .set_text(format!("Mute “{title}” until it changes"))
        })
        .and_then(|()| menu.mute_hour.set_enabled(true))
        .and_then(|()| menu.mute_change.set_enabled(true));
    if let Err(e) = result {
        tracing::debug!("tray mute items not updated: {e}");
    }
}

/// Mute the topic of the last notification (the same mutes the dashboard sets).
fn mute_last(app: &AppHandle, state: &SharedState, for_: MuteFor) {
    let Some(menu) = app.try_state::<TrayMenu>() else {
        return;
    };
    let topic = menu
        .last_topic
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(topic) = topic {
        if state
            .mutes
            .mute(&topic, for_, std::time::Instant::now())
            .is_none()
        {
            tracing::warn!(topic, "not muted: too many topics are muted already");
            return;
        }
        tracing::info!(topic, ?for_, by = ACTOR, "notifications muted");
        let _ = menu.mute_hour.set_enabled(false);
        let _ = menu.mute_change.set_enabled(false);
    }
}

fn restart(state: &SharedState, name: &str) {
    match state.supervisor.control(
        name,
        Control::Restart {
            actor: ACTOR.into(),
        },
    ) {
        Ok(_) => tracing::info!(service = name, by = ACTOR, "restart requested"),
        // External services are watched only; the menu disables them, restart-all skips them.
        Err(e) => tracing::debug!(service = name, "not restarted: {e:?}"),
    }
}

/// Start at login on/off (tauri-plugin-autostart); a failure leaves the check mark as it was.
fn toggle_autostart(app: &AppHandle) {
    let launcher = app.autolaunch();
    let result = match launcher.is_enabled() {
        Ok(true) => launcher.disable(),
        _ => launcher.enable(),
    };
    if let Err(e) = &result {
        tracing::warn!("start at login not changed: {e}");
    }
    let on = launcher.is_enabled().unwrap_or(false);
    tracing::info!(on, "start at login");
    if let Some(menu) = app.try_state::<TrayMenu>() {
        let _ = menu.autostart.set_checked(on);
    }
}

/// Window creation off the event handler: building a webview inside a synchronous event
/// handler can deadlock on Windows (Tauri's documented WebviewWindowBuilder caveat).
fn open_dashboard_async(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move { window::open_dashboard(&app) });
}
