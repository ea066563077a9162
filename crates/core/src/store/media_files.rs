//! The `media_files` table: one row per stored image (the bytes live on disk,
//! content-addressed, under `data_dir/media`).

use super::Store;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredFile {
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub job_id: Option<String>,
    pub provider: Option<String>,
    pub workflow: Option<String>,
    pub prompt: Option<String>,
    pub seed: Option<u64>,
    pub created_at: String,
}

impl Store {
    pub async fn insert_media_file(&self, row: StoredFile) -> anyhow::Result<()> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO media_files (id, sha256, mime, bytes, width, height, job_id, provider, workflow, prompt, seed, created_at)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                params![
                    row.id, row.sha256, row.mime, row.bytes as i64, row.width, row.height, row.job_id,
                    row.provider, row.workflow, row.prompt, row.seed.map(|s| s as i64), row.created_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn media_file(&self, id: &str) -> anyhow::Result<Option<StoredFile>> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT id, sha256, mime, bytes, width, height, job_id, provider, workflow, prompt, seed, created_at
                 FROM media_files WHERE id = ?1",
                params![id],
                |r| {
                    Ok(StoredFile {
                        id: r.get(0)?,
                        sha256: r.get(1)?,
                        mime: r.get(2)?,
                        bytes: r.get::<_, i64>(3)? as u64,
                        width: r.get(4)?,
                        height: r.get(5)?,
                        job_id: r.get(6)?,
                        provider: r.get(7)?,
                        workflow: r.get(8)?,
                        prompt: r.get(9)?,
                        seed: r.get::<_, Option<i64>>(10)?.map(|s| s as u64),
                        created_at: r.get(11)?,
                    })
                },
            )
            .optional()
        })
        .await
    }
}
