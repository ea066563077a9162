//! A provider's interchangeable instances: which one a call goes to, how many calls each
//! holds, whether each is healthy (breaker, probes, the supervisor's view), and what each
//! has (loaded and installed models, queue length) as the last probe saw it.

use super::breaker::{self, Admission, BreakerConfig, Outcome};
use crate::runtime::ProviderBoard;
use futures::future::BoxFuture;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// One instance as configured.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub name: String,
    pub url: String,
    pub weight: u32,
    /// Calls at once (0 = no limit) and how many more may wait.
    pub max_concurrent: usize,
    pub max_queue: usize,
}

/// What the last probe found.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub probed_at: Option<Instant>,
    pub probe_ok: bool,
    pub probe_latency_ms: f64,
    pub probe_error: Option<String>,
    pub version: Option<String>,
    /// Models loaded in memory now (Ollama `/api/ps`).
    pub loaded: Vec<String>,
    /// Models installed (Ollama `/api/tags`), refreshed less often.
    pub installed: Vec<String>,
    pub installed_at: Option<Instant>,
    /// Prompts queued and running (ComfyUI `/queue`).
    pub queue_len: Option<u32>,
}

/// What a probe reports.
#[derive(Debug, Clone, Default)]
pub struct ProbeFacts {
    pub version: Option<String>,
    pub loaded: Option<Vec<String>>,
    pub installed: Option<Vec<String>>,
    pub queue_len: Option<u32>,
}

pub struct Instance {
    pub provider: String,
    pub spec: InstanceSpec,
    cfg: BreakerConfig,
    breaker: Mutex<breaker::State>,
    outstanding: AtomicUsize,
    slots: Option<Arc<Semaphore>>,
    waiting: AtomicUsize,
    /// Bumped when the instance is found wedged: calls waiting on it give up.
    wedge: watch::Sender<u64>,
    facts: RwLock<Facts>,
    last_error: Mutex<Option<String>>,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
}

/// Why no instance could take a call.
#[derive(Debug, Clone, PartialEq)]
pub enum PickError {
    /// Every instance is down, open or wedged: `reason` names each.
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Every instance is busy and its queue full.
    Overloaded {
        reason: String,
        retry_after: Duration,
    },
}

/// A call's hold on an instance; report its outcome before dropping it.
pub struct Lease {
    pub instance: Arc<Instance>,
    _permit: Option<OwnedSemaphorePermit>,
    trial: bool,
    reported: bool,
    epoch: u64,
}

