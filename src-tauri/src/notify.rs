//! Desktop notifications that never fail the app: on a machine without a notification
//! daemon (CI, a bare Windows session) the failure is logged and the app goes on.

use tauri::AppHandle;
use tauri_plugin_notification::NotificationExt;

pub fn show(app: &AppHandle, title: &str, body: &str) {
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!("notification not shown ({title}): {e}");
    }
}
