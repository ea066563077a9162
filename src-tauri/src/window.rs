//! The dashboard window: the core's own page (`http://<bound addr>/`), so the window and a
//! browser against `sparklio-desk serve` show exactly the same thing.
//!
//! Closing the window destroys it (WebKit's web process and its memory go with it) and the
//! app stays in the tray; "Open dashboard" or a second launch creates it again.

use crate::attach::Attached;
use crate::lifecycle::Core;
use crate::notify;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use tauri::{AppHandle, Manager, Url, WebviewUrl, WebviewWindowBuilder};

/// The window's label (Tauri's id for it).
pub const MAIN_LABEL: &str = "main";
/// The window title; the CI smoke test finds the window by this name.
pub const TITLE: &str = "Sparklio Desk";

/// Show and focus the dashboard window, creating it when it was closed to the tray.
pub fn open_dashboard(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_LABEL) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let addr = match (app.try_state::<Core>(), app.try_state::<Attached>()) {
        (Some(core), _) => core.addr,
        (None, Some(attached)) => attached.addr,
        (None, None) => {
            tracing::warn!("the core is not running; no dashboard to open");
            return;
        }
    };
    let url = dashboard_url(addr);
    tracing::info!(%url, "opening the dashboard window");
    let built = WebviewWindowBuilder::new(app, MAIN_LABEL, WebviewUrl::External(url))
        .title(TITLE)
        .inner_size(1180.0, 800.0)
        .min_inner_size(560.0, 420.0)
        .build();
    match built {
        Ok(window) => {
            let _ = window.set_focus();
        }
        Err(e) => tracing::error!("cannot open the dashboard window: {e}"),
    }
}

/// Called when the last window has closed and the app keeps running in the tray.
pub fn closed_to_tray(app: &AppHandle) {
    static TOLD: AtomicBool = AtomicBool::new(false);
    tracing::info!("dashboard window closed; Sparklio Desk keeps running in the tray");
    if !TOLD.swap(true, Ordering::Relaxed) {
        notify::show(
            app,
            "Sparklio Desk is still running",
            "The gateway keeps serving. Open the dashboard or quit from the tray icon.",
        );
    }
}

/// The dashboard URL for the address the core bound. A wildcard bind (0.0.0.0 / ::) is
/// opened on loopback, which the core trusts without a key.
pub fn dashboard_url(bound: SocketAddr) -> Url {
    let ip = match bound.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let mut url = Url::parse("http://127.0.0.1/").expect("static URL parses");
    // set_ip_host/set_port only fail on URLs that cannot have a host; this one can.
    let _ = url.set_ip_host(ip);
    let _ = url.set_port(Some(bound.port()));
    url
}

#[cfg(test)]
mod tests {
    use super::dashboard_url;

    #[test]
    fn dashboard_url_uses_the_bound_address() {
        assert_eq!(
            dashboard_url("127.0.0.1:11500".parse().unwrap()).as_str(),
            "http://127.0.0.1:11500/"
        );
        assert_eq!(
            dashboard_url("192.168.1.20:8080".parse().unwrap()).as_str(),
            "http://192.168.1.20:8080/"
        );
    }

    #[test]
    fn wildcard_binds_open_on_loopback() {
        assert_eq!(
            dashboard_url("0.0.0.0:11500".parse().unwrap()).as_str(),
            "http://127.0.0.1:11500/"
        );
        assert_eq!(
            dashboard_url("[::]:11500".parse().unwrap()).as_str(),
            "http://[::1]:11500/"
        );
    }
}
