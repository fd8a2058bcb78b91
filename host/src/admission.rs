//! The host's front door: at most `max_concurrent` requests run at once, and past that a
//! request waits its turn instead of being turned away. A spike is what the waiting room
//! exists to absorb; refusing at once while the machine is still draining work turns fans
//! away exactly when they come. So a request waits, first come first served (tokio's
//! semaphore is fair), for at most `max_wait` (never longer than a request may run), and
//! at most `max_waiting` wait at once (their bodies are in memory). Only a request that
//! cannot start in time is shed, told when to come back from the measured drain rate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug)]
pub struct AdmissionSettings {
    /// Requests handled at once.
    pub max_concurrent: usize,
    /// Requests waiting for a turn at once; past it a request is shed at once.
    pub max_waiting: usize,
    /// How long a request waits for a turn before it is shed.
    pub max_wait: Duration,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 1000,
            max_waiting: 20_000,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Why a request was shed, as the `requests_rejected` metric names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// `max_waiting` requests were already waiting.
    QueueFull,
    /// No turn came within `max_wait`.
    Deadline,
}

impl ShedReason {
    pub fn label(self) -> &'static str {
        match self {
            ShedReason::QueueFull => "queue_full",
            ShedReason::Deadline => "queue_deadline",
        }
    }
}

/// A shed request: why, and in how many seconds a retry should find a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shed {
    pub reason: ShedReason,
    pub retry_after_secs: u64,
}

/// A request's turn; the next waiter's comes when it is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    _permit: SemaphorePermit<'a>,
    drain: &'a DrainRate,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.drain.finished();
    }
}

#[derive(Debug)]
pub struct Admission {
    settings: AdmissionSettings,
    turns: Semaphore,
    waiting: AtomicUsize,
    drain: DrainRate,
}

impl Admission {
    /// `max_wait` is capped by `request_timeout`: a request never waits longer than it may run.
    pub fn new(mut settings: AdmissionSettings, request_timeout: Duration) -> Self {
        settings.max_wait = settings.max_wait.min(request_timeout);
        Self {
            turns: Semaphore::new(settings.max_concurrent),
            settings,
            waiting: AtomicUsize::new(0),
            drain: DrainRate::default(),
        }
    }

    /// How long a request may wait for its turn (and then for an instance slot).
    pub fn max_wait(&self) -> Duration {
        self.settings.max_wait
    }

    /// A turn now, or after waiting for one; or the request is shed.
    pub async fn admit(&self, metrics: &Metrics) -> Result<Turn<'_>, Shed> {
        if let Ok(permit) = self.turns.try_acquire() {
            return Ok(self.turn(permit));
        }
        let Some(_waiting) = Waiting::join(&self.waiting, self.settings.max_waiting, metrics)
        else {
            return Err(self.shed(ShedReason::QueueFull, metrics));
        };
        let started = Instant::now();
        let acquired = tokio::time::timeout(self.settings.max_wait, self.turns.acquire()).await;
        metrics.queue_wait(started.elapsed());
        match acquired {
            Ok(Ok(permit)) => Ok(self.turn(permit)),
            // The semaphore is never closed; a timeout is the only way to get here in use.
            Ok(Err(_)) | Err(_) => Err(self.shed(ShedReason::Deadline, metrics)),
        }
    }

    fn turn<'a>(&'a self, permit: SemaphorePermit<'a>) -> Turn<'a> {
        Turn {
            _permit: permit,
            drain: &self.drain,
        }
    }

    fn shed(&self, reason: ShedReason, metrics: &Metrics) -> Shed {
        metrics.rejected(reason.label());
        let queued = self.waiting.load(Ordering::Relaxed) as u64 + 1;
        Shed {
            reason,
            retry_after_secs: retry_after_secs(queued, self.drain.per_second()),
        }
    }
}

/// When a shed request should come back: when the queue ahead of it has drained at the
/// measured rate, at least 1 s and at most 60 s (so a stalled server does not send clients
/// away for hours, and a fast one does not invite them back at once).
pub fn retry_after_secs(queued: u64, drained_per_second: f64) -> u64 {
    if drained_per_second < 1.0 {
        return 60;
    }
    ((queued as f64 / drained_per_second).ceil() as u64).clamp(1, 60)
}

