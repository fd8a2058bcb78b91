//! The host's front door: at most a limit of requests run at once, and past that a request
//! waits its turn instead of being turned away. A spike is what the waiting room exists to
//! absorb; refusing at once while the machine is still draining work turns fans away
//! exactly when they come. So a request waits, first come first served in its line (the
//! waiting room's own polls in a line behind everyone else's, [`Priority`]), for at most
//! `max_wait` (never longer than a request may run), and at most `max_waiting` wait at once
//! (their bodies are in memory). Only a request that cannot start in time is shed, told
//! when to come back from the measured drain rate.
//!
//! The limit follows the cores ([`follow_cpu_wait`]). While the runtime runs ready work on
//! time it is `max_concurrent`, so I/O-bound requests are never held back. When ready work
//! waits longer than `scheduling_delay_target` for a core, every request in flight pays that
//! wait at each of its steps, and a hold or a payment (a dozen and more MySQL and Redis
//! round trips) pays it a dozen times over a status poll's two; so the limit drops toward
//! what the cores keep up with, and the rest wait at the door, in arrival order, once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug)]
pub struct AdmissionSettings {
    /// Requests handled at once while the cores keep up.
    pub max_concurrent: usize,
    /// The least the limit drops to while ready work waits for a core.
    pub min_concurrent: usize,
    /// How long ready work may wait for a core before the limit drops; `None` keeps the
    /// limit at `max_concurrent`.
    pub scheduling_delay_target: Option<Duration>,
    /// Requests waiting for a turn at once; past it a request is shed at once.
    pub max_waiting: usize,
    /// How long a request waits for a turn before it is shed.
    pub max_wait: Duration,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 1000,
            min_concurrent: 32,
            scheduling_delay_target: Some(Duration::from_millis(3)),
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

/// Which line a request waiting for a turn stands in: every `Normal` one is let in before
/// any `Low` one. A waiting room's polls are `Low`: the sale it protects must never wait
/// behind its own queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Normal,
    Low,
}

/// A request's turn; dropping it lets the next waiter in, if the limit allows.
#[derive(Debug)]
pub struct Turn<'a> {
    admission: &'a Admission,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.admission.drain.finished();
        let mut gate = self.admission.gate();
        gate.running -= 1;
        gate.let_in();
    }
}

#[derive(Debug)]
pub struct Admission {
    settings: AdmissionSettings,
    gate: Mutex<Gate>,
    waiting: AtomicUsize,
    drain: DrainRate,
}

/// The turns: how many run, how many may, and who waits in which line.
#[derive(Debug)]
struct Gate {
    running: usize,
    limit: usize,
    /// Indexed by `Priority as usize`; each first come first served.
    lines: [VecDeque<oneshot::Sender<()>>; 2],
}

impl Gate {
    /// Hands free turns to the waiters, `Normal` first; a waiter that gave up is skipped.
    fn let_in(&mut self) {
        while self.running < self.limit {
            let Some(waiter) = self.lines.iter_mut().find_map(VecDeque::pop_front) else {
                return;
            };
            if waiter.send(()).is_ok() {
                self.running += 1;
            }
        }
    }
}

