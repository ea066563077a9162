//! `server.watch_config = true`: reload when the config file changes. The file's length
//! and modification time are checked every second (no OS watch API: it behaves the same
//! on Windows, over network shares and with editors that replace the file on save); a
//! change is applied once it has held for one more check, so a half-written file is not
//! read.

use super::SharedState;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const EVERY: Duration = Duration::from_secs(1);

fn stamp(path: &PathBuf) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

pub(super) fn spawn(state: SharedState) {
    let Some(path) = state.config_file_path() else {
        tracing::warn!("server.watch_config: there is no config file to watch");
        return;
    };
    tracing::info!(file = %path.display(), "watching the config file for changes");
    // Taken now, not when the task first runs: an edit right after start is a change.
    let mut applied = stamp(&path);
    let mut seen = applied;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(EVERY) => {}
            }
            let now = stamp(&path);
            // Settled: the same for two checks in a row, and not what was applied.
            if now == seen && now != applied && now.is_some() {
                applied = now;
                match state.reload_config("watcher").await {
                    Ok(r) => tracing::info!("config file changed: {}", r.summary),
                    Err(e) => {
                        tracing::warn!("config file changed but was not applied: {}", e.message());
                        state
                            .supervisor
                            .events
                            .record(
                                crate::notify::CONFIG_SERVICE,
                                None,
                                "rejected",
                                &e.message(),
                                Some("watcher"),
                            )
                            .await;
                    }
                }
            }
            seen = now;
        }
    });
}