/// A place among the waiting requests, counted (and shown in the metrics) while it lives.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    metrics: &'a Metrics,
}

impl<'a> Waiting<'a> {
    fn join(count: &'a AtomicUsize, limit: usize, metrics: &'a Metrics) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        metrics.requests_waiting.inc();
        Some(Self { count, metrics })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.metrics.requests_waiting.dec();
    }
}

/// Requests finished per second, measured over the last second or so: counting is one
/// atomic add per request, and the rate is computed only when a request is shed.
#[derive(Debug, Default)]
struct DrainRate {
    finished: AtomicU64,
    window: Mutex<Option<Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    finished_before: u64,
    per_second: f64,
}

impl DrainRate {
    fn finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    fn per_second(&self) -> f64 {
        let now = Instant::now();
        let finished = self.finished.load(Ordering::Relaxed);
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let current = window.get_or_insert(Window {
            started: now,
            finished_before: finished,
            per_second: 0.0,
        });
        let elapsed = now.duration_since(current.started);
        if elapsed >= Duration::from_secs(1) {
            *current = Window {
                started: now,
                finished_before: finished,
                per_second: (finished - current.finished_before) as f64 / elapsed.as_secs_f64(),
            };
        }
        current.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admission of one request at a time, `max_waiting` waiting at most `max_wait`.
    fn one_at_a_time(max_waiting: usize, max_wait: Duration) -> Admission {
        let settings = AdmissionSettings {
            max_concurrent: 1,
            max_waiting,
            max_wait,
        };
        Admission::new(settings, Duration::from_secs(30))
    }

    #[test]
    fn a_shed_request_comes_back_when_the_queue_ahead_has_drained() {
        assert_eq!(retry_after_secs(5_000, 1_000.0), 5);
        assert_eq!(retry_after_secs(1, 1_000.0), 1);
        assert_eq!(retry_after_secs(1_000_000, 1_000.0), 60);
    }

    #[test]
    fn a_server_that_drains_nothing_sends_clients_away_for_a_minute() {
        assert_eq!(retry_after_secs(10, 0.0), 60);
    }

    #[tokio::test]
    async fn a_request_past_the_limit_waits_for_a_turn_instead_of_being_refused() {
        let metrics = Metrics::default();
        let admission = one_at_a_time(10, Duration::from_secs(5));
        let first = admission.admit(&metrics).await.expect("a turn at once");
        let waiter = admission.admit(&metrics);
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(first);
        };
        let (turn, ()) = tokio::join!(waiter, release);
        assert!(turn.is_ok(), "the waiter got the released turn");
    }

    #[tokio::test]
    async fn a_request_that_cannot_start_in_time_is_shed_with_a_retry_after() {
        let metrics = Metrics::default();
        let admission = one_at_a_time(10, Duration::from_millis(50));
        let _busy = admission.admit(&metrics).await.expect("a turn at once");
        let shed = admission
            .admit(&metrics)
            .await
            .expect_err("no turn in time");
        assert_eq!(shed.reason, ShedReason::Deadline);
        assert!((1..=60).contains(&shed.retry_after_secs));
    }

    #[tokio::test]
    async fn past_the_waiting_limit_a_request_is_shed_at_once() {
        let metrics = Metrics::default();
        let admission = one_at_a_time(0, Duration::from_secs(5));
        let _busy = admission.admit(&metrics).await.expect("a turn at once");
        let started = Instant::now();
        let shed = admission
            .admit(&metrics)
            .await
            .expect_err("no room to wait");
        assert_eq!(shed.reason, ShedReason::QueueFull);
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn the_wait_is_never_longer_than_a_request_may_run() {
        let admission = Admission::new(AdmissionSettings::default(), Duration::from_secs(2));
        assert_eq!(admission.settings.max_wait, Duration::from_secs(2));
    }
}
