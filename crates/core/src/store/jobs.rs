//! The `jobs` table: media jobs (`kind = 'image'`) and end-to-end check runs
//! (`kind = 'flow'`), each with its request, result and error as JSON text.

use super::{now_text, Store};
use rusqlite::{params, OptionalExtension};

/// Which kind of job a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Image,
    Flow,
}

impl JobKind {
    fn as_str(self) -> &'static str {
        match self {
            JobKind::Image => "image",
            JobKind::Flow => "flow",
        }
    }
}

/// One stored job, as text; the owning module parses its JSON columns.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub status: String,
    pub upstream_id: Option<String>,
    pub request: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub async fn insert_job(
        &self,
        id: &str,
        kind: JobKind,
        provider: Option<String>,
        request: String,
        created_at: String,
    ) -> anyhow::Result<()> {
        let id = id.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO jobs (id, kind, status, provider, upstream_id, request, result, error, created_at, updated_at)
                 VALUES (?1, ?2, 'queued', ?3, NULL, ?4, NULL, NULL, ?5, ?5)",
                params![id, kind.as_str(), provider, request, created_at],
            )
            .map(|_| ())
        })
        .await
    }

    /// Remember the provider's id for a job (before submitting, so a restart finds it).
    pub async fn set_job_upstream(&self, id: &str, upstream_id: &str) -> anyhow::Result<()> {
        let (id, upstream_id) = (id.to_string(), upstream_id.to_string());
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET upstream_id = ?1, updated_at = ?2 WHERE id = ?3",
                params![upstream_id, now_text(), id],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn set_job_state(
        &self,
        id: &str,
        status: &'static str,
        result: Option<String>,
        error: Option<String>,
    ) -> anyhow::Result<()> {
        let id = id.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET status = ?1, result = ?2, error = ?3, updated_at = ?4 WHERE id = ?5",
                params![status, result, error, now_text(), id],
            )
            .map(|_| ())
        })
        .await
    }

    pub async fn job(&self, id: &str, kind: JobKind) -> anyhow::Result<Option<JobRow>> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT id, status, upstream_id, request, result, error, created_at, updated_at
                 FROM jobs WHERE id = ?1 AND kind = ?2",
                params![id, kind.as_str()],
                |r| {
                    Ok(JobRow {
                        id: r.get(0)?,
                        status: r.get(1)?,
                        upstream_id: r.get(2)?,
                        request: r.get(3)?,
                        result: r.get(4)?,
                        error: r.get(5)?,
                        created_at: r.get(6)?,
                        updated_at: r.get(7)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Ids of the jobs of `kind` an earlier run left queued or running, oldest first.
    pub async fn unfinished_jobs(&self, kind: JobKind) -> anyhow::Result<Vec<String>> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT id FROM jobs WHERE kind = ?1 AND status IN ('queued', 'running') ORDER BY created_at",
            )?;
            let rows = stmt.query_map(params![kind.as_str()], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// Mark every unfinished job of `kind` failed with `error` (JSON text).
    pub async fn fail_unfinished_jobs(
        &self,
        kind: JobKind,
        error: String,
    ) -> anyhow::Result<usize> {
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET status = 'failed', error = ?1, updated_at = ?2
                 WHERE kind = ?3 AND status IN ('queued', 'running')",
                params![error, now_text(), kind.as_str()],
            )
        })
        .await
    }
}
