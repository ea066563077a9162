//! Desktop notifications that never fail the app: on a machine without a notification
//! daemon (CI, a bare Windows session) the failure is logged and the app goes on.
//! What to notify and how often is the core's `Notifier`; this is only its sink.

use sparklio_core::notify::{Notification, Notifier, NotifierOptions};
use tauri::{AppHandle, Manager};
use tauri_plugin_notification::NotificationExt;

pub fn show(app: &AppHandle, title: &str, body: &str) {
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!("notification not shown ({title}): {e}");
    }
}

/// Start the core's notifier with desktop notifications as its sink.
pub fn start(app: &AppHandle) {
    let Some(state) = app
        .try_state::<crate::lifecycle::Core>()
        .map(|c| c.state.clone())
    else {
        return;
    };
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        Notifier::spawn(
            state.notifier_inputs(),
            NotifierOptions::default(),
            move |n: Notification| {
                tracing::info!(level = ?n.level, body = %n.body, "notification: {}", n.title);
                // Showing talks to the desktop's notification service (D-Bus on Linux) and
                // may block: keep it off the runtime's workers.
                let app = app.clone();
                tauri::async_runtime::spawn_blocking(move || {
                    show(&app, &n.title, &n.body);
                    crate::tray::notified(&app, &n.topic, &n.title);
                });
            },
        );
    });
}
