//! A circuit breaker per provider instance, as pure state transitions (checked by a
//! table test): `closed → open → half-open → closed`.
//!
//! - Connect failures, timeouts and failed probes count toward opening (`failures`).
//! - A 5xx may be about one request only: it counts only as part of a run (`errors`).
//! - While open, requests are refused at once; after `open_for` one trial (a probe or
//!   a request) is let through; its success closes the breaker, its failure opens it
//!   again for twice as long (up to `max_open`).
//! - The supervisor reporting the backing service down opens it at once; a probe or a
//!   request that succeeds after the service is back closes it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive connect failures / timeouts / failed probes that open the breaker.
    pub failures: u32,
    /// Consecutive 5xx answers that open it.
    pub errors: u32,
    /// First open period; doubled after a failed trial, up to `max_open`.
    pub open_for: Duration,
    pub max_open: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            errors: 5,
            open_for: Duration::from_secs(5),
            max_open: Duration::from_secs(60),
        }
    }
}

/// What happened to a call or a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused, reset before an answer, unreachable.
    ConnectFailure,
    /// No answer (or no first byte) in time, or the instance was found wedged.
    Timeout,
    /// The instance answered 5xx.
    ServerError,
    /// A 4xx or an answer that says the request was wrong: not the instance's fault.
    ClientError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
        errors: u32,
    },
    Open {
        until: Instant,
        /// How long this opening lasts (the next one after a failed trial is twice this).
        period: Duration,
        reason: String,
    },
    HalfOpen {
        /// A trial is out; others are refused until it reports.
        trial_out: bool,
        period: Duration,
        reason: String,
    },
}

impl Default for State {
    fn default() -> Self {
        State::Closed {
            failures: 0,
            errors: 0,
        }
    }
}

/// Whether a call may go to the instance now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Yes,
    /// Yes, as the half-open trial: its outcome decides.
    Trial,
    /// No: refused, with why and when to come back.
    No {
        reason: String,
        retry_after: Duration,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, State::Closed { .. })
    }
}

/// Ask to send a call at `now`.
pub fn admit(state: &State, now: Instant) -> (Admission, State) {
    match state {
        State::Closed { .. } => (Admission::Yes, state.clone()),
        State::Open {
            until,
            period,
            reason,
        } if now >= *until => (
            Admission::Trial,
            State::HalfOpen {
                trial_out: true,
                period: *period,
                reason: reason.clone(),
            },
        ),
        State::Open { until, reason, .. } => (
            Admission::No {
                reason: reason.clone(),
                retry_after: *until - now,
            },
            state.clone(),
        ),
        State::HalfOpen {
            trial_out: false,
            period,
            reason,
        } => (
            Admission::Trial,
            State::HalfOpen {
                trial_out: true,
                period: *period,
                reason: reason.clone(),
            },
        ),
        State::HalfOpen { reason, .. } => (
            Admission::No {
                reason: format!("{reason} (a trial request is checking it now)"),
                retry_after: Duration::from_secs(1),
            },
            state.clone(),
        ),
    }
}

/// The state after `outcome` at `now` (`detail` says what went wrong, for the reason).
pub fn on_outcome(
    state: &State,
    outcome: Outcome,
    detail: &str,
    now: Instant,
    cfg: &BreakerConfig,
) -> State {
    let open = |period: Duration, reason: String| State::Open {
        until: now + period,
        period,
        reason,
    };
    match (state, outcome) {
        // Success closes, whatever the state: the instance answered.
        (_, Outcome::Success) => State::default(),
        // A client error says nothing about the instance: a trial still proved it answers.
        (State::HalfOpen { .. }, Outcome::ClientError) => State::default(),
        (_, Outcome::ClientError) => state.clone(),
        (State::Closed { failures, errors }, Outcome::ConnectFailure | Outcome::Timeout) => {
            let failures = failures + 1;
            if failures >= cfg.failures {
                open(
                    cfg.open_for,
                    format!("{failures} failures in a row, the last: {detail}"),
                )
            } else {
                State::Closed {
                    failures,
                    errors: *errors,
                }
            }
        }
        (State::Closed { failures, errors }, Outcome::ServerError) => {
            let errors = errors + 1;
            if errors >= cfg.errors {
                open(
                    cfg.open_for,
                    format!("{errors} server errors in a row, the last: {detail}"),
                )
            } else {
                State::Closed {
                    failures: *failures,
                    errors,
                }
            }
        }
        // The trial failed: open again, for longer.
        (State::HalfOpen { period, .. }, _) => open(
            (*period * 2).min(cfg.max_open),
            format!("still failing: {detail}"),
        ),
        // Already open (a late report from before it opened): keep the opening.
        (State::Open { .. }, _) => state.clone(),
    }
}

