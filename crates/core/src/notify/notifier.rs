//! The running side of [`NotificationPolicy`]: watches the supervisor's events and the
//! gateway's recent error rate, and hands each notification the policy lets through to a
//! sink chosen by the front end (desktop notifications in the tray app, a log line in
//! `serve`). The gateway alarm is also written to the event log (service `gateway`), so
//! every notification is in the dashboard's event list.

use super::{Notification, NotificationPolicy};
use crate::store::{GatewayFailures, Store};
use crate::supervisor::events::EventLog;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Who the notifier's own events name as their actor.
pub const NOTIFIER_ACTOR: &str = "notifier";
/// The event log's service name for the gateway alarm.
pub const GATEWAY_SERVICE: &str = "gateway";

/// How often and over what the notifier looks.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// The shortest gap between two notifications of one topic (a service, `docker`,
    /// `gateway`); what is held back is counted in the next one.
    pub min_interval: Duration,
    /// How often the gateway's error rate is read.
    pub poll_interval: Duration,
    /// The window the error rate is computed over (seconds); never reaching back before
    /// the notifier started, so an old outage in the usage log does not alarm at start-up.
    pub error_window_s: u64,
    /// Alarm when at least this fraction of the window's requests failed...
    pub error_rate_threshold: f64,
    /// ...and the window holds at least this many requests.
    pub error_rate_min_requests: u64,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            error_window_s: 300,
            error_rate_threshold: 0.2,
            error_rate_min_requests: 10,
        }
    }
}

/// Receives the notifications (called on a runtime worker; keep it quick).
pub type Sink = Arc<dyn Fn(Notification) + Send + Sync>;

pub struct Notifier;

/// What the notifier watches: the supervisor's event feed (which it also writes the
/// gateway alarm to), the usage log's figures, and the app's shutdown.
#[derive(Clone)]
pub struct NotifierInputs {
    pub events: EventLog,
    pub store: Store,
    pub shutdown: CancellationToken,
    /// Topics the user muted (dashboard, tray): decided, counted, not handed to the sink.
    pub mutes: Arc<super::Mutes>,
    /// Every delivered one, numbered, for front ends that are not the sink (a tray
    /// attached to the Windows service's core).
    pub recent: Arc<super::RecentNotifications>,
}

impl Notifier {
    /// Start watching; the task ends when the app shuts down.
    pub fn spawn(
        inputs: NotifierInputs,
        options: NotifierOptions,
        sink: impl Fn(Notification) + Send + Sync + 'static,
    ) -> JoinHandle<()> {
        let sink: Sink = Arc::new(sink);
        // Subscribe before returning, so no event after `spawn` is missed; likewise the
        // error window counts every request answered after this moment.
        let events = inputs.events.subscribe();
        let window = ErrorWindow::new(
            Duration::from_secs(options.error_window_s),
            chrono::Utc::now(),
        );
        tokio::spawn(run(inputs, options, sink, events, window))
    }
}

