//! Service output: a ring buffer per service for the API, a rotating file per service
//! under `<data_dir>/logs`, and a broadcast for the live tail.

use serde::Serialize;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub ts: String,
    /// `stdout`, `stderr` or `supervisor` (lines the supervisor adds, e.g. "started pid 42").
    pub stream: &'static str,
    pub line: String,
}

/// Where a service's log file lives and when it rotates.
#[derive(Debug, Clone)]
pub struct LogFileSpec {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub kept: u32,
}

struct RotatingFile {
    spec: LogFileSpec,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    fn new(spec: LogFileSpec) -> Self {
        let size = std::fs::metadata(&spec.path).map(|m| m.len()).unwrap_or(0);
        Self {
            spec,
            file: None,
            size,
        }
    }

    fn write_line(&mut self, text: &str) -> std::io::Result<()> {
        if self.size + text.len() as u64 + 1 > self.spec.max_bytes && self.size > 0 {
            self.rotate()?;
        }
        if self.file.is_none() {
            if let Some(dir) = self.spec.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.spec.path)?,
            );
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        self.size += text.len() as u64 + 1;
        Ok(())
    }

    /// `name.log` → `name.log.1` → ... → `name.log.N` (the oldest is dropped).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.spec.path.display()));
        if self.spec.kept == 0 {
            let _ = std::fs::remove_file(&self.spec.path);
        } else {
            let _ = std::fs::remove_file(numbered(self.spec.kept));
            for n in (1..self.spec.kept).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.spec.path, numbered(1))?;
        }
        self.size = 0;
        Ok(())
    }
}

/// One service's captured output.
pub struct ServiceLogs {
    capacity: usize,
    ring: Mutex<VecDeque<LogLine>>,
    file: Mutex<RotatingFile>,
    live: broadcast::Sender<LogLine>,
}

impl ServiceLogs {
    pub fn new(capacity: usize, file: LogFileSpec) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            capacity: capacity.max(1),
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            file: Mutex::new(RotatingFile::new(file)),
            live,
        }
    }

    pub fn file_path(&self) -> PathBuf {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spec
            .path
            .clone()
    }

    pub fn push(&self, stream: &'static str, line: impl Into<String>) {
        let line = LogLine {
            ts: crate::store::now_text(),
            stream,
            line: line.into(),
        };
        {
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_line(&format!("{} [{}] {}", line.ts, stream, line.line)) {
                tracing::warn!(error = %e, path = %f.spec.path.display(), "cannot write service log");
            }
        }
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(line.clone());
        }
        let _ = self.live.send(line);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let skip = ring.len().saturating_sub(n);
        ring.iter().skip(skip).cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }
}

/// Copy lines from a child's pipe into the logs until the pipe closes.
pub async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    stream: &'static str,
    logs: std::sync::Arc<ServiceLogs>,
) {
    let mut lines = tokio::io::BufReader::new(reader).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => logs.push(stream, line),
            Ok(None) => break,
            // Not UTF-8 or a read error: keep what can be kept, stop on a dead pipe.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                logs.push(stream, "<line that is not UTF-8 skipped>")
            }
            Err(_) => break,
        }
    }
}

/// The last `n` lines of a plain file (for detached processes, which write straight to it).
pub fn tail_file(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return vec![];
    };
    let mut ring = VecDeque::with_capacity(n.min(4096));
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        if ring.len() == n {
            ring.pop_front();
        }
        ring.push_back(line);
    }
    ring.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_and_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogFileSpec {
            path: dir.path().join("svc.log"),
            max_bytes: 200,
            kept: 2,
        };
        let logs = ServiceLogs::new(3, spec.clone());
        for i in 0..20 {
            logs.push("stdout", format!("line number {i}"));
        }
        let tail: Vec<String> = logs.tail(10).into_iter().map(|l| l.line).collect();
        assert_eq!(tail, ["line number 17", "line number 18", "line number 19"]);
        assert!(spec.path.exists());
        assert!(dir.path().join("svc.log.1").exists());
        assert!(dir.path().join("svc.log.2").exists());
        assert!(!dir.path().join("svc.log.3").exists());
        assert!(std::fs::metadata(&spec.path).unwrap().len() <= 200);
        let last = tail_file(&spec.path, 1);
        assert!(last[0].ends_with("line number 19"), "{last:?}");
    }
}