impl Instance {
    fn new(provider: &str, spec: InstanceSpec, cfg: BreakerConfig) -> Self {
        let slots =
            (spec.max_concurrent > 0).then(|| Arc::new(Semaphore::new(spec.max_concurrent)));
        Self {
            provider: provider.to_string(),
            spec,
            cfg,
            breaker: Mutex::default(),
            outstanding: AtomicUsize::new(0),
            slots,
            waiting: AtomicUsize::new(0),
            wedge: watch::channel(0).0,
            facts: RwLock::default(),
            last_error: Mutex::default(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// `provider/instance`, as the supervisor's `provides` and the errors name it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.spec.name)
    }

    pub fn facts(&self) -> Facts {
        self.facts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn breaker(&self) -> breaker::State {
        self.breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note_error(&self, detail: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(detail.to_string());
    }

    /// Report what happened to a call or a probe.
    pub fn report(&self, outcome: Outcome, detail: &str) {
        if !matches!(outcome, Outcome::Success | Outcome::ClientError) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.note_error(detail);
        }
        let mut b = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        let before = b.name();
        *b = breaker::on_outcome(&b, outcome, detail, Instant::now(), &self.cfg);
        if b.name() != before {
            tracing::info!(instance = %self.label(), from = before, to = b.name(), "{detail}");
        }
    }

    /// The instance does not answer at all (a probe timed out): open the breaker and fail
    /// the calls still waiting for their first byte.
    pub fn mark_wedged(&self, detail: &str) {
        self.note_error(detail);
        {
            let mut b = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
            let was_open = matches!(*b, breaker::State::Open { .. });
            *b = breaker::force_open(&b, &format!("wedged: {detail}"), Instant::now(), &self.cfg);
            if !was_open {
                tracing::warn!(instance = %self.label(), "wedged: {detail}");
            }
        }
        self.wedge.send_modify(|e| *e += 1);
    }

    /// Resolves when the instance is found wedged after `epoch`.
    pub async fn wedged_after(&self, epoch: u64) {
        let mut rx = self.wedge.subscribe();
        let _ = rx.wait_for(|e| *e != epoch).await;
    }

    fn epoch(&self) -> u64 {
        *self.wedge.borrow()
    }

    pub fn update_facts(&self, f: impl FnOnce(&mut Facts)) {
        f(&mut self.facts.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// The trial is out no more: the next call may be the one that checks the instance.
    fn give_back_trial(&self) {
        let mut b = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        if let breaker::State::HalfOpen { trial_out, .. } = &mut *b {
            *trial_out = false;
        }
    }

    fn free_slots(&self) -> usize {
        self.slots
            .as_ref()
            .map_or(usize::MAX, |s| s.available_permits())
    }
}

impl Lease {
    pub fn report(mut self, outcome: Outcome, detail: &str) {
        self.reported = true;
        self.instance.report(outcome, detail);
    }

    /// The wedge epoch this call started in (see [`Instance::wedged_after`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.instance.outstanding.fetch_sub(1, Ordering::Relaxed);
        // A trial dropped without a report (the caller went away) must not leave the
        // breaker half-open forever.
        if self.trial && !self.reported {
            self.instance.give_back_trial();
        }
    }
}

/// A place in an instance's queue, given back however the wait ends: a slot, the
/// deadline, or the call dropped while waiting (its client went away). A place not given
/// back would count against `max_queue` for the life of the process: after a few clients
/// gave up while queued, every call that found the slots busy was shed.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    /// A place if fewer than `max` wait: the bound holds exactly, also when calls on
    /// several threads join at once.
    fn try_join(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(waiting))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a call enters an instance: a slot at once (`None`: the instance has no limit),
/// or a place in its queue.
enum Entry<'a> {
    Slot(Option<OwnedSemaphorePermit>),
    Queued(Queued<'a>, Arc<Semaphore>),
}

/// A free slot, else a place in the queue if it has room. A call that finds a free slot
/// never touches the queue's count (counted for a moment, it could make a queue of one
/// look full to a call arriving on another thread).
fn enter(inst: &Instance) -> Option<Entry<'_>> {
    let Some(slots) = &inst.slots else {
        return Some(Entry::Slot(None));
    };
    match slots.clone().try_acquire_owned() {
        Ok(permit) => Some(Entry::Slot(Some(permit))),
        Err(_) => Queued::try_join(&inst.waiting, inst.spec.max_queue)
            .map(|q| Entry::Queued(q, slots.clone())),
    }
}

/// A provider's instances.
pub struct Pool {
    pub provider: String,
    pub instances: Vec<Arc<Instance>>,
    board: RwLock<Option<Arc<ProviderBoard>>>,
}

/// How well an instance suits a call: lower is better (0: has the model loaded, ...).
pub type Preference<'a> = &'a (dyn Fn(&Instance) -> u8 + Sync);

impl Pool {
    pub fn new(provider: &str, specs: Vec<InstanceSpec>, cfg: BreakerConfig) -> Self {
        Self {
            provider: provider.to_string(),
            instances: specs
                .into_iter()
                .map(|s| Arc::new(Instance::new(provider, s, cfg)))
                .collect(),
            board: RwLock::default(),
        }
    }

    /// After a config reload rebuilt this provider: take over the breaker state, last
    /// error and probe facts of every instance that kept its name and URL, so a reload
    /// does not forget that an instance is failing (or reopen a trial it passed).
    pub fn inherit(&self, old: &Pool) {
        for inst in &self.instances {
            let Some(prev) = old
                .instances
                .iter()
                .find(|o| o.spec.name == inst.spec.name && o.spec.url == inst.spec.url)
            else {
                continue;
            };
            *inst.breaker.lock().unwrap_or_else(PoisonError::into_inner) = prev.breaker();
            *inst
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = prev.last_error();
            *inst.facts.write().unwrap_or_else(PoisonError::into_inner) = prev.facts();
        }
    }

    /// The supervisor's view of which services are down (`provider` or `provider/instance`).
    pub fn attach_board(&self, board: Arc<ProviderBoard>) {
        *self.board.write().unwrap_or_else(PoisonError::into_inner) = Some(board);
    }

    fn service_down(&self, inst: &Instance) -> Option<String> {
        let board = self.board.read().unwrap_or_else(PoisonError::into_inner);
        let board = board.as_ref()?;
        board
            .down_reason(&inst.label())
            .or_else(|| board.down_reason(&self.provider))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Instance>> {
        self.instances.iter().find(|i| i.spec.name == name)
    }

    /// Pick an instance for a call: healthy ones only, the best by `prefer`, then the
    /// least outstanding calls per unit of weight. Waits (until `deadline`) only for a slot
    /// in a queue with room.
    pub async fn acquire(
        &self,
        prefer: Preference<'_>,
        deadline: Instant,
    ) -> Result<Lease, PickError> {
        self.acquire_excluding(prefer, deadline, &[]).await
    }

    /// As [`Pool::acquire`], never choosing the instances named in `skip` (already tried).
    pub async fn acquire_excluding(
        &self,
        prefer: Preference<'_>,
        deadline: Instant,
        skip: &[String],
    ) -> Result<Lease, PickError> {
        self.pick(prefer, deadline, skip, true).await
    }

    /// As [`Pool::acquire_excluding`], for a call that does no generating work (a model
    /// list, a version, a download): it takes none of the instance's `max_concurrent`
    /// slots, so it is never queued behind generations (Ollama answers those at once).
    /// Breakers and down services still refuse it.
    pub async fn acquire_unslotted(
        &self,
        prefer: Preference<'_>,
        deadline: Instant,
        skip: &[String],
    ) -> Result<Lease, PickError> {
        self.pick(prefer, deadline, skip, false).await
    }

    async fn pick(
        &self,
        prefer: Preference<'_>,
        deadline: Instant,
        skip: &[String],
        slotted: bool,
    ) -> Result<Lease, PickError> {
        let now = Instant::now();
        let mut refused: Vec<String> = Vec::new();
        let mut retry: Option<Duration> = None;
        let mut candidates: Vec<(&Arc<Instance>, Admission)> = Vec::new();
        for inst in &self.instances {
            if skip.contains(&inst.spec.name) {
                continue;
            }
            if let Some(why) = self.service_down(inst) {
                refused.push(format!("{} is down: {why}", inst.label()));
                continue;
            }
            let admission = {
                let b = inst.breaker.lock().unwrap_or_else(PoisonError::into_inner);
                breaker::admit(&b, now).0
            };
            match admission {
                Admission::No {
                    reason,
                    retry_after,
                } => {
                    refused.push(format!("{}: breaker open ({reason})", inst.label()));
                    retry = Some(retry.map_or(retry_after, |r| r.min(retry_after)));
                }
                // Whether it has room is `enter`'s to find, with the slot or the place.
                a => candidates.push((inst, a)),
            }
        }
        candidates.sort_by(|(a, _), (b, _)| {
            let load = |i: &Instance| {
                let free = if !slotted || i.free_slots() > 0 { 0 } else { 1 };
                (
                    free,
                    (i.outstanding() as f64 + 1.0) / f64::from(i.spec.weight.max(1)),
                )
            };
            prefer(a)
                .cmp(&prefer(b))
                .then(load(a).0.cmp(&load(b).0))
                .then(load(a).1.total_cmp(&load(b).1))
        });
        // The best candidate with a free slot or room in its queue: another call may have
        // filled the first one since the scan.
        let Some((inst, admission, entry)) = candidates.iter().find_map(|(inst, a)| {
            let entry = if slotted {
                enter(inst)
            } else {
                Some(Entry::Slot(None))
            };
            entry.map(|e| (*inst, a.clone(), e))
        }) else {
            let busy = candidates.iter().map(|(i, _)| i.label()).collect();
            return Err(self.none_admits(refused, busy, retry));
        };
        let (permit, waited) = match entry {
            Entry::Slot(permit) => (permit, false),
            Entry::Queued(queued, slots) => {
                let got = tokio::time::timeout_at(deadline.into(), slots.acquire_owned()).await;
                drop(queued);
                match got {
                    Ok(Ok(p)) => (Some(p), true),
                    _ => {
                        return Err(PickError::Overloaded {
                            reason: format!(
                                "{} stayed busy until the request's deadline",
                                inst.label()
                            ),
                            retry_after: Duration::from_secs(1),
                        })
                    }
                }
            }
        };
        // The breaker is asked again with a slot in hand: a half-open instance's one
        // trial is taken only by a call about to be sent (a trial held while queued
        // would refuse every other call for that long), and a wait may have seen the
        // instance fail.
        let mut trial = false;
        if admission != Admission::Yes || waited {
            let mut b = inst.breaker.lock().unwrap_or_else(PoisonError::into_inner);
            let (a, next) = breaker::admit(&b, Instant::now());
            match a {
                Admission::No {
                    reason,
                    retry_after,
                } => {
                    return Err(PickError::Unavailable {
                        reason: format!("{}: breaker open ({reason})", inst.label()),
                        retry_after: Some(retry_after),
                    });
                }
                Admission::Trial => {
                    *b = next;
                    trial = true;
                }
                Admission::Yes => {}
            }
        }
        inst.outstanding.fetch_add(1, Ordering::Relaxed);
        inst.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            instance: inst.clone(),
            _permit: permit,
            trial,
            reported: false,
            epoch: inst.epoch(),
        })
    }

    /// Why no instance takes the call: all busy with full queues (503 `OVERLOADED`),
    /// or some down or open (unavailable).
    fn none_admits(
        &self,
        mut refused: Vec<String>,
        busy: Vec<String>,
        retry: Option<Duration>,
    ) -> PickError {
        if !busy.is_empty() && refused.is_empty() {
            return PickError::Overloaded {
                reason: format!(
                    "every instance is busy and its queue full ({})",
                    busy.join(", ")
                ),
                retry_after: Duration::from_secs(1),
            };
        }
        refused.extend(busy.iter().map(|b| format!("{b}: busy, queue full")));
        PickError::Unavailable {
            reason: if refused.is_empty() {
                format!("provider {} has no instances", self.provider)
            } else {
                refused.join("; ")
            },
            retry_after: retry,
        }
    }

    /// Probe every instance every `every`, each bounded by `timeout`: a timeout marks
    /// the instance wedged, a failure counts toward its breaker, a success closes it and
    /// refreshes what it has.
    pub fn spawn_prober(
        self: &Arc<Self>,
        every: Duration,
        timeout: Duration,
        shutdown: CancellationToken,
        probe: Prober,
    ) {
        for inst in &self.instances {
            let (pool, inst, probe, shutdown) =
                (self.clone(), inst.clone(), probe.clone(), shutdown.clone());
            tokio::spawn(async move {
                // The first look is on demand (health, a request); then every period.
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    // A service the supervisor reports down is not knocked on: its state
                    // comes from the supervisor until it runs again.
                    if pool.service_down(&inst).is_some() {
                        continue;
                    }
                    probe_once(&inst, timeout, &probe).await;
                }
            });
        }
    }
}

/// Looks at one instance: what it has loaded and installed, or why it cannot tell.
pub type Prober =
    Arc<dyn Fn(Arc<Instance>) -> BoxFuture<'static, Result<ProbeFacts, ProbeError>> + Send + Sync>;

/// How a probe failed.
#[derive(Debug, Clone)]
pub enum ProbeError {
    /// Refused / unreachable: counts like a connect failure.
    Unreachable(String),
    /// It answered, wrongly (5xx, bad body).
    Failed(String),
}

/// One probe of one instance, bounded by `timeout`.
pub async fn probe_once(inst: &Arc<Instance>, timeout: Duration, probe: &Prober) {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, probe(inst.clone())).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = Instant::now();
    match result {
        Err(_) => {
            let detail = format!(
                "no answer to a health probe within {:.1} s",
                timeout.as_secs_f64()
            );
            inst.update_facts(|f| {
                f.probed_at = Some(now);
                f.probe_ok = false;
                f.probe_latency_ms = latency_ms;
                f.probe_error = Some(detail.clone());
            });
            inst.mark_wedged(&detail);
        }
        Ok(Err(e)) => {
            let (outcome, detail) = match e {
                ProbeError::Unreachable(d) => (Outcome::ConnectFailure, d),
                ProbeError::Failed(d) => (Outcome::ServerError, d),
            };
            inst.update_facts(|f| {
                f.probed_at = Some(now);
                f.probe_ok = false;
                f.probe_latency_ms = latency_ms;
                f.probe_error = Some(detail.clone());
            });
            inst.report(outcome, &detail);
        }
        Ok(Ok(found)) => {
            inst.update_facts(|f| {
                f.probed_at = Some(now);
                f.probe_ok = true;
                f.probe_latency_ms = latency_ms;
                f.probe_error = None;
                if found.version.is_some() {
                    f.version = found.version;
                }
                if let Some(l) = found.loaded {
                    f.loaded = l;
                }
                if let Some(i) = found.installed {
                    f.installed = i;
                    f.installed_at = Some(now);
                }
                if found.queue_len.is_some() {
                    f.queue_len = found.queue_len;
                }
            });
            inst.report(Outcome::Success, "probe answered");
        }
    }
}

