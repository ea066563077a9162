//! "Edit config" in the tray: the config file opened in the system editor (Notepad on
//! Windows). When there is no config file yet, the gpu-desktop template is written first
//! (never over an existing file), so the owner edits the real layout, not an empty page.

use sparklio_core::config::{default_config_path, PROFILES};
use std::path::PathBuf;

/// The file the app reads: $SPARKLIO_DESK_CONFIG, else the OS config folder.
pub fn path() -> Option<PathBuf> {
    std::env::var_os("SPARKLIO_DESK_CONFIG")
        .map(PathBuf::from)
        .or_else(default_config_path)
}

/// Open the config file in an editor (write the template first if there is no file).
pub fn edit() {
    let Some(path) = path() else {
        tracing::warn!("no config folder on this system");
        return;
    };
    if !path.exists() {
        let template = PROFILES
            .iter()
            .find(|(name, _)| *name == "gpu-desktop")
            .map(|(_, t)| *t)
            .unwrap_or_default();
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, template));
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), "wrote the gpu-desktop config template")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot write the config template: {e}");
                return;
            }
        }
    }
    #[cfg(windows)]
    let opened = std::process::Command::new("notepad.exe").arg(&path).spawn();
    #[cfg(target_os = "macos")]
    let opened = std::process::Command::new("open")
        .arg("-t")
        .arg(&path)
        .spawn();
    #[cfg(not(any(windows, target_os = "macos")))]
    let opened = std::process::Command::new("xdg-open").arg(&path).spawn();
    match opened {
        Ok(_) => {
            tracing::info!(path = %path.display(), "config opened for editing (restart to apply)")
        }
        Err(e) => tracing::warn!(path = %path.display(), "cannot open an editor: {e}"),
    }
}
