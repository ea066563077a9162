//! Loopback ports: one nothing listens on, and waiting for one to open.

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (bounded) until something accepts TCP connections on 127.0.0.1:`port`.
/// Blocking: it is for drivers and child processes started from synchronous code.
pub fn wait_for_port(port: u16, limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("nothing listened on 127.0.0.1:{port} within {limit:?}"),
    ))
}
