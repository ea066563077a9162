//! Loopback ports: one nothing listens on, and waiting for one to open.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (bound once, then released), never one this process
/// was given before: a released port can come back from the next bind, and two services
/// of one test (or of two tests running at once) were handed the same port, so the second
/// found it taken.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no loopback port left that this process was not given before");
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
