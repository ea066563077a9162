//! The tray icon and its menu. The icon's colour tells the app's health at a glance
//! (`icons/tray-*.png`; issue 6 drives it from the supervisor).
//!
//! Creating the tray is allowed to fail (no tray host, e.g. a bare X server): the app then
//! quits when its window closes instead of hiding in a tray nobody can see.

use crate::lifecycle::{self, Core};
use crate::window;
use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};

const TRAY_ID: &str = "sparklio-desk";
const TOOLTIP: &str = "Sparklio Desk";
const MENU_OPEN: &str = "open-dashboard";
const MENU_QUIT: &str = "quit";

/// What the tray icon's colour says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayHealth {
    /// Everything is up (green dot).
    Ok,
    /// The core is stopping or down (red dot).
    Down,
}

impl TrayHealth {
    fn icon_png(self) -> &'static [u8] {
        match self {
            TrayHealth::Ok => include_bytes!("../../icons/tray-ok.png"),
            TrayHealth::Down => include_bytes!("../../icons/tray-down.png"),
        }
    }

    fn icon(self) -> tauri::Result<Image<'static>> {
        Image::from_bytes(self.icon_png())
    }
}

/// Create the tray icon; a failure is logged, never fatal.
pub fn create(app: &AppHandle) {
    match build(app) {
        Ok(_) => tracing::info!("tray icon ready"),
        Err(e) => {
            tracing::warn!("no tray icon ({e}); closing the window will quit the app")
        }
    }
}

/// Whether a tray icon exists to keep the app reachable with no window open.
pub fn is_available(app: &AppHandle) -> bool {
    app.tray_by_id(TRAY_ID).is_some()
}

/// Show that the app is on its way out (red icon, tooltip says so).
pub fn show_stopping(app: &AppHandle) {
    set_health(app, TrayHealth::Down, "Sparklio Desk: stopping");
}

/// Set the icon colour and tooltip; a tray that cannot be updated is only logged.
pub fn set_health(app: &AppHandle, health: TrayHealth, tooltip: &str) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let result = health
        .icon()
        .and_then(|icon| tray.set_icon(Some(icon)))
        .and_then(|()| tray.set_tooltip(Some(tooltip)));
    if let Err(e) = result {
        tracing::debug!("tray not updated: {e}");
    }
}

fn build(app: &AppHandle) -> tauri::Result<TrayIcon> {
    let addr = app.state::<Core>().addr;
    let open = MenuItem::with_id(app, MENU_OPEN, "Open dashboard", true, None::<&str>)?;
    let serving = MenuItem::with_id(
        app,
        "serving",
        format!("Serving on {}", window::dashboard_url(addr)),
        false,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, MENU_QUIT, "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[&open, &serving, &PredefinedMenuItem::separator(app)?, &quit],
    )?;
    // No `title`: on Linux it becomes a text label beside the icon; the tooltip names the app.
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(TrayHealth::Ok.icon()?)
        .tooltip(TOOLTIP)
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
    match event.id().as_ref() {
        MENU_OPEN => open_dashboard_async(app),
        MENU_QUIT => lifecycle::quit(app),
        other => tracing::debug!("unknown tray menu item {other}"),
    }
}

/// Window creation off the event handler: building a webview inside a synchronous event
/// handler can deadlock on Windows (Tauri's documented WebviewWindowBuilder caveat).
fn open_dashboard_async(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move { window::open_dashboard(&app) });
}
