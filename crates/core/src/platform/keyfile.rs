//! The admin key file shared by the Windows service and the tray app: `<data_dir>/admin.key`.
//!
//! `sparklio-desk service run` creates it on first start (a random 64-hex-digit key) and
//! accepts it as an admin key; the tray app, finding a core already serving, reads it to
//! call the control API. The data folder is in the owner's profile
//! (`%APPDATA%\Sparklio\Sparklio Desk\data`), whose inherited ACL admits only the owner,
//! SYSTEM (the service) and Administrators; on Unix the file is created mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const ADMIN_KEY_FILE: &str = "admin.key";

pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_KEY_FILE)
}

/// The key in the file, if there is a usable one.
pub fn read_admin_key(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(admin_key_path(data_dir)).ok()?;
    let key = text.trim();
    (key.len() >= 32).then(|| key.to_string())
}

/// The key in the file, creating the file with a new random key when there is none.
pub fn ensure_admin_key(data_dir: &Path) -> std::io::Result<String> {
    if let Some(key) = read_admin_key(data_dir) {
        return Ok(key);
    }
    std::fs::create_dir_all(data_dir)?;
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(admin_key_path(data_dir))?;
    f.write_all(key.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(read_admin_key(&data), None);
        let key = ensure_admin_key(&data).unwrap();
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(ensure_admin_key(&data).unwrap(), key);
        assert_eq!(read_admin_key(&data).as_deref(), Some(key.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin_key_path(&data))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_or_empty_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(admin_key_path(dir.path()), "short\n").unwrap();
        assert_eq!(read_admin_key(dir.path()), None);
        let key = ensure_admin_key(dir.path()).unwrap();
        assert_eq!(read_admin_key(dir.path()), Some(key));
    }
}
