//! Bounded work: a kind of work (drawing images, running the end-to-end check) runs at
//! most `max_concurrent` at a time, at most `max_queue` more wait, and beyond that a
//! request is shed at once (503 `OVERLOADED` with `Retry-After`) instead of piling up
//! memory and latency for everyone.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counters of one kind of work (shown in health answers and `/metrics`).
#[derive(Debug, Default, Serialize)]
pub struct WorkStats {
    /// Reservations taken (each later started or given up).
    pub admitted: AtomicU64,
    /// Requests shed because the queue was full.
    pub rejected: AtomicU64,
    /// Work that started.
    pub started: AtomicU64,
    /// Work stopped before its end (cancelled, timed out, caller gone).
    pub stopped: AtomicU64,
    /// Running now, and the most ever at once.
    pub running: AtomicUsize,
    pub peak_running: AtomicUsize,
    /// Waiting for a slot now.
    pub waiting: AtomicUsize,
}

/// A snapshot of [`WorkStats`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WorkFigures {
    pub max_concurrent: usize,
    pub max_queue: usize,
    pub running: usize,
    pub waiting: usize,
    pub peak_running: usize,
    pub admitted: u64,
    pub rejected: u64,
    pub started: u64,
    pub stopped: u64,
}

/// Clones share the same slots and figures.
#[derive(Clone)]
pub struct WorkLimiter {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    max_queue: usize,
    stats: Arc<WorkStats>,
}

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    pub waiting: usize,
    pub retry_after_s: u64,
}

/// A place in the queue; [`Ticket::start`] waits for a slot.
pub struct Ticket {
    slots: Arc<Semaphore>,
    stats: Arc<WorkStats>,
    waiting: bool,
}

/// A running piece of work; dropping it frees the slot.
#[derive(Debug)]
pub struct Running {
    _permit: OwnedSemaphorePermit,
    stats: Arc<WorkStats>,
    finished: bool,
}

impl WorkLimiter {
    pub fn new(max_concurrent: usize, max_queue: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_queue,
            stats: Arc::default(),
        }
    }

    /// Take a place, or say the queue is full. Everything running or waiting counts
    /// against `max_concurrent + max_queue`.
    pub fn reserve(&self) -> Result<Ticket, Overloaded> {
        let s = &self.stats;
        let mut waiting = s.waiting.load(Ordering::Relaxed);
        loop {
            let running = s.running.load(Ordering::Relaxed);
            if running + waiting >= self.max_concurrent + self.max_queue {
                s.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Overloaded {
                    waiting,
                    retry_after_s: 1 + waiting as u64 / self.max_concurrent as u64,
                });
            }
            match s.waiting.compare_exchange(
                waiting,
                waiting + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => waiting = now,
            }
        }
        s.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            slots: self.slots.clone(),
            stats: self.stats.clone(),
            waiting: true,
        })
    }

    pub fn figures(&self) -> WorkFigures {
        let s = &self.stats;
        WorkFigures {
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
            running: s.running.load(Ordering::Relaxed),
            waiting: s.waiting.load(Ordering::Relaxed),
            peak_running: s.peak_running.load(Ordering::Relaxed),
            admitted: s.admitted.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            started: s.started.load(Ordering::Relaxed),
            stopped: s.stopped.load(Ordering::Relaxed),
        }
    }

    /// How many wait ahead of a new reservation (for queue positions).
    pub fn waiting(&self) -> usize {
        self.stats.waiting.load(Ordering::Relaxed)
    }
}

impl Ticket {
    /// Wait for a slot (cancel-safe: dropping the future gives the place up).
    pub async fn start(mut self) -> Running {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.waiting = false;
        let s = &self.stats;
        s.waiting.fetch_sub(1, Ordering::AcqRel);
        s.started.fetch_add(1, Ordering::Relaxed);
        let now = s.running.fetch_add(1, Ordering::AcqRel) + 1;
        s.peak_running.fetch_max(now, Ordering::Relaxed);
        Running {
            _permit: permit,
            stats: self.stats.clone(),
            finished: false,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.waiting {
            self.stats.waiting.fetch_sub(1, Ordering::AcqRel);
            self.stats.stopped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Running {
    /// The work ran to its end (success or its own failure), rather than being stopped.
    pub fn finished(mut self) {
        self.finished = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stats.running.fetch_sub(1, Ordering::AcqRel);
        if !self.finished {
            self.stats.stopped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_test::{assert_pending, assert_ready, task};

    #[test]
    fn at_most_max_concurrent_run_and_the_queue_is_bounded() {
        let l = WorkLimiter::new(2, 1);
        let a = l.reserve().unwrap();
        let b = l.reserve().unwrap();
        let c = l.reserve().unwrap();
        // Two may run; one waits; a fourth is shed.
        let shed = l.reserve().err().unwrap();
        assert_eq!(shed.waiting, 3);
        let mut ra = task::spawn(a.start());
        let mut rb = task::spawn(b.start());
        let mut rc = task::spawn(c.start());
        let running_a = assert_ready!(ra.poll());
        let _running_b = assert_ready!(rb.poll());
        assert_pending!(rc.poll());
        assert_eq!(l.figures().running, 2);
        assert_eq!(l.figures().waiting, 1);
        // A slot frees: the waiting one runs, woken by the release.
        running_a.finished();
        assert!(rc.is_woken());
        let running_c = assert_ready!(rc.poll());
        drop(running_c); // stopped before its end
        let f = l.figures();
        assert_eq!((f.running, f.waiting, f.peak_running), (1, 0, 2));
        assert_eq!((f.admitted, f.rejected, f.started, f.stopped), (3, 1, 3, 1));
    }

    #[test]
    fn giving_up_a_place_in_the_queue_frees_it() {
        let l = WorkLimiter::new(1, 1);
        let a = l.reserve().unwrap();
        let mut running = task::spawn(a.start());
        let _r = assert_ready!(running.poll());
        let waiting = l.reserve().unwrap();
        assert!(l.reserve().is_err());
        drop(waiting);
        assert!(l.reserve().is_ok());
        assert_eq!(l.figures().stopped, 2);
    }
}
