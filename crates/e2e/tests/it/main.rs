//! End-to-end tests as one binary: the dashboard in headless Chromium, and the Tauri
//! app through WebDriver (ignored by default: `bash scripts/tauri-e2e.sh`).

mod browser_security;
mod dashboard_access;
mod dashboard_browser;
mod dashboard_connection;
mod dashboard_layout;
mod dashboard_panels;
mod tray_app;