/// The instance is known unreachable from outside (its service is down, a probe timed
/// out): open now, whatever the counts.
pub fn force_open(state: &State, reason: &str, now: Instant, cfg: &BreakerConfig) -> State {
    match state {
        State::Open { until, .. } if *until > now => state.clone(),
        _ => State::Open {
            until: now + cfg.open_for,
            period: cfg.open_for,
            reason: reason.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(failures: u32, errors: u32) -> State {
        State::Closed { failures, errors }
    }

    #[test]
    fn transitions_as_a_table() {
        let cfg = BreakerConfig {
            failures: 3,
            errors: 2,
            open_for: Duration::from_secs(5),
            max_open: Duration::from_secs(12),
        };
        let t0 = Instant::now();
        let open5 = State::Open {
            until: t0 + Duration::from_secs(5),
            period: Duration::from_secs(5),
            reason: String::new(),
        };
        let half = |period: u64| State::HalfOpen {
            trial_out: true,
            period: Duration::from_secs(period),
            reason: String::new(),
        };
        // (from, outcome, expected state name, expected counts when closed / period when open)
        let cases: Vec<(State, Outcome, &str, Option<(u32, u32)>, Option<u64>)> = vec![
            (closed(0, 0), Outcome::Success, "closed", Some((0, 0)), None),
            (
                closed(0, 0),
                Outcome::ConnectFailure,
                "closed",
                Some((1, 0)),
                None,
            ),
            (closed(1, 0), Outcome::Timeout, "closed", Some((2, 0)), None),
            (closed(2, 0), Outcome::ConnectFailure, "open", None, Some(5)),
            (closed(2, 1), Outcome::Success, "closed", Some((0, 0)), None),
            (
                closed(0, 0),
                Outcome::ServerError,
                "closed",
                Some((0, 1)),
                None,
            ),
            (closed(0, 1), Outcome::ServerError, "open", None, Some(5)),
            // A 4xx is not the instance's fault and does not reset a run.
            (
                closed(2, 1),
                Outcome::ClientError,
                "closed",
                Some((2, 1)),
                None,
            ),
            (half(5), Outcome::Success, "closed", Some((0, 0)), None),
            (half(5), Outcome::ClientError, "closed", Some((0, 0)), None),
            (half(5), Outcome::Timeout, "open", None, Some(10)),
            (half(10), Outcome::ConnectFailure, "open", None, Some(12)),
            (open5.clone(), Outcome::Timeout, "open", None, Some(5)),
            (open5, Outcome::Success, "closed", Some((0, 0)), None),
        ];
        for (from, outcome, name, counts, period) in cases {
            let to = on_outcome(&from, outcome, "x", t0, &cfg);
            assert_eq!(to.name(), name, "{from:?} + {outcome:?}");
            match (&to, counts, period) {
                (State::Closed { failures, errors }, Some(c), _) => {
                    assert_eq!((*failures, *errors), c, "{from:?} + {outcome:?}");
                }
                (State::Open { period: p, .. }, _, Some(want)) => {
                    assert_eq!(p.as_secs(), want, "{from:?} + {outcome:?}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn open_refuses_until_its_time_then_lets_one_trial_through() {
        let cfg = BreakerConfig::default();
        let t0 = Instant::now();
        let s = force_open(&State::default(), "service ollama is crashed", t0, &cfg);
        let (a, s) = admit(&s, t0 + Duration::from_secs(1));
        match a {
            Admission::No {
                reason,
                retry_after,
            } => {
                assert!(reason.contains("crashed"));
                assert_eq!(retry_after, Duration::from_secs(4));
            }
            other => panic!("{other:?}"),
        }
        let (a, s) = admit(&s, t0 + Duration::from_secs(5));
        assert_eq!(a, Admission::Trial);
        // Only one trial at a time.
        let (a, s) = admit(&s, t0 + Duration::from_secs(5));
        assert!(matches!(a, Admission::No { .. }));
        let s = on_outcome(&s, Outcome::Success, "", t0, &cfg);
        assert_eq!(admit(&s, t0).0, Admission::Yes);
    }
}
