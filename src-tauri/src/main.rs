//! Sparklio Desk tray app: a thin Tauri 2 shell over `sparklio_core`.
//!
//! It loads the config exactly like `sparklio-desk serve`, starts the same core in-process,
//! shows the core's own dashboard (`http://<bound addr>/`) in a window and lives in the tray.
//! No business logic here: everything the window shows comes from the core's HTTP API.
//!
//! - `lifecycle`: starting the core and the one clean way out (Quit, SIGTERM, core stop).
//! - `window`: the dashboard window (created on demand, destroyed on close to free WebKit).
//! - `tray`: the tray icon (health colour, tooltip) and its menu (restarts, switches).
//! - `notify`: the core's notifier shown as desktop notifications that never fail the app.

// Release builds on Windows are GUI programs (no console window).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod attach;
mod config_file;
mod lifecycle;
mod notify;
mod tray;
mod window;

use sparklio_core::config::ConfigInput;
use sparklio_core::telemetry::{init_tracing, LogFormat};
use std::process::ExitCode;

/// The same allocator as `sparklio-desk` (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tauri::Manager;
use tauri::RunEvent;

fn main() -> ExitCode {
    sparklio_core::platform::small_pages_only();
    init_tracing(LogFormat::Human);
    let loaded = match sparklio_core::load_config(&ConfigInput::from_process(None)) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("config: {} problem(s):", problems.len());
            for problem in &problems {
                eprintln!("  {problem}");
            }
            return ExitCode::FAILURE;
        }
    };

    let built = tauri::Builder::default()
        // First plugin on purpose: a second launch must hand over before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            tracing::info!("second launch: focusing the running instance");
            window::open_dashboard(app);
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .setup(move |app| {
            // A core already serving on server.bind (the Windows service, a `serve`): attach
            // to it instead of failing on the taken port.
            if let Some(attached) = attach::probe(&loaded) {
                tracing::info!(
                    addr = %attached.addr,
                    pid = attached.pid,
                    "a Sparklio Desk core already serves here: attaching to it"
                );
                app.manage(attached);
                if let Err(e) = attach::create_tray(app.handle()) {
                    tracing::warn!("no tray icon ({e})");
                }
                window::open_dashboard(app.handle());
                return Ok(());
            }
            // Not `?`: Tauri turns a setup error into a panic; a taken port or a refused
            // bind deserves a plain message and exit code 1, like `serve`.
            if let Err(e) = lifecycle::start_core(app, loaded) {
                tracing::error!("Sparklio Desk could not start: {e:#}");
                eprintln!("error: Sparklio Desk could not start: {e:#}");
                app.handle().exit(1);
                return Ok(());
            }
            tray::create(app.handle());
            notify::start(app.handle());
            window::open_dashboard(app.handle());
            Ok(())
        })
        .build(tauri::generate_context!());

    let app = match built {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("Sparklio Desk could not start: {e:#}");
            eprintln!("error: Sparklio Desk could not start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    app.run(|app, event| match event {
        // The last window closed: stay in the tray (or quit cleanly when there is no tray).
        RunEvent::ExitRequested {
            code: None, api, ..
        } => {
            api.prevent_exit();
            if tray::is_available(app) {
                window::closed_to_tray(app);
            } else {
                tracing::info!("window closed and no tray is available: quitting");
                lifecycle::quit(app);
            }
        }
        // An exit asked for while the core still runs (e.g. by a plugin): stop the core first.
        RunEvent::ExitRequested {
            code: Some(_), api, ..
        } if lifecycle::core_running(app) => {
            api.prevent_exit();
            lifecycle::quit(app);
        }
        RunEvent::Exit => {
            // Last resort; the normal paths have already stopped the core.
            lifecycle::stop_core_blocking(app);
        }
        _ => {}
    });
    ExitCode::SUCCESS
}
