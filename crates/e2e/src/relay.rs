//! A TCP relay between the browser and a core, for connection faults an in-process core
//! cannot show on cue: [`Relay::freeze`] holds every byte both ways with the sockets left
//! open (a hung core, a sleeping desktop, a link that drops without FIN or RST), and
//! [`Relay::retarget`] sends new connections to another core (a restart at the same
//! address, as the page sees it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    frozen: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay on 127.0.0.1 (a loopback address, so the core's host rules pass) to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target = Arc::new(Mutex::new(target));
        let (frozen, _) = watch::channel(false);
        let (t, f) = (target.clone(), frozen.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (t, f) = (t.clone(), f.subscribe());
                tokio::spawn(relay(client, t, f));
            }
        });
        Ok(Self {
            addr,
            target,
            frozen,
            accept,
        })
    }

    /// Hold all traffic (new connections wait too) until [`Relay::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// New connections go to `target` from now on.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn thawed(frozen: &mut watch::Receiver<bool>) {
    let _ = frozen.wait_for(|f| !*f).await;
}

async fn relay(
    client: TcpStream,
    target: Arc<Mutex<SocketAddr>>,
    mut frozen: watch::Receiver<bool>,
) {
    thawed(&mut frozen).await;
    let to = *target.lock().unwrap();
    let Ok(upstream) = TcpStream::connect(to).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::join!(pump(cr, uw, frozen.clone()), pump(ur, cw, frozen));
}

/// Copy one direction, waiting while frozen before each write; EOF is passed on.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        thawed(&mut frozen).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
