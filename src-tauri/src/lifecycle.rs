//! The core inside the app: started once in `setup`, stopped exactly once on the way out.
//! Every exit path (tray Quit, SIGTERM / Ctrl-C, the core stopping by itself, an exit
//! request from a plugin) goes through [`quit`], which shuts the core down cleanly
//! (in-flight requests get their grace period, the port is released) and then exits.

use sparklio_core::app::{shutdown_signal, RunningApp, SharedState};
use sparklio_core::config::LoadedConfig;
use sparklio_core::StartOptions;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tauri::{App, AppHandle, Manager};

/// Managed state: the running core and where it listens.
pub struct Core {
    pub addr: SocketAddr,
    /// The core's state: the tray reads health from it and acts on it directly.
    pub state: SharedState,
    running: Mutex<Option<RunningApp>>,
    quitting: AtomicBool,
}

/// Start the core in Tauri's async runtime, put it in the app's managed state, and quit
/// when a stop signal arrives or the core stops on its own.
pub fn start_core(app: &mut App, loaded: LoadedConfig) -> anyhow::Result<()> {
    let (signal, running) = tauri::async_runtime::block_on(async {
        // Handlers first, so a SIGTERM right after start-up still stops the core cleanly.
        let signal = shutdown_signal();
        let opts = StartOptions {
            config_input: Some(sparklio_core::config::ConfigInput::from_process(None)),
            ..StartOptions::default()
        };
        let running = sparklio_core::start(loaded, opts).await?;
        anyhow::Ok((signal, running))
    })?;
    let state = running.state.clone();
    app.manage(Core {
        addr: running.addr,
        state: state.clone(),
        running: Mutex::new(Some(running)),
        quitting: AtomicBool::new(false),
    });

    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        signal.await;
        quit(&handle);
    });
    // The window never outlives the server behind it.
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        state.shutdown.cancelled().await;
        quit(&handle);
    });
    Ok(())
}

pub fn core_running(app: &AppHandle) -> bool {
    app.try_state::<Core>()
        .is_some_and(|core| lock(&core.running).is_some())
}

/// Stop the core, wait for it, then exit the process with 0 (1 if the core failed to stop).
/// Safe to call many times and from any thread; only the first call acts.
pub fn quit(app: &AppHandle) {
    let Some(core) = app.try_state::<Core>() else {
        app.exit(0);
        return;
    };
    if core.quitting.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::info!("quitting: stopping the core");
    crate::tray::show_stopping(app);
    let running = lock(&core.running).take();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        let code = match running {
            Some(running) => match running.shutdown().await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("core shutdown failed: {e:#}");
                    1
                }
            },
            None => 0,
        };
        handle.exit(code);
    });
}

/// Fallback for an exit that bypassed [`quit`]: stop the core synchronously.
pub fn stop_core_blocking(app: &AppHandle) {
    let Some(core) = app.try_state::<Core>() else {
        return;
    };
    let running = lock(&core.running).take();
    if let Some(running) = running {
        tracing::warn!("exiting with the core still running: stopping it now");
        if let Err(e) = tauri::async_runtime::block_on(running.shutdown()) {
            tracing::error!("core shutdown failed: {e:#}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
