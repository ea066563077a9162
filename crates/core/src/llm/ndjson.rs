//! Reading newline-delimited JSON (Ollama's streaming answers) from any byte source,
//! with the failures a real network shows: lines split across reads, an upstream that
//! stalls mid-stream, a connection reset, a line that never ends.

use futures::FutureExt;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

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

/// Lines of a byte stream, one at a time, in one buffer reused for every line.
pub struct LineReader<R> {
    inner: BufReader<R>,
    max_line: usize,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max_line: usize) -> Self {
        Self {
            inner: BufReader::new(reader),
            max_line,
            buf: Vec::new(),
        }
    }

    /// Whether the stream has ended, without waiting. Reading the end as soon as it has
    /// arrived lets the source finish (an upstream answer gives its connection back to
    /// the pool) instead of being dropped half-read.
    pub fn ended_now(&mut self) -> bool {
        matches!(self.inner.fill_buf().now_or_never(), Some(Ok(rest)) if rest.is_empty())
    }

    /// The next non-empty line (without its newline; valid until the next call), `None`
    /// at the end of the stream. `idle` bounds the wait for each piece of data, not the
    /// whole line.
    pub async fn next_line(&mut self, idle: Duration) -> Result<Option<&[u8]>, LineError> {
        self.buf.clear();
        loop {
            let chunk = match tokio::time::timeout(idle, self.inner.fill_buf()).await {
                Err(_) => return Err(LineError::Stalled(idle)),
                Ok(Err(e)) => return Err(LineError::Io(e.to_string())),
                Ok(Ok(chunk)) => chunk,
            };
            if chunk.is_empty() {
                // End of stream: a last line without a newline still counts.
                let last = trim(&self.buf);
                return Ok((!last.is_empty()).then_some(last));
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            self.buf.extend_from_slice(&chunk[..take]);
            self.inner.consume(take);
            if self.buf.len() > self.max_line {
                return Err(LineError::TooLong(self.max_line));
            }
            if done {
                if !trim(&self.buf).is_empty() {
                    return Ok(Some(trim(&self.buf)));
                }
                self.buf.clear();
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

    const IDLE: Duration = Duration::from_secs(5);

    /// Read what is left (a scripted mock insists on being used up).
    async fn drain<R: AsyncRead + Unpin>(r: &mut LineReader<R>) {
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
        let mut r = LineReader::new(mock, 1024);
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"b\":2}");
        // The last line had no newline before the end of the stream.
        assert_eq!(r.next_line(IDLE).await.unwrap().unwrap(), b"{\"c\":3}");
        assert_eq!(r.next_line(IDLE).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_mid_stream_ends_after_the_idle_limit_not_before() {
        let mock = Builder::new()
            .read(b"{\"a\":1}\n{\"b\"")
            .wait(Duration::from_secs(60))
            .read(b":2}\n")
            .build();
        let mut r = LineReader::new(mock, 1024);
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
        let mut r = LineReader::new(b.build(), 1024);
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
        let mut r = LineReader::new(mock, 1024);
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
        let mut r = LineReader::new(b.build(), 512);
        assert_eq!(r.next_line(IDLE).await, Err(LineError::TooLong(512)));
        drain(&mut r).await;
    }
}
