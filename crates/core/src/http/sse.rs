//! Server-Sent Events helpers shared by every live stream.

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Wrap a stream of events as an SSE response that keeps the connection alive and ends
/// when the app shuts down (so graceful shutdown is never held up by a dashboard).
pub fn sse_response<S>(
    events: S,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Stream<Item = Event> + Send + 'static,
{
    use futures::StreamExt;
    let stream = events
        .take_until(async move { shutdown.cancelled_owned().await })
        .map(Ok::<_, Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A JSON event with a name.
pub fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}
