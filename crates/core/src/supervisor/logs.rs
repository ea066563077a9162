//! Service output: a ring buffer per service for the API, a rotating file per service
//! under `<data_dir>/logs`, and a broadcast for the live tail.
//!
//! Everything is bounded in bytes, not only lines: a line longer than `max_line_bytes`
//! is split, the ring holds at most `ring_bytes`, and the file rotates at `max_bytes`
//! whatever the lines look like. Files are written by one writer thread per service
//! (buffered, off the async runtime), fed through a bounded queue.

use serde::Serialize;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
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

/// How much output is kept in memory.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub ring_lines: usize,
    pub ring_bytes: usize,
    /// Longer lines are split into pieces of at most this many bytes.
    pub max_line_bytes: usize,
}

impl LogLimits {
    pub fn lines(ring_lines: usize) -> Self {
        Self {
            ring_lines,
            ..Self::default()
        }
    }
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            ring_lines: 2_000,
            ring_bytes: 1024 * 1024,
            max_line_bytes: 16 * 1024,
        }
    }
}

/// Lines waiting for the writer thread; beyond this, lines are counted as dropped
/// (a service printing faster than the disk takes it must not grow our memory).
const WRITE_QUEUE: usize = 4096;

struct RotatingFile {
    spec: LogFileSpec,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    fn new(spec: LogFileSpec) -> Self {
        let size = std::fs::metadata(&spec.path).map_or(0, |m| m.len());
        Self {
            spec,
            file: None,
            size,
        }
    }

    fn write_line(&mut self, text: &str) -> std::io::Result<()> {
        if self.size + text.len() as u64 + 1 > self.spec.max_bytes && self.size > 0 {
            // Said once per rotation; the line is still written.
            if let Err(e) = self.rotate() {
                tracing::warn!(path = %self.spec.path.display(), "service log: {e}");
            }
        }
        if self.file.is_none() {
            if let Some(dir) = self.spec.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.spec.path)?;
            self.file = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        self.size += text.len() as u64 + 1;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.file = None;
        // Whatever happened, the file is empty or gone now: never retried per line.
        self.size = 0;
        shift_files(&self.spec)
    }
}

/// `name.log` → `name.log.1` → ... → `name.log.N` (the oldest is dropped). When the
/// file cannot be renamed (on Windows, another program holds it open without delete
/// sharing: `Get-Content -Wait`, an editor), it is emptied in place instead, so the log
/// stays bounded and lines keep reaching it; the error says what was lost.
pub(super) fn shift_files(spec: &LogFileSpec) -> std::io::Result<()> {
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", spec.path.display()));
    let renamed = if spec.kept == 0 {
        std::fs::remove_file(&spec.path)
    } else {
        let _ = std::fs::remove_file(numbered(spec.kept));
        for n in (1..spec.kept).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&spec.path, numbered(1))
    };
    match renamed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            OpenOptions::new()
                .write(true)
                .open(&spec.path)?
                .set_len(0)?;
            Err(std::io::Error::new(
                e.kind(),
                format!("could not be rotated ({e}); emptied in place, its old lines are lost"),
            ))
        }
    }
}

enum ToWriter {
    Line(String),
    /// Write out what is buffered and say so.
    Flush(mpsc::SyncSender<()>),
}

