//! Faults a double can be switched to while it runs, shared by the Ollama and ComfyUI
//! doubles: what goes wrong ([`Fault`]), and where and how often ([`FaultRule`]).
//!
//! The JSON spelling (control API of the `sparklio-testkit` binary) is flat:
//! `{"fault": "status", "status": 503, "path": "/api/chat", "times": 1}`, with the
//! fault's name in snake_case and its parameters beside it.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// What a double does wrong. Faults act at one of two moments:
/// - when a connection is accepted (`Refuse`, `HangAfterAccept`, `Reset`, `Restart`):
///   nothing of the request is read yet;
/// - when a request has been read (all the others), so a path scope can apply.
///
/// `HangAfterAccept` and `Reset` scoped to a path, or met by a request on a connection
/// accepted before the fault was set, act once that request is read: the double hangs
/// without answering, or resets the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Healthy.
    #[default]
    None,
    /// The listener is closed (connections refused, open ones dropped) until the fault
    /// is cleared; the same port is bound again then.
    Refuse,
    /// Accept the TCP connection, never read from it or answer.
    HangAfterAccept,
    /// Read the request, never answer.
    HangBeforeHeaders,
    /// Send the headers and the first `after_chunks` body chunks as the double produces
    /// them (a non-streamed JSON answer is one chunk), then send nothing more while
    /// keeping the connection open.
    StallMidStream { after_chunks: usize },
    /// Dribble the body, `bytes` at a time, one piece every `interval_ms`.
    Trickle { bytes: usize, interval_ms: u64 },
    /// Answer this status with the upstream's own error body (Ollama:
    /// `{"error": "..."}`; ComfyUI: aiohttp's plain text).
    Status(u16),
    /// 200 with a body that is not valid JSON.
    BadJson,
    /// The body ends early: an NDJSON stream ends cleanly before its final `done`
    /// message; any other body stops halfway through its announced Content-Length.
    Truncated,
    /// Reset the connection (RST: SO_LINGER 0, then close) as soon as it is accepted.
    Reset,
    /// Send the headers and part of the body, then reset the connection.
    ResetMidStream,
    /// Drop every connection, refuse connections for `down_ms`, then listen again on
    /// the same port with the in-memory state emptied, as a restarted upstream.
    Restart { down_ms: u64 },
}

impl Fault {
    /// Only for requests whose path starts with `path_prefix`.
    pub fn on(self, path_prefix: &str) -> FaultRule {
        FaultRule::from(self).on(path_prefix)
    }

    /// Only for the next `n` requests (or connections, for accept-time faults).
    pub fn times(self, n: u32) -> FaultRule {
        FaultRule::from(self).times(n)
    }

    /// Only for the next request (or connection).
    pub fn once(self) -> FaultRule {
        self.times(1)
    }

    /// The fault's name in the control API.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Refuse => "refuse",
            Fault::HangAfterAccept => "hang_after_accept",
            Fault::HangBeforeHeaders => "hang_before_headers",
            Fault::StallMidStream { .. } => "stall_mid_stream",
            Fault::Trickle { .. } => "trickle",
            Fault::Status(_) => "status",
            Fault::BadJson => "bad_json",
            Fault::Truncated => "truncated",
            Fault::Reset => "reset",
            Fault::ResetMidStream => "reset_mid_stream",
            Fault::Restart { .. } => "restart",
        }
    }

    /// Faults that concern the whole port rather than requests.
    pub(crate) fn is_port_wide(&self) -> bool {
        matches!(self, Fault::Refuse | Fault::Restart { .. })
    }
}

/// A fault with its scope: requests whose path starts with `path` (all when `None`),
/// and only the next `times` of them (unlimited when `None`). Once used up, the rule
/// goes back to [`Fault::None`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultRule {
    pub fault: Fault,
    pub path: Option<String>,
    pub times: Option<u32>,
}

impl FaultRule {
    pub fn on(mut self, path_prefix: &str) -> Self {
        self.path = Some(path_prefix.to_string());
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn once(self) -> Self {
        self.times(1)
    }

    /// Why this rule cannot be applied, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let name = self.fault.name();
        if self.fault.is_port_wide() && (self.path.is_some() || self.times.is_some()) {
            return Some(format!(
                "{name} concerns the whole port: it takes no path or times"
            ));
        }
        if self.times == Some(0) {
            return Some("times must be at least 1".into());
        }
        match self.fault {
            Fault::Status(status) if !(400..=599).contains(&status) => Some(format!(
                "status must be an error status (400-599), not {status}"
            )),
            Fault::Trickle { bytes: 0, .. } => Some("trickle needs bytes >= 1".into()),
            _ => None,
        }
    }
}

impl From<Fault> for FaultRule {
    fn from(fault: Fault) -> Self {
        FaultRule {
            fault,
            path: None,
            times: None,
        }
    }
}

/// The control API's JSON for a rule: the fault's name and every parameter, flat.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    fault: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_chunks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    down_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u32>,
}

