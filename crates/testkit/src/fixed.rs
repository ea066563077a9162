//! A fixed-reply upstream for benchmarks: answers each configured path with the same
//! bytes, whatever the request, with no parsing, logging or faults — the cheapest HTTP/1.1
//! server tokio and hyper make, so a gateway benchmark measures the gateway, not the double.
//!
//! `sparklio-testkit fixed --port P --reply /api/chat=chat.ndjson --reply /api/tags=tags.json`
//! (the bench script records the replies from the Ollama double first).

use axum::body::Body;
use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// The reply for one path.
#[derive(Debug, Clone)]
pub struct FixedReply {
    pub content_type: String,
    pub body: Bytes,
}

/// Serve `replies` (path → reply) on 127.0.0.1:`port` until the task is dropped; unknown
/// paths answer 404. Returns the bound address and the serving task.
pub async fn serve_fixed(
    port: u16,
    replies: HashMap<String, FixedReply>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let replies = Arc::new(replies);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let replies = replies.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let reply = replies.get(req.uri().path()).cloned();
                        async move {
                            // The request body is not read: hyper discards it before the
                            // next request on the connection.
                            let response = match reply {
                                Some(r) => Response::builder()
                                    .header("content-type", r.content_type)
                                    .body(Body::from(r.body)),
                                None => Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Body::from(Bytes::from_static(b"not found"))),
                            };
                            Ok::<_, Infallible>(response.expect("a valid response"))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}