/// The writer thread: buffered writes, a flush whenever the queue runs dry.
fn write_loop(mut file: RotatingFile, rx: mpsc::Receiver<ToWriter>) {
    let report = |e: std::io::Error, path: &Path| {
        tracing::warn!(error = %e, path = %path.display(), "cannot write service log");
    };
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match msg {
                ToWriter::Line(text) => {
                    if let Err(e) = file.write_line(&text) {
                        report(e, &file.spec.path);
                    }
                }
                ToWriter::Flush(done) => {
                    if let Err(e) = file.flush() {
                        report(e, &file.spec.path);
                    }
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = file.flush() {
            report(e, &file.spec.path);
        }
    }
    let _ = file.flush();
}

struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

/// One service's captured output.
pub struct ServiceLogs {
    limits: LogLimits,
    ring: Mutex<Ring>,
    path: PathBuf,
    writer: mpsc::SyncSender<ToWriter>,
    dropped: AtomicU64,
    live: broadcast::Sender<LogLine>,
}

impl ServiceLogs {
    pub fn new(limits: LogLimits, file: LogFileSpec) -> Self {
        let (live, _) = broadcast::channel(1024);
        let (writer, rx) = mpsc::sync_channel(WRITE_QUEUE);
        let path = file.path.clone();
        let name = format!(
            "log-{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("svc")
        );
        let rotating = RotatingFile::new(file);
        // Ends when the last sender (this struct) is dropped.
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || write_loop(rotating, rx))
        {
            tracing::warn!("cannot start the log writer for {}: {e}", path.display());
        }
        Self {
            limits: LogLimits {
                ring_lines: limits.ring_lines.max(1),
                ring_bytes: limits.ring_bytes.max(1024),
                max_line_bytes: limits.max_line_bytes.max(64),
            },
            ring: Mutex::new(Ring {
                lines: VecDeque::with_capacity(limits.ring_lines.min(4096)),
                bytes: 0,
            }),
            path,
            writer,
            dropped: AtomicU64::new(0),
            live,
        }
    }

    pub fn file_path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Lines the file writer could not keep up with (they are still in the ring).
    pub fn dropped_from_file(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn push(&self, stream: &'static str, line: impl Into<String>) {
        let line: String = line.into();
        for piece in split_line(&line, self.limits.max_line_bytes) {
            self.push_piece(stream, piece.to_string());
        }
    }

    fn push_piece(&self, stream: &'static str, text: String) {
        let line = LogLine {
            ts: crate::store::now_text(),
            stream,
            line: text,
        };
        let record = format!("{} [{}] {}", line.ts, stream, line.line);
        if self.writer.try_send(ToWriter::Line(record)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut ring = self
                .ring
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ring.bytes += line.line.len();
            ring.lines.push_back(line.clone());
            while ring.lines.len() > self.limits.ring_lines || ring.bytes > self.limits.ring_bytes {
                match ring.lines.pop_front() {
                    Some(old) => ring.bytes -= old.line.len(),
                    None => break,
                }
            }
        }
        let _ = self.live.send(line);
    }

    /// Wait until everything pushed so far is in the file (bounded).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.writer.send(ToWriter::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }
}

/// `line` in pieces of at most `max` bytes, cut at character boundaries.
fn split_line(line: &str, max: usize) -> Vec<&str> {
    if line.len() <= max {
        return vec![line];
    }
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// Copy lines from a child's pipe into the logs until the pipe closes. Memory stays
/// bounded: a line without an end is handed on in `max_line_bytes` pieces.
pub async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    stream: &'static str,
    logs: std::sync::Arc<ServiceLogs>,
) {
    let max = logs.limits.max_line_bytes;
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (take, line_end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(pending.len());
        let used = take.min(room.max(1));
        let body = if line_end && used == take {
            &chunk[..take - 1]
        } else {
            &chunk[..used]
        };
        pending.extend_from_slice(body);
        reader.consume(used);
        if (line_end && used == take) || pending.len() >= max {
            emit(&logs, stream, &mut pending);
        }
    }
    if !pending.is_empty() {
        emit(&logs, stream, &mut pending);
    }
}

fn emit(logs: &ServiceLogs, stream: &'static str, pending: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(pending);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    logs.push(stream, text.to_string());
    pending.clear();
}

/// The last `n` lines of a plain file (for detached processes, which write straight to
/// it), reading at most `max_bytes` from its end.
pub fn tail_file(path: &Path, n: usize, max_bytes: u64) -> Vec<String> {
    if n == 0 {
        return vec![];
    }
    let Ok(mut f) = File::open(path) else {
        return vec![];
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(max_bytes);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return vec![];
    }
    let mut ring = VecDeque::with_capacity(n.min(4096));
    let mut lines = BufReader::new(f.take(max_bytes))
        .lines()
        .map_while(Result::ok);
    if start > 0 {
        // Started mid-line: that partial line is not shown.
        lines.next();
    }
    for line in lines {
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

    fn spec(dir: &Path, max_bytes: u64) -> LogFileSpec {
        LogFileSpec {
            path: dir.join("svc.log"),
            max_bytes,
            kept: 2,
        }
    }

    #[test]
    fn ring_keeps_the_newest_and_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), 200);
        let logs = ServiceLogs::new(LogLimits::lines(3), spec.clone());
        for i in 0..20 {
            logs.push("stdout", format!("line number {i}"));
        }
        logs.flush();
        let tail: Vec<String> = logs.tail(10).into_iter().map(|l| l.line).collect();
        assert_eq!(tail, ["line number 17", "line number 18", "line number 19"]);
        assert!(spec.path.exists());
        assert!(dir.path().join("svc.log.1").exists());
        assert!(dir.path().join("svc.log.2").exists());
        assert!(!dir.path().join("svc.log.3").exists());
        assert!(std::fs::metadata(&spec.path).unwrap().len() <= 200);
        let last = tail_file(&spec.path, 1, 1024);
        assert!(last[0].ends_with("line number 19"), "{last:?}");
    }

    /// On Windows a reader without delete sharing makes the rename fail; here a folder
    /// where `svc.log.1` should go does. Before, every later line retried the rotation,
    /// failed, warned, and nothing more reached the file.
    #[test]
    fn a_log_that_cannot_be_renamed_is_emptied_in_place_and_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogFileSpec {
            kept: 1,
            ..spec(dir.path(), 200)
        };
        std::fs::create_dir_all(dir.path().join("svc.log.1/held")).unwrap();
        let logs = ServiceLogs::new(LogLimits::lines(3), spec.clone());
        for i in 0..50 {
            logs.push("stdout", format!("line number {i}"));
        }
        logs.flush();
        assert!(std::fs::metadata(&spec.path).unwrap().len() <= 200);
        let last = tail_file(&spec.path, 1, 1024);
        assert!(last[0].ends_with("line number 49"), "{last:?}");

        // The same for a file nothing reads (a detached service's), shifted at a start.
        std::fs::write(&spec.path, "x".repeat(300)).unwrap();
        let err = shift_files(&spec).unwrap_err();
        assert!(err.to_string().contains("emptied in place"), "{err}");
        assert_eq!(std::fs::metadata(&spec.path).unwrap().len(), 0);
        std::fs::remove_dir_all(dir.path().join("svc.log.1")).unwrap();
        std::fs::write(&spec.path, "old").unwrap();
        shift_files(&spec).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("svc.log.1")).unwrap(),
            "old"
        );
        assert!(!spec.path.exists());
        // Nothing to shift is no error.
        shift_files(&spec).unwrap();
    }

    #[test]
    fn long_lines_are_split_and_the_ring_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            ring_lines: 1000,
            ring_bytes: 4096,
            max_line_bytes: 1000,
        };
        let logs = ServiceLogs::new(limits, spec(dir.path(), 10_000));
        // Multibyte characters straddle every cut.
        logs.push("stdout", "가".repeat(2000));
        let tail = logs.tail(1000);
        assert!(tail.iter().all(|l| l.line.len() <= 1000));
        let kept: usize = tail.iter().map(|l| l.line.len()).sum();
        assert!(kept <= 4096, "{kept}");
        assert!(tail.iter().all(|l| l.line.chars().all(|c| c == '가')));
    }

    #[tokio::test]
    async fn a_pipe_without_newlines_is_read_in_bounded_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            ring_lines: 100,
            ring_bytes: 64 * 1024,
            max_line_bytes: 1024,
        };
        let logs = std::sync::Arc::new(ServiceLogs::new(limits, spec(dir.path(), 4096)));
        // Scripted reads: a long run without a newline, split over several reads,
        // then a normal line.
        let mut mock = tokio_test::io::Builder::new();
        for _ in 0..10 {
            mock.read(&[b'x'; 700]);
        }
        mock.read(b"\nlast line\r\n");
        pump(mock.build(), "stdout", logs.clone()).await;
        logs.flush();
        let tail = logs.tail(100);
        assert!(tail.iter().all(|l| l.line.len() <= 1024), "{tail:?}");
        let xs: usize = tail.iter().map(|l| l.line.matches('x').count()).sum();
        assert_eq!(xs, 7000);
        assert_eq!(tail.last().unwrap().line, "last line");
        // The file rotated instead of growing past its cap.
        assert!(std::fs::metadata(dir.path().join("svc.log")).unwrap().len() <= 4096);
    }

    #[test]
    fn tail_file_reads_only_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let body: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, body).unwrap();
        assert_eq!(tail_file(&path, 2, 64), ["line 9998", "line 9999"]);
        assert!(tail_file(&path, 0, 64).is_empty());
        assert!(tail_file(&path, 10_000, 64).len() < 10);
    }
}