/// An instance as health answers show it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub url: String,
    pub weight: u32,
    pub breaker: &'static str,
    pub breaker_reason: Option<String>,
    pub outstanding: usize,
    /// Calls queued for one of the instance's `max_concurrent` slots.
    pub waiting: usize,
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub probe_ok: Option<bool>,
    pub probe_latency_ms: Option<f64>,
    /// How old the last probe is.
    pub probe_age_s: Option<f64>,
    pub loaded: Vec<String>,
    pub queue_len: Option<u32>,
}

impl Instance {
    pub fn view(&self) -> InstanceView {
        let f = self.facts();
        let b = self.breaker();
        InstanceView {
            url: self.spec.url.clone(),
            weight: self.spec.weight,
            breaker: b.name(),
            breaker_reason: match b {
                breaker::State::Closed { .. } => None,
                breaker::State::Open { reason, .. } | breaker::State::HalfOpen { reason, .. } => {
                    Some(reason)
                }
            },
            outstanding: self.outstanding(),
            waiting: self.waiting.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error(),
            probe_ok: f.probed_at.map(|_| f.probe_ok),
            probe_latency_ms: f
                .probed_at
                .map(|_| (f.probe_latency_ms * 10.0).round() / 10.0),
            probe_age_s: f
                .probed_at
                .map(|t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
            loaded: f.loaded,
            queue_len: f.queue_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, max: usize, queue: usize) -> InstanceSpec {
        InstanceSpec {
            name: name.into(),
            url: format!("http://{name}"),
            weight: 1,
            max_concurrent: max,
            max_queue: queue,
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// One instance with one slot and a queue of one, its slot taken.
    async fn one_slot_taken() -> (Arc<Pool>, Lease) {
        let pool = Arc::new(Pool::new(
            "ollama",
            vec![spec("a", 1, 1)],
            BreakerConfig::default(),
        ));
        let held = pool.acquire(&|_| 0, later()).await.unwrap();
        (pool, held)
    }

    #[tokio::test]
    async fn least_outstanding_and_preference_decide() {
        let pool = Pool::new(
            "ollama",
            vec![spec("a", 0, 0), spec("b", 0, 0)],
            BreakerConfig::default(),
        );
        let none: Preference<'_> = &|_| 0;
        let first = pool.acquire(none, later()).await.unwrap();
        let second = pool.acquire(none, later()).await.unwrap();
        assert_ne!(
            first.instance.spec.name, second.instance.spec.name,
            "spread by outstanding count"
        );
        // A preference (e.g. "has the model loaded") wins over load.
        let only_b: Preference<'_> = &|i: &Instance| u8::from(i.spec.name != "b");
        let third = pool.acquire(only_b, later()).await.unwrap();
        assert_eq!(third.instance.spec.name, "b");
        drop((first, second, third));
    }

    #[tokio::test]
    async fn an_open_instance_is_skipped_and_all_open_is_unavailable_at_once() {
        let pool = Pool::new(
            "ollama",
            vec![spec("a", 0, 0), spec("b", 0, 0)],
            BreakerConfig::default(),
        );
        pool.get("a").unwrap().mark_wedged("no answer to a probe");
        let none: Preference<'_> = &|_| 0;
        for _ in 0..3 {
            let l = pool.acquire(none, later()).await.unwrap();
            assert_eq!(l.instance.spec.name, "b");
        }
        pool.get("b").unwrap().mark_wedged("no answer to a probe");
        let started = Instant::now();
        match pool.acquire(none, later()).await {
            Err(PickError::Unavailable {
                reason,
                retry_after,
            }) => {
                assert!(
                    reason.contains("ollama/a") && reason.contains("ollama/b"),
                    "{reason}"
                );
                assert!(retry_after.is_some());
            }
            other => panic!("{:?}", other.map(|l| l.instance.label())),
        }
        // At once, not at the deadline (5 s); the bound leaves room for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_full_queue_is_overloaded_and_a_free_slot_is_waited_for() {
        let (pool, held) = one_slot_taken().await;
        let none: Preference<'_> = &|_| 0;
        // One may wait for the slot...
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            let none: Preference<'_> = &|_| 0;
            p2.acquire(none, later())
                .await
                .map(|l| l.instance.spec.name.clone())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...a third finds the queue full.
        assert!(matches!(
            pool.acquire(none, later()).await,
            Err(PickError::Overloaded { .. })
        ));
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), "a");
    }

    #[tokio::test]
    async fn a_call_dropped_while_queued_gives_its_place_back() {
        let (pool, held) = one_slot_taken().await;
        for _ in 0..3 {
            // A caller queues, then goes away before a slot frees up.
            let p2 = pool.clone();
            let waiter = tokio::spawn(async move {
                let none: Preference<'_> = &|_| 0;
                p2.acquire(none, later()).await.is_ok()
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(pool.get("a").unwrap().waiting.load(Ordering::Relaxed), 1);
            waiter.abort();
            assert!(waiter.await.unwrap_err().is_cancelled());
            assert_eq!(pool.get("a").unwrap().waiting.load(Ordering::Relaxed), 0);
        }
        // The queue's one place is free: the next caller waits instead of being shed.
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            let none: Preference<'_> = &|_| 0;
            p2.acquire(none, later()).await.is_ok()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "admitted once the slot freed");
    }

    #[test]
    fn a_queue_admits_exactly_its_size() {
        let waiting = AtomicUsize::new(0);
        let first = Queued::try_join(&waiting, 2).expect("room for two");
        let second = Queued::try_join(&waiting, 2).expect("room for two");
        assert!(
            Queued::try_join(&waiting, 2).is_none(),
            "a third is refused"
        );
        drop(first);
        let third = Queued::try_join(&waiting, 2).expect("a place given back is free");
        assert_eq!(waiting.load(Ordering::Relaxed), 2);
        drop((second, third));
        assert_eq!(waiting.load(Ordering::Relaxed), 0);
        assert!(
            Queued::try_join(&waiting, 0).is_none(),
            "a queue of 0 admits none"
        );
    }

    /// An instance whose breaker offers a trial, its one slot held by a call sent before
    /// it failed.
    async fn half_open_with_its_slot_taken() -> (Pool, Lease) {
        let cfg = BreakerConfig {
            open_for: Duration::from_millis(10),
            ..BreakerConfig::default()
        };
        let pool = Pool::new("ollama", vec![spec("a", 1, 1)], cfg);
        let none: Preference<'_> = &|_| 0;
        let held = pool.acquire(none, later()).await.unwrap();
        pool.get("a").unwrap().mark_wedged("probe timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
        (pool, held)
    }

    #[tokio::test]
    async fn a_call_waiting_for_a_slot_holds_no_trial() {
        let (pool, held) = half_open_with_its_slot_taken().await;
        let pool = Arc::new(pool);
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            let none: Preference<'_> = &|_| 0;
            p2.acquire(none, later()).await.map(|l| l.is_trial())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.get("a").unwrap().waiting.load(Ordering::Relaxed), 1);
        assert!(
            !matches!(
                pool.get("a").unwrap().breaker(),
                breaker::State::HalfOpen {
                    trial_out: true,
                    ..
                }
            ),
            "the trial is still free while the call waits"
        );
        // With the slot, the call takes the trial.
        drop(held);
        assert!(
            waiter.await.unwrap().expect("admitted"),
            "sent as the trial"
        );
    }

    #[tokio::test]
    async fn a_call_that_never_gets_a_slot_leaves_the_trial_to_the_next() {
        let (pool, held) = half_open_with_its_slot_taken().await;
        let none: Preference<'_> = &|_| 0;
        // Queued, then out of time.
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            pool.acquire(none, soon).await,
            Err(PickError::Overloaded { .. })
        ));
        drop(held);
        let lease = pool
            .acquire(none, later())
            .await
            .expect("the trial is free");
        assert!(lease.is_trial());
    }

    #[tokio::test]
    async fn a_full_first_choice_sends_the_call_to_the_next_instance() {
        let pool = Pool::new(
            "ollama",
            vec![spec("a", 1, 0), spec("b", 1, 0)],
            BreakerConfig::default(),
        );
        // Every call prefers a; once a's one slot is taken, b takes the next.
        let prefer_a: Preference<'_> = &|i: &Instance| u8::from(i.spec.name != "a");
        let first = pool.acquire(prefer_a, later()).await.unwrap();
        assert_eq!(first.instance.spec.name, "a");
        let second = pool.acquire(prefer_a, later()).await.unwrap();
        assert_eq!(second.instance.spec.name, "b");
        match pool.acquire(prefer_a, later()).await {
            Err(PickError::Overloaded { reason, .. }) => {
                assert!(
                    reason.contains("ollama/a") && reason.contains("ollama/b"),
                    "{reason}"
                );
            }
            other => panic!("{:?}", other.map(|l| l.instance.label())),
        }
        drop((first, second));
    }

    #[tokio::test]
    async fn a_wedge_wakes_calls_waiting_on_the_instance() {
        let pool = Pool::new(
            "comfyui",
            vec![spec("main", 0, 0)],
            BreakerConfig::default(),
        );
        let none: Preference<'_> = &|_| 0;
        let lease = pool.acquire(none, later()).await.unwrap();
        let inst = lease.instance.clone();
        let epoch = lease.epoch();
        let waiting = tokio::spawn(async move { inst.wedged_after(epoch).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        pool.get("main").unwrap().mark_wedged("probe timed out");
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(pool.get("main").unwrap().breaker().name(), "open");
    }
}
