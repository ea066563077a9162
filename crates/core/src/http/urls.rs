//! URLs the Desk hands out, and signed file URLs.
//!
//! A URL's base is `server.public_url` when set, else the request's `Host` when that
//! host is allowed, else the first bound address that is not unspecified — never a
//! `Host` an attacker chose.
//!
//! Media file URLs carry an expiring HMAC signature (`?exp=<unix s>&sig=<hex>`), so an
//! `<img src>` works for anyone the image was made for, without a key in the URL. The
//! secret lives in the data folder; rotating it keeps the previous one valid for one TTL,
//! because the backend stores URLs.

use super::browser::BrowserPolicy;
use axum::http::{header, HeaderMap};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// How often the secret file is looked at for a rotation made by another process.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// `http://host:port` for URLs in an answer to a request with these headers.
pub fn base_url(
    public_url: Option<&str>,
    policy: &BrowserPolicy,
    bound: &[SocketAddr],
    headers: &HeaderMap,
) -> String {
    if let Some(u) = public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                && policy.host_allowed(h)
        });
    if let Some(h) = host {
        return format!("http://{h}");
    }
    let addr = bound
        .iter()
        .find(|a| !a.ip().is_unspecified())
        .copied()
        .or_else(|| {
            bound.first().map(|a| {
                let ip = if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                };
                SocketAddr::new(ip, a.port())
            })
        });
    match addr {
        Some(a) => format!("http://{a}"),
        None => "http://127.0.0.1".into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretFile {
    current: String,
    previous: Option<String>,
    /// Unix seconds until which `previous` still verifies.
    previous_valid_until: Option<u64>,
}

struct Secrets {
    current: Vec<u8>,
    previous: Option<(Vec<u8>, u64)>,
    loaded_mtime: Option<SystemTime>,
    checked: Instant,
}

/// Signs and checks media file URLs.
pub struct UrlSigner {
    path: PathBuf,
    ttl: Duration,
    secrets: Mutex<Secrets>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn read_file(path: &Path) -> Option<(SecretFile, Option<SystemTime>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: SecretFile = serde_json::from_str(&text).ok()?;
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((file, mtime))
}

fn write_file(path: &Path, file: &SecretFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(file).unwrap_or_default())?;
    restrict_to_owner(&tmp);
    std::fs::rename(&tmp, path)
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) {
    // %APPDATA% is per-user already.
}

impl UrlSigner {
    /// The secret file in `data_dir`, created on first use.
    pub fn open(data_dir: &Path, ttl: Duration) -> std::io::Result<Self> {
        let path = data_dir.join("url-signing.json");
        if read_file(&path).is_none() {
            write_file(
                &path,
                &SecretFile {
                    current: random_hex(),
                    previous: None,
                    previous_valid_until: None,
                },
            )?;
        }
        let signer = Self {
            path,
            ttl,
            secrets: Mutex::new(Secrets {
                current: Vec::new(),
                previous: None,
                loaded_mtime: None,
                checked: Instant::now(),
            }),
        };
        signer.reload(true);
        Ok(signer)
    }

    /// A new secret; the old one keeps verifying for one TTL. Works on the file, so
    /// the CLI can rotate while the server runs (it picks the change up within seconds).
    pub fn rotate(data_dir: &Path, ttl: Duration) -> std::io::Result<()> {
        let path = data_dir.join("url-signing.json");
        let old = read_file(&path).map(|(f, _)| f.current);
        write_file(
            &path,
            &SecretFile {
                current: random_hex(),
                previous: old,
                previous_valid_until: Some(now_s() + ttl.as_secs()),
            },
        )
    }

    fn reload(&self, force: bool) {
        let mut s = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        if !force && s.checked.elapsed() < RELOAD_EVERY {
            return;
        }
        s.checked = Instant::now();
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if !force && mtime == s.loaded_mtime {
            return;
        }
        if let Some((file, mtime)) = read_file(&self.path) {
            s.current = file.current.into_bytes();
            s.previous = file
                .previous
                .zip(file.previous_valid_until)
                .map(|(p, until)| (p.into_bytes(), until));
            s.loaded_mtime = mtime;
        }
    }

    fn mac(secret: &[u8], id: &str, exp: u64) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(format!("v1:{id}:{exp}").as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// `?exp=…&sig=…` for file `id`, valid for the TTL.
    pub fn query_for(&self, id: &str) -> String {
        self.reload(false);
        let exp = now_s() + self.ttl.as_secs();
        let s = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        format!("exp={exp}&sig={}", hex(&Self::mac(&s.current, id, exp)))
    }

    /// Whether `sig` signs `id` until `exp`, and `exp` has not passed.
    pub fn verify(&self, id: &str, exp: u64, sig: &str) -> bool {
        if exp < now_s() || sig.len() != 32 {
            return false;
        }
        self.reload(false);
        let s = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let sig = sig.as_bytes();
        let matches = |secret: &[u8]| -> bool {
            hex(&Self::mac(secret, id, exp))
                .as_bytes()
                .ct_eq(sig)
                .into()
        };
        let current = matches(&s.current);
        let previous = s
            .previous
            .as_ref()
            .is_some_and(|(p, until)| *until >= now_s() && matches(p));
        current || previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_expire_and_survive_one_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(3600);
        let signer = UrlSigner::open(dir.path(), ttl).unwrap();
        let q = signer.query_for("img_20260101_0123456789ab");
        let (exp, sig) = q.split_once("&sig=").unwrap();
        let exp: u64 = exp.strip_prefix("exp=").unwrap().parse().unwrap();
        assert!(signer.verify("img_20260101_0123456789ab", exp, sig));
        assert!(!signer.verify("img_20260101_0123456789ac", exp, sig));
        assert!(!signer.verify("img_20260101_0123456789ab", exp + 1, sig));
        assert!(!signer.verify("img_20260101_0123456789ab", now_s() - 1, sig));
        // Rotation from another process: the old signature still holds for one TTL,
        // a fresh one uses the new secret.
        UrlSigner::rotate(dir.path(), ttl).unwrap();
        let reopened = UrlSigner::open(dir.path(), ttl).unwrap();
        assert!(reopened.verify("img_20260101_0123456789ab", exp, sig));
        let q2 = reopened.query_for("img_20260101_0123456789ab");
        assert_ne!(q, q2);
        // A second rotation drops the first secret.
        UrlSigner::rotate(dir.path(), ttl).unwrap();
        let again = UrlSigner::open(dir.path(), ttl).unwrap();
        assert!(!again.verify("img_20260101_0123456789ab", exp, sig));
    }
}
