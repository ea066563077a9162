//! What keeps a sick provider from making callers wait: a circuit breaker per provider
//! instance ([`breaker`]), and the instances of a provider with their health, load and
//! contents ([`pool`]). Providers use these; the gateway sees only fast, clear errors.

pub mod breaker;
pub mod pool;

pub use breaker::{BreakerConfig, Outcome};
pub use pool::{Instance, InstanceSpec, Lease, PickError, Pool, ProbeError, ProbeFacts};
