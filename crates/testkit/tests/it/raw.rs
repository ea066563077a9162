//! A raw HTTP/1.1 client over tokio TCP: to see exactly what goes over the wire.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any read in these tests waits for something that must come.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How long silence must last to count as "nothing came".
pub const SILENCE: Duration = Duration::from_millis(300);

/// Connect and send one request (`Connection: close`).
pub async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sends");
    stream
}

/// What one read gives within `limit`: Some(bytes) (empty at EOF), None when nothing came.
pub async fn read_some(
    stream: &mut TcpStream,
    limit: Duration,
) -> Option<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; 64 * 1024];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(n)) => Some(Ok(buf[..n].to_vec())),
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => None,
    }
}

/// Read until `marker` has arrived (bounded); returns everything read so far.
pub async fn read_until(stream: &mut TcpStream, marker: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.windows(marker.len()).any(|w| w == marker) {
        match read_some(stream, PATIENCE).await {
            Some(Ok(bytes)) if !bytes.is_empty() => got.extend(bytes),
            other => panic!(
                "stream ended before {:?} ({other:?}); got {:?}",
                String::from_utf8_lossy(marker),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    got
}

/// Read to the end (bounded): the bytes, and the error that ended it, if any.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    loop {
        match read_some(stream, PATIENCE).await {
            Some(Ok(bytes)) if bytes.is_empty() => return (got, None),
            Some(Ok(bytes)) => got.extend(bytes),
            Some(Err(e)) => return (got, Some(e)),
            None => panic!(
                "no end within {PATIENCE:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// The body of a whole response (after the blank line).
pub fn body_of(response: &[u8]) -> &[u8] {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    &response[at + 4..]
}
