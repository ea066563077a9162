//! Reading newline-delimited JSON (Ollama's streaming answers) from a body's chunks,
//! with the failures a real network shows: lines split across reads, an upstream that
//! stalls mid-stream, a connection reset, a line that never ends.

use bytes::{Buf, Bytes};
use futures::{FutureExt, Stream, StreamExt};
use std::time::Duration;

/// Why the next line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Nothing arrived within the idle limit.
    Stalled(Duration),
    /// The connection failed (reset, aborted).
    Io(String),
    /// A line grew past the limit without ending.
    TooLong(usize),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stalled(d) => write!(f, "nothing received for {:.1} s", d.as_secs_f64()),
            Self::Io(e) => write!(f, "{e}"),
            Self::TooLong(n) => write!(f, "a line longer than {n} bytes"),
        }
    }
}

/// Lines of a stream of byte chunks (an HTTP body), one at a time. A line that lies
/// whole in one chunk is handed out from that chunk, not copied; only a line split
/// across chunks is joined, in one buffer reused for every line.
pub struct LineReader<S> {
    chunks: S,
    max_line: usize,
    /// What is left of the last chunk received.
    rest: Bytes,
    /// The line handed out when it lay whole in one chunk.
    whole: Bytes,
    /// The line being joined from several chunks.
    joined: Vec<u8>,
    /// `joined` holds a line already handed out (cleared at the next read; a read
    /// dropped mid-line keeps what it joined so far for the next one).
    joined_out: bool,
    /// The rest of a line refused as too long is being skipped, up to its newline.
    skipping: bool,
    /// The stream gave its end (`None`) or failed.
    ended: bool,
    /// The stream's failure, reported by every read after it (never a clean end).
    failed: Option<String>,
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> LineReader<S> {
    pub fn new(chunks: S, max_line: usize) -> Self {
        Self {
            chunks,
            max_line,
            rest: Bytes::new(),
            whole: Bytes::new(),
            joined: Vec::new(),
            joined_out: false,
            skipping: false,
            ended: false,
            failed: None,
        }
    }

    /// Whether the stream has ended, without waiting. Reading the end as soon as it has
    /// arrived lets the source finish (an upstream answer gives its connection back to
    /// the pool) instead of being dropped half-read.
    pub fn ended_now(&mut self) -> bool {
        while self.rest.is_empty() && !self.ended {
            match self.chunks.next().now_or_never() {
                None => return false,
                Some(next) => self.take(next),
            }
        }
        self.ended && self.rest.is_empty() && self.failed.is_none()
    }

    /// Keep what the stream gave: a chunk, its end or its failure.
    fn take(&mut self, next: Option<std::io::Result<Bytes>>) {
        match next {
            Some(Ok(chunk)) => self.rest = chunk,
            Some(Err(e)) => {
                self.failed = Some(e.to_string());
                self.ended = true;
            }
            None => self.ended = true,
        }
    }

    /// The next non-empty line (without its newline; valid until the next call), `None`
    /// at the end of the stream. `idle` bounds the wait for each piece of data, not the
    /// whole line.
    pub async fn next_line(&mut self, idle: Duration) -> Result<Option<&[u8]>, LineError> {
        if std::mem::take(&mut self.joined_out) {
            self.joined.clear();
        }
        loop {
            if self.rest.is_empty() {
                if let Some(e) = &self.failed {
                    return Err(LineError::Io(e.clone()));
                }
                if self.ended {
                    // End of stream: a last line without a newline still counts.
                    self.joined_out = true;
                    let last = trim(&self.joined);
                    return Ok((!last.is_empty()).then_some(last));
                }
                match tokio::time::timeout(idle, self.chunks.next()).await {
                    Err(_) => return Err(LineError::Stalled(idle)),
                    Ok(next) => self.take(next),
                }
                continue;
            }
            let newline = memchr::memchr(b'\n', &self.rest);
            if self.skipping {
                match newline {
                    Some(at) => {
                        self.rest.advance(at + 1);
                        self.skipping = false;
                    }
                    None => self.rest.clear(),
                }
                continue;
            }
            let Some(newline) = newline else {
                self.joined.extend_from_slice(&self.rest);
                self.rest.clear();
                if self.joined.len() > self.max_line {
                    // The reads after skip the rest of this line, up to its end.
                    self.joined_out = true;
                    self.skipping = true;
                    return Err(LineError::TooLong(self.max_line));
                }
                continue;
            };
            if self.joined.len() + newline > self.max_line {
                // Skip the whole line, so the next read starts at the next one.
                self.rest.advance(newline + 1);
                self.joined_out = true;
                return Err(LineError::TooLong(self.max_line));
            }
            if self.joined.is_empty() {
                self.whole = self.rest.split_to(newline + 1);
                if !trim(&self.whole).is_empty() {
                    return Ok(Some(trim(&self.whole)));
                }
            } else {
                self.joined.extend_from_slice(&self.rest[..=newline]);
                self.rest.advance(newline + 1);
                self.joined_out = true;
                if !trim(&self.joined).is_empty() {
                    return Ok(Some(trim(&self.joined)));
                }
                self.joined.clear();
                self.joined_out = false;
            }
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_test::io::Builder;
    use tokio_util::io::ReaderStream;

    /// A scripted byte source (reads, waits, errors) as a stream of chunks.
    fn lines(
        mock: tokio_test::io::Mock,
        max_line: usize,
    ) -> LineReader<ReaderStream<tokio_test::io::Mock>> {
        LineReader::new(ReaderStream::new(mock), max_line)
    }

    const IDLE: Duration = Duration::from_secs(5);

    /// Read what is left (a scripted mock insists on being used up).
    async fn drain(r: &mut LineReader<ReaderStream<tokio_test::io::Mock>>) {
        for _ in 0..100 {
            if let Ok(None) = r.next_line(Duration::from_secs(3600)).await {
                return;
            }
        }
    }

    #[tokio::test]
    async fn lines_split_across_reads_are_joined() {
        let mock = Builder::new()
            .read(b"{\"a\":")
            .read(b"1}\n{\"b\"")
            .read(b":2}\n\n")
            .read(b"{\"c\":3}")
            .build();
        let mut r = lines(mock, 1024);
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"b\":2}");
        // The last line had no newline before the end of the stream.
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"c\":3}");
        assert_eq!(r.next_line(IDLE).await.unwrap(), None);
    }

    #[tokio::test]
    async fn lines_in_one_chunk_come_out_in_order_and_the_end_is_seen_without_waiting() {
        let chunks =
            [&b"{\"a\":1}\n\n  {\"b\":2}\n{\"c\""[..], b":3}\n"].map(|c| Ok(Bytes::from_static(c)));
        let mut r = LineReader::new(futures::stream::iter(chunks), 1024);
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"b\":2}");
        assert!(!r.ended_now(), "a line is still to come");
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"c\":3}");
        assert!(r.ended_now());
        assert_eq!(r.next_line(IDLE).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_is_not_waited_for_and_a_failure_seen_ahead_is_kept() {
        let mock = Builder::new()
            .read(b"{\"a\":1}\n")
            .wait(Duration::from_secs(60))
            .build();
        let mut r = lines(mock, 1024);
        assert!(r.next_line(IDLE).await.unwrap().is_some());
        assert!(!r.ended_now(), "the source has not ended yet");
        drain(&mut r).await;
        let failing = futures::stream::iter([
            Ok(Bytes::from_static(b"{\"a\":1}\n")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        ]);
        let mut r = LineReader::new(failing, 1024);
        assert!(r.next_line(IDLE).await.unwrap().is_some());
        assert!(!r.ended_now(), "a failure is not a clean end");
        assert_eq!(r.next_line(IDLE).await, Err(LineError::Io("reset".into())));
        assert!(!r.ended_now(), "not even once it was reported");
        assert_eq!(r.next_line(IDLE).await, Err(LineError::Io("reset".into())));
    }

    #[tokio::test]
    async fn a_line_refused_as_too_long_is_skipped_whole_and_the_next_one_read() {
        let long = [b'x'; 600];
        let mut whole = long.to_vec();
        whole.extend_from_slice(b"\n{\"a\":1}\n");
        // The long line in one chunk, then split across chunks.
        let chunks = [Ok(Bytes::from(whole.clone()))];
        let mut r = LineReader::new(futures::stream::iter(chunks), 512);
        assert_eq!(r.next_line(IDLE).await, Err(LineError::TooLong(512)));
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.next_line(IDLE).await.unwrap(), None);
        let chunks = whole
            .chunks(100)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>();
        let mut r = LineReader::new(futures::stream::iter(chunks), 512);
        assert_eq!(r.next_line(IDLE).await, Err(LineError::TooLong(512)));
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.next_line(IDLE).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_read_dropped_mid_line_loses_nothing() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<std::io::Result<Bytes>>();
        let mut r = LineReader::new(rx, 1024);
        tx.unbounded_send(Ok(Bytes::from_static(b"{\"a\"")))
            .unwrap();
        // The read gives up (a select! that chose another branch) with half a line joined.
        assert!(r.next_line(IDLE).now_or_never().is_none());
        tx.unbounded_send(Ok(Bytes::from_static(b":1}\n"))).unwrap();
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"a\":1}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_mid_stream_ends_after_the_idle_limit_not_before() {
        let mock = Builder::new()
            .read(b"{\"a\":1}\n{\"b\"")
            .wait(Duration::from_secs(60))
            .read(b":2}\n")
            .build();
        let mut r = lines(mock, 1024);
        assert!(r.next_line(IDLE).await.unwrap().is_some());
        let started = tokio::time::Instant::now();
        assert_eq!(r.next_line(IDLE).await, Err(LineError::Stalled(IDLE)));
        assert_eq!(started.elapsed(), IDLE);
        drain(&mut r).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_trickle_is_not_a_stall() {
        let mut b = Builder::new();
        for piece in [&b"{\"x\""[..], b":", b"1", b"}", b"\n"] {
            b.wait(Duration::from_secs(4)).read(piece);
        }
        let mut r = lines(b.build(), 1024);
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"x\":1}");
    }

    #[tokio::test]
    async fn a_reset_is_an_io_error() {
        let mock = Builder::new()
            .read(b"{\"a\":1}\n")
            .read_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ))
            .build();
        let mut r = lines(mock, 1024);
        assert!(r.next_line(IDLE).await.unwrap().is_some());
        let e = r.next_line(IDLE).await.unwrap_err();
        assert!(
            matches!(&e, LineError::Io(m) if m.contains("reset")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_line_that_never_ends_is_refused_at_the_limit() {
        let mut b = Builder::new();
        for _ in 0..10 {
            b.read(&[b'x'; 100]);
        }
        let mut r = lines(b.build(), 512);
        assert_eq!(r.next_line(IDLE).await, Err(LineError::TooLong(512)));
        drain(&mut r).await;
    }
}