/// Defaults for parameters left out of the JSON.
const DEFAULT_AFTER_CHUNKS: usize = 1;
const DEFAULT_TRICKLE_BYTES: usize = 1;
const DEFAULT_TRICKLE_INTERVAL_MS: u64 = 100;
const DEFAULT_DOWN_MS: u64 = 500;

impl Serialize for FaultRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut json = RuleJson {
            fault: self.fault.name().to_string(),
            path: self.path.clone(),
            times: self.times,
            ..Default::default()
        };
        match self.fault {
            Fault::StallMidStream { after_chunks } => json.after_chunks = Some(after_chunks),
            Fault::Trickle { bytes, interval_ms } => {
                json.bytes = Some(bytes);
                json.interval_ms = Some(interval_ms);
            }
            Fault::Status(status) => json.status = Some(status),
            Fault::Restart { down_ms } => json.down_ms = Some(down_ms),
            _ => {}
        }
        json.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FaultRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let json = RuleJson::deserialize(deserializer)?;
        let fault = match json.fault.as_str() {
            "none" => Fault::None,
            "refuse" => Fault::Refuse,
            "hang_after_accept" => Fault::HangAfterAccept,
            "hang_before_headers" => Fault::HangBeforeHeaders,
            "stall_mid_stream" => Fault::StallMidStream {
                after_chunks: json.after_chunks.unwrap_or(DEFAULT_AFTER_CHUNKS),
            },
            "trickle" => Fault::Trickle {
                bytes: json.bytes.unwrap_or(DEFAULT_TRICKLE_BYTES),
                interval_ms: json.interval_ms.unwrap_or(DEFAULT_TRICKLE_INTERVAL_MS),
            },
            "status" => Fault::Status(
                json.status
                    .ok_or_else(|| D::Error::custom("fault \"status\" needs \"status\""))?,
            ),
            "bad_json" => Fault::BadJson,
            "truncated" => Fault::Truncated,
            "reset" => Fault::Reset,
            "reset_mid_stream" => Fault::ResetMidStream,
            "restart" => Fault::Restart {
                down_ms: json.down_ms.unwrap_or(DEFAULT_DOWN_MS),
            },
            other => {
                return Err(D::Error::custom(format!(
                    "unknown fault {other:?}; known: {}",
                    FAULT_NAMES.join(", ")
                )))
            }
        };
        let rule = FaultRule {
            fault,
            path: json.path,
            times: json.times,
        };
        match rule.problem() {
            Some(problem) => Err(D::Error::custom(problem)),
            None => Ok(rule),
        }
    }
}

/// Every fault name the control API knows.
pub const FAULT_NAMES: &[&str] = &[
    "none",
    "refuse",
    "hang_after_accept",
    "hang_before_headers",
    "stall_mid_stream",
    "trickle",
    "status",
    "bad_json",
    "truncated",
    "reset",
    "reset_mid_stream",
    "restart",
];

/// The rule in force, and which connection or request it applies to.
#[derive(Default)]
pub(crate) struct FaultSlot {
    rule: Mutex<FaultRule>,
}

impl FaultSlot {
    pub(crate) fn current(&self) -> FaultRule {
        self.rule.lock().unwrap().clone()
    }

    /// Put `rule` in force; returns the one it replaces.
    pub(crate) fn replace(&self, rule: FaultRule) -> FaultRule {
        std::mem::replace(&mut *self.rule.lock().unwrap(), rule)
    }

    /// Back to healthy if a restart is the rule in force: it is over.
    pub(crate) fn end_restart(&self) {
        let mut rule = self.rule.lock().unwrap();
        if matches!(rule.fault, Fault::Restart { .. }) {
            *rule = FaultRule::default();
        }
    }

    /// The fault a newly accepted connection meets before anything is read: only an
    /// unscoped `HangAfterAccept` or `Reset`. Counts towards `times`.
    pub(crate) fn take_at_accept(&self) -> Option<Fault> {
        self.take_if(|rule| {
            rule.path.is_none() && matches!(rule.fault, Fault::HangAfterAccept | Fault::Reset)
        })
    }

    /// The fault a request for `path` meets. Counts towards `times`.
    pub(crate) fn take_for_request(&self, path: &str) -> Option<Fault> {
        self.take_if(|rule| {
            !matches!(rule.fault, Fault::None) && !rule.fault.is_port_wide() && {
                rule.path
                    .as_deref()
                    .is_none_or(|prefix| path.starts_with(prefix))
            }
        })
    }

    fn take_if(&self, applies: impl Fn(&FaultRule) -> bool) -> Option<Fault> {
        let mut rule = self.rule.lock().unwrap();
        if !applies(&rule) {
            return None;
        }
        let fault = rule.fault.clone();
        match &mut rule.times {
            Some(1) => *rule = FaultRule::default(),
            Some(n) => *n -= 1,
            None => {}
        }
        Some(fault)
    }
}