async fn run(
    state: NotifierInputs,
    options: NotifierOptions,
    sink: Sink,
    mut events: tokio::sync::broadcast::Receiver<crate::supervisor::events::Event>,
    mut window: ErrorWindow,
) {
    let mut policy = NotificationPolicy::new(options.min_interval);
    policy.error_rate_threshold = options.error_rate_threshold;
    policy.error_rate_min_requests = options.error_rate_min_requests;
    let mut tick = tokio::time::interval(options.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            received = events.recv() => match received {
                Ok(event) => {
                    // The notifier's own alarm events were already notified.
                    if event.actor.as_deref() == Some(NOTIFIER_ACTOR) {
                        continue;
                    }
                    // A repeat counted on an earlier event (a recheck finding nothing
                    // changed) is not news.
                    if event.count > 1 {
                        continue;
                    }
                    if let Some(n) = super::model_notification(&event.service, &event.to, &event.reason)
                        .or_else(|| super::config_notification(&event.service, &event.to, &event.reason, event.actor.as_deref()))
                    {
                        deliver(&state, &sink, n);
                        continue;
                    }
                    let Some(to) = crate::supervisor::ServiceState::parse(&event.to) else {
                        continue;
                    };
                    if let Some(n) = policy.on_state_change(&event.service, to, &event.reason, Instant::now()) {
                        deliver(&state, &sink, n);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!("notifier missed {missed} event(s) (too many at once)");
                }
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => check_gateway(&state, &options, &mut policy, &mut window, &sink).await,
        }
    }
}

/// Requests and errors over the alarm's window, counted as the usage log grows: each
/// poll reads only the rows written since the last one (a 300 s window at 10,000
/// requests/s is 3 million rows, too many to read every 5 s).
struct ErrorWindow {
    window: Duration,
    /// The last usage row counted; `None` until the first poll.
    last_id: Option<i64>,
    /// When the notifier started: the first poll counts the rows written since.
    since: chrono::DateTime<chrono::Utc>,
    /// (when counted, what the new rows held), oldest first.
    polls: std::collections::VecDeque<(Instant, GatewayFailures)>,
}

impl ErrorWindow {
    fn new(window: Duration, since: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            window,
            since,
            last_id: None,
            polls: std::collections::VecDeque::new(),
        }
    }

    /// Count the new rows; returns the window's totals. The first poll starts at the
    /// notifier's start: the persisted usage log is history, not news (no alarm at
    /// start-up), but a request answered before the first poll is counted.
    async fn poll(&mut self, store: &Store) -> anyhow::Result<GatewayFailures> {
        let after = match self.last_id {
            Some(id) => id,
            None => store.usage_id_before_time(self.since).await?,
        };
        let (counts, last_id) = store.gateway_failures_after(after).await?;
        self.last_id = Some(last_id);
        let now = Instant::now();
        self.polls.push_back((now, counts));
        while self
            .polls
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > self.window)
        {
            self.polls.pop_front();
        }
        Ok(self
            .polls
            .iter()
            .fold(GatewayFailures::default(), |mut t, (_, c)| {
                t.requests += c.requests;
                t.failures += c.failures;
                t.client_errors += c.client_errors;
                t.cancelled += c.cancelled;
                t
            }))
    }
}

async fn check_gateway(
    state: &NotifierInputs,
    options: &NotifierOptions,
    policy: &mut NotificationPolicy,
    window: &mut ErrorWindow,
    sink: &Sink,
) {
    let f = match window.poll(&state.store).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("notifier cannot read the usage log: {e:#}");
            return;
        }
    };
    let was_failing = policy.gateway_alarm_on();
    let notification = policy.on_gateway_errors(f.requests, f.failures, Instant::now());
    let failing = policy.gateway_alarm_on();
    if failing != was_failing {
        let (from, to) = if failing {
            ("ok", "failing")
        } else {
            ("failing", "ok")
        };
        let rate = if f.requests == 0 {
            0.0
        } else {
            f.failures as f64 / f.requests as f64
        };
        let reason = format!(
            "{} of {} requests in the last {} s failed on the gateway's or a provider's side \
             (5xx, timeouts, unavailable: {:.0} %, alarm at {:.0} %); not counted: {} client \
             error(s) (4xx), {} cancelled",
            f.failures,
            f.requests,
            options.error_window_s,
            rate * 100.0,
            options.error_rate_threshold * 100.0,
            f.client_errors,
            f.cancelled
        );
        state
            .events
            .record(
                GATEWAY_SERVICE,
                Some(from),
                to,
                &reason,
                Some(NOTIFIER_ACTOR),
            )
            .await;
    }
    if let Some(n) = notification {
        deliver(state, sink, n);
    }
}

/// Hand `n` to the sink unless its topic is muted.
fn deliver(state: &NotifierInputs, sink: &Sink, n: super::Notification) {
    if state.mutes.holds_back(&n.topic, n.level, Instant::now()) {
        tracing::info!(topic = %n.topic, "notification muted: {}", n.title);
        return;
    }
    state.recent.push(&n);
    sink(n);
}