impl Admission {
    /// `max_wait` is capped by `request_timeout`: a request never waits longer than it may run.
    pub fn new(mut settings: AdmissionSettings, request_timeout: Duration) -> Self {
        settings.max_wait = settings.max_wait.min(request_timeout);
        settings.min_concurrent = settings.min_concurrent.clamp(1, settings.max_concurrent);
        Self {
            gate: Mutex::new(Gate {
                running: 0,
                limit: settings.max_concurrent,
                lines: Default::default(),
            }),
            settings,
            waiting: AtomicUsize::new(0),
            drain: DrainRate::default(),
        }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a request may wait for its turn (and then for an instance slot).
    pub fn max_wait(&self) -> Duration {
        self.settings.max_wait
    }

    /// Requests that may run at once now.
    pub fn limit(&self) -> usize {
        self.gate().limit
    }

    /// Requests running now.
    fn running(&self) -> usize {
        self.gate().running
    }

    /// Lets `limit` requests run at once (within the settings' bounds). Requests running
    /// past a lower limit finish; they are not cut off, and nobody new starts until they
    /// have brought the count under it.
    pub fn set_limit(&self, limit: usize) {
        let mut gate = self.gate();
        gate.limit = limit.clamp(self.settings.min_concurrent, self.settings.max_concurrent);
        gate.let_in();
    }

    /// A turn now, or after waiting for one in `priority`'s line; or the request is shed.
    pub async fn admit(&self, priority: Priority, metrics: &Metrics) -> Result<Turn<'_>, Shed> {
        let (sender, mut turn) = oneshot::channel();
        let _waiting = {
            let mut gate = self.gate();
            if gate.running < gate.limit {
                gate.running += 1;
                return Ok(Turn { admission: self });
            }
            let Some(waiting) = Waiting::join(&self.waiting, self.settings.max_waiting, metrics)
            else {
                return Err(self.shed(ShedReason::QueueFull, metrics));
            };
            gate.lines[priority as usize].push_back(sender);
            waiting
        };
        let started = Instant::now();
        let given = tokio::time::timeout(self.settings.max_wait, &mut turn).await;
        metrics.queue_wait(started.elapsed());
        if matches!(given, Ok(Ok(()))) {
            return Ok(Turn { admission: self });
        }
        // Out of time; a turn handed over at the last moment is still taken.
        turn.close();
        match turn.try_recv() {
            Ok(()) => Ok(Turn { admission: self }),
            Err(_) => Err(self.shed(ShedReason::Deadline, metrics)),
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

/// How the limit moves, from how late the runtime ran ready work over the last window.
#[derive(Clone, Copy, Debug)]
pub struct LimitController {
    pub target: Duration,
    pub floor: usize,
    pub ceiling: usize,
}

impl LimitController {
    /// The next limit. Late: the requests running now, scaled by how far the delay is over
    /// the target (the wait for a core grows with the ready work ahead), at most halved per
    /// window so one late tick does not empty the house. On time: a quarter more, so the
    /// door is wide open again within about a second and a half of a burst's end.
    pub fn next(&self, limit: usize, running: usize, delay: Duration) -> usize {
        let next = if delay > self.target {
            let base = running.min(limit);
            let scaled = base as f64 * self.target.as_secs_f64() / delay.as_secs_f64();
            (scaled as usize).max(base / 2)
        } else {
            limit + limit / 4 + 1
        };
        next.clamp(self.floor, self.ceiling)
    }
}

/// Moves `admission`'s limit by the scheduling delay of the runtime it runs on, measured as
/// how late a 10 ms tick runs (a timer's wake waits in the same run queue as a request's
/// Redis or MySQL reply), averaged over 100 ms windows. Runs until aborted; does nothing
/// without a target.
pub async fn follow_cpu_wait(admission: Arc<Admission>, metrics: Arc<Metrics>) {
    const TICK: Duration = Duration::from_millis(10);
    const TICKS_PER_WINDOW: u32 = 10;
    let settings = admission.settings;
    metrics.concurrency_limit.set(admission.limit() as i64);
    let Some(target) = settings.scheduling_delay_target else {
        return;
    };
    let controller = LimitController {
        target,
        floor: settings.min_concurrent,
        ceiling: settings.max_concurrent,
    };
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let mut late = Duration::ZERO;
        for _ in 0..TICKS_PER_WINDOW {
            let due = ticks.tick().await;
            let delay = due.elapsed();
            metrics.scheduling_delay(delay);
            late += delay;
        }
        let delay = late / TICKS_PER_WINDOW;
        let limit = controller.next(admission.limit(), admission.running(), delay);
        admission.set_limit(limit);
        metrics.concurrency_limit.set(limit as i64);
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
            ..AdmissionSettings::default()
        };
        Admission::new(settings, Duration::from_secs(30))
    }

    /// Admission of up to `max_concurrent` at once, down to one, that never waits long.
    fn up_to(max_concurrent: usize) -> Admission {
        let settings = AdmissionSettings {
            max_concurrent,
            min_concurrent: 1,
            max_wait: Duration::from_millis(20),
            ..AdmissionSettings::default()
        };
        Admission::new(settings, Duration::from_secs(30))
    }

    /// A turn for a request of the sale, which must be free.
    async fn turn<'a>(admission: &'a Admission, metrics: &Metrics) -> Turn<'a> {
        admission
            .admit(Priority::Normal, metrics)
            .await
            .expect("a free turn")
    }

    const CONTROLLER: LimitController = LimitController {
        target: Duration::from_millis(5),
        floor: 32,
        ceiling: 1000,
    };

    #[test]
    fn while_work_waits_for_a_core_the_limit_drops_in_proportion_to_the_delay() {
        assert_eq!(CONTROLLER.next(1000, 400, Duration::from_millis(10)), 200);
        assert_eq!(CONTROLLER.next(1000, 400, Duration::from_millis(8)), 250);
    }

    #[test]
    fn one_late_window_at_most_halves_what_runs_and_never_goes_below_the_floor() {
        assert_eq!(CONTROLLER.next(1000, 400, Duration::from_secs(1)), 200);
        assert_eq!(CONTROLLER.next(40, 40, Duration::from_secs(1)), 32);
    }

    #[test]
    fn a_limit_far_above_what_runs_drops_from_what_runs() {
        assert_eq!(CONTROLLER.next(1000, 100, Duration::from_millis(10)), 50);
    }

    #[test]
    fn once_the_cores_keep_up_the_door_opens_wide_within_two_seconds_of_windows() {
        let mut limit = CONTROLLER.floor;
        let mut windows = 0;
        while limit < CONTROLLER.ceiling {
            limit = CONTROLLER.next(limit, limit, Duration::from_millis(1));
            windows += 1;
        }
        assert_eq!(limit, CONTROLLER.ceiling);
        assert!(windows <= 20, "{windows} windows of 100 ms");
    }

    #[tokio::test]
    async fn a_lowered_limit_lets_running_requests_finish_and_holds_new_ones_at_the_door() {
        let metrics = Metrics::default();
        let admission = up_to(4);
        let first = turn(&admission, &metrics).await;
        let second = turn(&admission, &metrics).await;
        let third = turn(&admission, &metrics).await;
        admission.set_limit(1);
        assert_eq!(admission.running(), 3, "nothing running is cut off");
        drop(first);
        drop(second);
        assert_eq!(admission.running(), 1);
        assert!(
            admission.admit(Priority::Normal, &metrics).await.is_err(),
            "the one turn left is taken"
        );
        drop(third);
        assert_eq!(admission.running(), 0);
        let only = turn(&admission, &metrics).await;
        assert!(
            admission.admit(Priority::Normal, &metrics).await.is_err(),
            "one at a time"
        );
        drop(only);
    }

    /// Starts a request that waits in `priority`'s line, says when it got its turn and gives
    /// it back; returns once the request stands in line.
    async fn stand_in_line(
        admission: &Arc<Admission>,
        metrics: &Arc<Metrics>,
        order: &tokio::sync::mpsc::UnboundedSender<Priority>,
        priority: Priority,
    ) -> tokio::task::JoinHandle<()> {
        let ahead = admission.waiting.load(Ordering::Acquire);
        let (in_line, metrics, order) = (admission.clone(), metrics.clone(), order.clone());
        let waiter = tokio::spawn(async move {
            let turn = in_line.admit(priority, &metrics).await.expect("a turn");
            order.send(priority).expect("the test listens");
            drop(turn);
        });
        while admission.waiting.load(Ordering::Acquire) == ahead {
            tokio::task::yield_now().await;
        }
        waiter
    }

    #[tokio::test]
    async fn a_waiting_request_of_the_sale_goes_before_the_waiting_rooms_polls_that_came_first() {
        let metrics = Arc::new(Metrics::default());
        let admission = Arc::new(one_at_a_time(10, Duration::from_secs(5)));
        let busy = turn(&admission, &metrics).await;
        let (order, mut let_in) = tokio::sync::mpsc::unbounded_channel();
        let poll = stand_in_line(&admission, &metrics, &order, Priority::Low).await;
        let hold = stand_in_line(&admission, &metrics, &order, Priority::Normal).await;
        drop(busy);
        let (poll, hold) = tokio::join!(poll, hold);
        poll.expect("the poll got its turn");
        hold.expect("the hold got its turn");
        assert_eq!(let_in.recv().await, Some(Priority::Normal));
        assert_eq!(let_in.recv().await, Some(Priority::Low));
    }

    #[tokio::test]
    async fn a_request_shed_from_the_line_leaves_no_turn_behind() {
        let metrics = Metrics::default();
        let admission = one_at_a_time(10, Duration::from_millis(20));
        let busy = turn(&admission, &metrics).await;
        let shed = admission.admit(Priority::Low, &metrics).await;
        assert!(shed.is_err(), "no turn within 20 ms");
        drop(busy);
        assert_eq!(admission.running(), 0);
        let _next = admission
            .admit(Priority::Low, &metrics)
            .await
            .expect("a turn at once");
        assert_eq!(admission.running(), 1);
    }

    #[tokio::test]
    async fn a_raised_limit_lets_a_waiting_request_in_at_once() {
        let metrics = Metrics::default();
        let settings = AdmissionSettings {
            max_concurrent: 2,
            min_concurrent: 1,
            max_wait: Duration::from_secs(5),
            ..AdmissionSettings::default()
        };
        let admission = Admission::new(settings, Duration::from_secs(30));
        admission.set_limit(1);
        let _running = turn(&admission, &metrics).await;
        let waiter = admission.admit(Priority::Normal, &metrics);
        let raise = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            admission.set_limit(2);
        };
        let started = Instant::now();
        let (turn, ()) = tokio::join!(waiter, raise);
        assert!(turn.is_ok(), "let in by the raised limit");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(admission.running(), 2);
    }

    #[test]
    fn the_limit_stays_within_its_bounds() {
        let admission = up_to(8);
        admission.set_limit(0);
        assert_eq!(admission.limit(), 1);
        admission.set_limit(100);
        assert_eq!(admission.limit(), 8);
    }

    /// A task that keeps the (paused) clock moving without letting the timer run stands for
    /// a core busy with other work: the ticks run late, as they do under a burst.
    #[tokio::test(start_paused = true)]
    async fn a_runtime_late_on_its_ticks_lowers_the_limit_and_one_on_time_raises_it_back() {
        let metrics = Arc::new(Metrics::default());
        let admission = Arc::new(Admission::new(
            AdmissionSettings {
                max_concurrent: 1000,
                min_concurrent: 32,
                scheduling_delay_target: Some(Duration::from_millis(3)),
                ..AdmissionSettings::default()
            },
            Duration::from_secs(30),
        ));
        let mut running = Vec::new();
        for _ in 0..400 {
            running.push(turn(&admission, &metrics).await);
        }
        let follower = tokio::spawn(follow_cpu_wait(admission.clone(), metrics.clone()));
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(30)).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(
            admission.limit(),
            32,
            "dropped to the floor under a busy core"
        );
        assert_eq!(admission.running(), 400, "nothing running was cut off");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            admission.limit(),
            1000,
            "wide open again once ticks run on time"
        );
        running.clear();
        assert_eq!(admission.running(), 0);
        follower.abort();
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
        let first = turn(&admission, &metrics).await;
        let waiter = admission.admit(Priority::Normal, &metrics);
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
        let _busy = turn(&admission, &metrics).await;
        let shed = admission
            .admit(Priority::Normal, &metrics)
            .await
            .expect_err("no turn in time");
        assert_eq!(shed.reason, ShedReason::Deadline);
        assert!((1..=60).contains(&shed.retry_after_secs));
    }

    #[tokio::test]
    async fn past_the_waiting_limit_a_request_is_shed_at_once() {
        let metrics = Metrics::default();
        let admission = one_at_a_time(0, Duration::from_secs(5));
        let _busy = turn(&admission, &metrics).await;
        let started = Instant::now();
        let shed = admission
            .admit(Priority::Normal, &metrics)
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
