//! The gateway's own file store: content-addressed files under `data_dir/media`
//! plus one SQLite row per image (job, prompt, seed, workflow, size).
//!
//! Files are only ever found by id through the table; the path is built from the
//! stored SHA-256 alone, so nothing a request sends can name a path.

pub use crate::store::StoredFile;
use crate::store::{now_text, Store};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What is known about a file when it is saved.
#[derive(Debug, Clone, Default)]
pub struct NewFile {
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub job_id: Option<String>,
    pub provider: Option<String>,
    pub workflow: Option<String>,
    pub prompt: Option<String>,
    pub seed: Option<u64>,
}

#[derive(Clone)]
pub struct FileStore {
    root: PathBuf,
    store: Store,
}

/// Ids look like `img_20251116_0a1b2c3d4e5f`.
pub fn is_valid_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("img_") else {
        return false;
    };
    // ASCII first: splitting inside a multibyte character would panic.
    if !rest.is_ascii() || rest.len() != 8 + 1 + 12 {
        return false;
    }
    let (date, hex) = rest.split_at(8);
    date.bytes().all(|b| b.is_ascii_digit())
        && hex.starts_with('_')
        && hex[1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn is_sha_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        _ => "bin",
    }
}

impl FileStore {
    pub fn new(data_dir: &Path, store: Store) -> anyhow::Result<Self> {
        let root = data_dir.join("media");
        std::fs::create_dir_all(&root)?;
        Ok(Self { root, store })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_for(&self, sha: &str, mime: &str) -> PathBuf {
        self.root
            .join(&sha[..2])
            .join(format!("{sha}.{}", extension(mime)))
    }

    /// Store `data` (identical content is written once) and record a new id for it.
    pub async fn save(&self, data: Vec<u8>, meta: NewFile) -> anyhow::Result<StoredFile> {
        let sha = hex(&Sha256::digest(&data));
        let path = self.path_for(&sha, &meta.mime);
        let len = data.len() as u64;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if path.exists() {
                return Ok(());
            }
            let dir = path.parent().expect("two levels under root");
            std::fs::create_dir_all(dir)?;
            // Write beside, then rename: a reader never sees half a file. A failed
            // write (disk full) leaves nothing behind.
            let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
            let written = std::fs::write(&tmp, &data).and_then(|()| std::fs::rename(&tmp, &path));
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written
        })
        .await??;
        let rand = uuid::Uuid::new_v4().simple().to_string();
        let file = StoredFile {
            id: format!(
                "img_{}_{}",
                chrono::Utc::now().format("%Y%m%d"),
                &rand[..12]
            ),
            sha256: sha,
            mime: meta.mime,
            bytes: len,
            width: meta.width,
            height: meta.height,
            job_id: meta.job_id,
            provider: meta.provider,
            workflow: meta.workflow,
            prompt: meta.prompt,
            seed: meta.seed,
            created_at: now_text(),
        };
        self.store.insert_media_file(file.clone()).await?;
        Ok(file)
    }

    /// The row and on-disk path of file `id`; `None` for unknown or malformed ids.
    pub async fn find(&self, id: &str) -> anyhow::Result<Option<(StoredFile, PathBuf)>> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        let row = self.store.media_file(id).await?;
        Ok(row.filter(|f| is_sha_hex(&f.sha256)).map(|f| {
            let path = self.path_for(&f.sha256, &f.mime);
            (f, path)
        }))
    }

    /// Delete the files of contents no row refers to any more (after a retention sweep).
    pub async fn delete_orphans(&self, orphans: Vec<crate::store::Orphan>) -> usize {
        let paths: Vec<PathBuf> = orphans
            .iter()
            .filter(|o| is_sha_hex(&o.sha256))
            .map(|o| self.path_for(&o.sha256, &o.mime))
            .collect();
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .filter(|p| std::fs::remove_file(p).is_ok())
                .count()
        })
        .await
        .unwrap_or(0)
    }

    /// The content of file `id`.
    pub async fn read(&self, id: &str) -> anyhow::Result<Option<(StoredFile, Vec<u8>)>> {
        match self.find(id).await? {
            Some((file, path)) => Ok(Some((file, tokio::fs::read(path).await?))),
            None => Ok(None),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_ids_pass() {
        assert!(is_valid_id("img_20251116_0a1b2c3d4e5f"));
        for bad in [
            "",
            "img_",
            "../../etc/passwd",
            "img_20251116_0a1b2c3d4e5f/../x",
            "img_2025111a_0a1b2c3d4e5f",
            "img_20251116_0A1B2C3D4E5F",
            "img_20251116-0a1b2c3d4e5f",
            "img_20251116_0a1b2c3d4e5",
            "img_2025111é_0a1b2c3d4e5",
            "img_한국어한국어한_0",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
