//! The waiting room's rules: positions, paced admission, abandonment and ETA.
//!
//! Every joiner gets the next position (1, 2, 3 … with no gaps). Admission walks the line in
//! position order at `rate_per_sec`, as a token bucket holding at most one second of tokens,
//! and never lets more than `max_active` passes be live at once. Two kinds of absence must
//! not stall the line: a pass that is never used expires after `pass_ttl` and frees its slot,
//! and a waiting user who stops polling for `idle_timeout` is skipped (abandoned) without
//! spending a token. The line's front is the first place admission has not passed; a status
//! poll tells a waiting fan their distance from it (`Position::ahead_of_front`).
//!
//! The adapter runs these rules atomically next to the data (a Redis script), with the same
//! integer arithmetic as here: milli-tokens, millisecond clocks, floor division.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::draw::Commitment;
use crate::error::{DomainError, ErrorCode};
use crate::ids::{ConcertId, QueueId, UserId};
use crate::time::Timestamp;

/// A 1-based place in one queue's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position(u64);

impl Position {
    pub const FIRST: Position = Position(1);

    pub const fn new(value: u64) -> Option<Self> {
        if value == 0 { None } else { Some(Self(value)) }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The places ahead of this one in a line whose front is `front`: every place admission
    /// has not passed yet. Positions are handed out in order and admission walks them in
    /// order, so the count needs no index of the line; a place that ended (its fan gave up)
    /// still counts until the walk passes it, so the count errs on the long side.
    pub const fn ahead_of_front(self, front: Position) -> u64 {
        self.0.saturating_sub(front.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be between {min} and {max}")]
pub struct PolicyError {
    pub field: &'static str,
    pub min: u64,
    pub max: u64,
}

impl DomainError for PolicyError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidField
    }
}

/// How fast and how far the queue admits. Changed by operators while the queue runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionPolicy {
    rate_per_sec: u32,
    max_active: u32,
    pass_ttl: Duration,
    idle_timeout: Duration,
}

impl Default for AdmissionPolicy {
    /// 50 admissions a second, 500 live passes, 10-minute passes, 2 minutes without a poll
    /// before a waiting place is abandoned.
    fn default() -> Self {
        Self {
            rate_per_sec: 50,
            max_active: 500,
            pass_ttl: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

fn within(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), PolicyError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(PolicyError { field, min, max })
    }
}

impl AdmissionPolicy {
    pub fn new(
        rate_per_sec: u32,
        max_active: u32,
        pass_ttl: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, PolicyError> {
        within("ratePerSec", rate_per_sec.into(), 1, 100_000)?;
        within("maxActive", max_active.into(), 1, 10_000_000)?;
        within("passTtlSeconds", pass_ttl.as_secs(), 30, 86_400)?;
        within("idleTimeoutSeconds", idle_timeout.as_secs(), 10, 3_600)?;
        Ok(Self {
            rate_per_sec,
            max_active,
            pass_ttl,
            idle_timeout,
        })
    }

    pub const fn rate_per_sec(&self) -> u32 {
        self.rate_per_sec
    }

    pub const fn max_active(&self) -> u32 {
        self.max_active
    }

    pub const fn pass_ttl(&self) -> Duration {
        self.pass_ttl
    }

    pub const fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The bucket holds one second of admissions, so a pause never turns into a stampede.
    pub fn bucket_capacity_milli(&self) -> u64 {
        u64::from(self.rate_per_sec) * 1000
    }

    /// When a pass issued at `admitted_at` stops being valid and frees its slot.
    pub fn pass_expiry(&self, admitted_at: Timestamp) -> Timestamp {
        admitted_at.saturating_add(self.pass_ttl)
    }

    /// A waiting place not polled since `last_seen` is abandoned from this instant on.
    pub fn is_abandoned(&self, last_seen: Timestamp, now: Timestamp) -> bool {
        now >= last_seen.saturating_add(self.idle_timeout)
    }

    /// Seconds until a user with `ahead` live users in front is admitted, assuming slots are
    /// free: the rate is the only bound the queue can promise.
    pub fn eta_secs(&self, ahead: u64) -> u64 {
        (ahead + 1).div_ceil(u64::from(self.rate_per_sec))
    }
}

/// When a waiting fan should poll again. The server, not the client, sets the pace, so the
/// waiting crowd as a whole polls about `budget_per_sec` times a second however many wait,
/// and the fans about to be admitted poll the most.
///
/// The `k`-th fan from the head pauses `c * k`, never more than `longest`, where the spacing
/// `c` is the smallest that keeps the line's polls within the budget: the fans under the
/// cap poll `H(m) / c` times a second together (`H` the harmonic number, `m` of them) and
/// the rest `1 / longest` each. A fan with a turn expected also sleeps at least
/// [`Self::TOWARD_TURN`] of the way to it: the budget is a ceiling, and a fan polling
/// sooner would only hear "not yet" (on two shared cores, those answers were most of a
/// journey's requests). It never pauses past its expected turn (so it notices its
/// admission) nor less than a second. `longest` stays well under the queue's
/// idle timeout, after which a silent fan is taken for gone; so the budget holds up to
/// `budget * longest` waiting fans (60,000 at 2,000/s and 30 s), and past that every fan
/// polls every `longest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollPacing {
    pub budget_per_sec: u32,
    pub longest: Duration,
}

impl PollPacing {
    /// Never less than this: nobody needs fresher news of a line.
    pub const SHORTEST: Duration = Duration::from_secs(1);

    /// The share of the time to its expected turn a fan sleeps at least. With the +20 %
    /// jitter it stays under the whole time, so an accurate estimate is never overslept;
    /// each poll covers three quarters of what is left, so a fan polls a few times on the
    /// way, then about every second at the head.
    pub const TOWARD_TURN: f64 = 0.75;

    /// `longest`, capped at half the idle timeout so a paced fan is never taken for gone.
    pub fn new(budget_per_sec: u32, longest: Duration, idle_timeout: Duration) -> Self {
        Self {
            budget_per_sec: budget_per_sec.max(1),
            longest: longest.min(idle_timeout / 2).max(Self::SHORTEST),
        }
    }

    /// The pause before the next poll of a fan with `ahead` fans in front of it, `waiting`
    /// fans in line and `eta` until its expected turn, spread by `jitter` (0.0 to 1.0, the
    /// caller's randomness: ±20 %) so fans who joined together do not poll together.
    pub fn pause(&self, ahead: u64, waiting: u64, eta: Duration, jitter: f64) -> Duration {
        let toward_turn = eta.min(self.longest).mul_f64(Self::TOWARD_TURN);
        let pause = self.paced(ahead, waiting).max(toward_turn).min(eta);
        self.spread(pause, jitter)
    }

    /// The pause of a fan whose queue is sold out: no turn is expected, so only the
    /// distance from the front and the budget pace it, and those nearest the front, first
    /// in line for a seat that comes back, hear of it soonest.
    pub fn pause_without_turn(&self, ahead: u64, waiting: u64, jitter: f64) -> Duration {
        self.spread(self.paced(ahead, waiting), jitter)
    }

    /// The budget's pause for the fan `ahead + 1` from the head: `c * k`, at most `longest`.
    fn paced(&self, ahead: u64, waiting: u64) -> Duration {
        let k = ahead + 1;
        let spacing = self.spacing(waiting.max(k));
        Duration::from_secs_f64((spacing * k as f64).min(self.longest.as_secs_f64()))
    }

    /// `pause` spread by `jitter` (0.0 to 1.0: ±20 %), kept within `SHORTEST..=longest`.
    fn spread(&self, pause: Duration, jitter: f64) -> Duration {
        pause
            .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
            .clamp(Self::SHORTEST, self.longest)
    }

    /// The smallest spacing (seconds per place) at which `waiting` fans poll within the
    /// budget; `longest` if even that is too often.
    fn spacing(&self, waiting: u64) -> f64 {
        let longest = self.longest.as_secs_f64();
        let budget = f64::from(self.budget_per_sec);
        let polls_per_sec = |spacing: f64| {
            let under_cap = ((longest / spacing).floor() as u64).min(waiting);
            harmonic(under_cap) / spacing + (waiting - under_cap) as f64 / longest
        };
        if polls_per_sec(longest) > budget {
            return longest;
        }
        let (mut fast, mut slow) = (longest / 1e9, longest);
        for _ in 0..60 {
            let middle = (fast + slow) / 2.0;
            if polls_per_sec(middle) > budget {
                fast = middle;
            } else {
                slow = middle;
            }
        }
        slow
    }
}

/// `H(n) = 1 + 1/2 + … + 1/n`, within 0.1 % for large `n` (ln n + γ + 1/2n).
fn harmonic(n: u64) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    if n <= 32 {
        return (1..=n).map(|k| 1.0 / k as f64).sum();
    }
    let n = n as f64;
    n.ln() + EULER_GAMMA + 1.0 / (2.0 * n)
}

/// A queue as operators configure it: whether it takes new joiners, and its pace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    pub open: bool,
    pub policy: AdmissionPolicy,
}

/// An operator's change to a running queue; absent fields keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSettingsPatch {
    pub open: Option<bool>,
    pub rate_per_sec: Option<u32>,
    pub max_active: Option<u32>,
    pub pass_ttl_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    /// Only when creating a queue: it gathers entrants for a draw until then
    /// (`crate::sale::Opening`).
    pub opens_at: Option<Timestamp>,
    /// The concert the queue sells: while it has no seat open to a hold, nobody is admitted
    /// and waiting fans are told it is sold out (`crate::sale::Stock`).
    pub concert_id: Option<ConcertId>,
}

impl QueueSettingsPatch {
    /// The settings after this change, validated as a whole.
    pub fn apply(self, current: QueueSettings) -> Result<QueueSettings, PolicyError> {
        let policy = current.policy;
        let policy = AdmissionPolicy::new(
            self.rate_per_sec.unwrap_or(policy.rate_per_sec),
            self.max_active.unwrap_or(policy.max_active),
            self.pass_ttl_seconds
                .map_or(policy.pass_ttl, Duration::from_secs),
            self.idle_timeout_seconds
                .map_or(policy.idle_timeout, Duration::from_secs),
        )?;
        Ok(QueueSettings {
            open: self.open.unwrap_or(current.open),
            policy,
        })
    }
}

/// Why a queue operation cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue {0} does not exist")]
    UnknownQueue(QueueId),
    #[error("queue {0} is closed to new joiners")]
    Closed(QueueId),
    /// The ticket is genuine but the queue no longer knows the place (its data was reset).
    #[error("this place in queue {0} no longer exists; join the queue again")]
    PlaceGone(QueueId),
}

impl DomainError for QueueError {
    fn code(&self) -> ErrorCode {
        match self {
            QueueError::UnknownQueue(_) | QueueError::PlaceGone(_) => ErrorCode::NotFound,
            QueueError::Closed(_) => ErrorCode::QueueClosed,
        }
    }
}

/// The admission token bucket: milli-tokens, so that rates below one per millisecond
/// accumulate exactly with integer arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionBucket {
    pub tokens_milli: u64,
    pub refilled_at: Timestamp,
}

impl AdmissionBucket {
    /// A queue that just opened: nobody is admitted before time passes.
    pub const fn empty(now: Timestamp) -> Self {
        Self {
            tokens_milli: 0,
            refilled_at: now,
        }
    }

    /// Adds the tokens earned since the last refill at `share_permille` of the policy's rate,
    /// up to the bucket's capacity (so at most a second's worth). A clock that went
    /// backwards earns nothing and does not move `refilled_at` back.
    pub fn refill(self, policy: &AdmissionPolicy, share_permille: u32, now: Timestamp) -> Self {
        if now <= self.refilled_at {
            return self;
        }
        let elapsed_ms = (now.unix_millis() - self.refilled_at.unix_millis()).min(1000);
        let earned = elapsed_ms * u64::from(policy.rate_per_sec) * u64::from(share_permille) / 1000;
        Self {
            tokens_milli: self
                .tokens_milli
                .saturating_add(earned)
                .min(policy.bucket_capacity_milli()),
            refilled_at: now,
        }
    }

    pub const fn whole_tokens(self) -> u64 {
        self.tokens_milli / 1000
    }
}

/// A user at the head of the line, as the adapter reads it, in position order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub position: Position,
    pub last_seen: Timestamp,
}

/// What one admission round decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionRound {
    /// Positions to admit now, in order.
    pub admit: Vec<Position>,
    /// Positions skipped because their holders stopped polling.
    pub abandon: Vec<Position>,
    /// The bucket after refilling and paying for `admit`.
    pub bucket: AdmissionBucket,
    /// Whether the round stopped at a live fan it could not admit: the queue, not the
    /// line, set the pace, so the round measures it (`AdmissionPace`).
    pub held_back: bool,
}

/// A queue runs at most one admission round per tick, whichever poll comes first: 50,000
/// fans polling do not run 50,000 rounds, and the bucket refills by elapsed time, so
/// skipping rounds loses no admission. Between rounds a poll still ends its own lapsed
/// pass. The waiting-room script mirrors it (`ADMISSION_TICK_MS`).
pub const ADMISSION_TICK: Duration = Duration::from_millis(100);

/// How much of the operator's rate a queue admits at: admission follows what the seat and
/// payment path can absorb, so an admitted fan does not meet a 503. The seats and payment
/// components report strain for the queue of the pass they serve (`shows_strain`); a report
/// halves the share, at most once per `STRAIN_SPACING` (one overload shows in many requests
/// at once) and never below `MIN`; once reports stop for a spacing, the share grows back by
/// `RECOVERY_PER_SEC` each whole second. Multiplicative decrease, additive increase, as TCP
/// backs off. Per mille, integer arithmetic, mirrored by the waiting-room script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionShare {
    permille: u32,
    strained_at: Timestamp,
}

impl AdmissionShare {
    pub const FULL_PERMILLE: u32 = 1000;
    pub const MIN_PERMILLE: u32 = 50;
    pub const STRAIN_SPACING: Duration = Duration::from_secs(1);
    pub const RECOVERY_PER_SEC: u32 = 100;
    /// A MySQL connection that took longer than this to get means the path is saturated.
    pub const STRAIN_WAIT: Duration = Duration::from_millis(250);
    /// A queue nobody reported strain for.
    pub const FULL: Self = Self {
        permille: Self::FULL_PERMILLE,
        strained_at: Timestamp::from_unix_millis(0),
    };

    /// As stored: the share set by the last report and when it came.
    pub fn from_parts(permille: u32, strained_at: Timestamp) -> Self {
        Self {
            permille: permille.clamp(Self::MIN_PERMILLE, Self::FULL_PERMILLE),
            strained_at,
        }
    }

    pub const fn strained_at(self) -> Timestamp {
        self.strained_at
    }

    /// The share at `now`: what the last report left, plus what quiet time gave back.
    pub fn at(self, now: Timestamp) -> u32 {
        let quiet_ms = now
            .unix_millis()
            .saturating_sub(self.strained_at.unix_millis());
        let spacing_ms = Self::STRAIN_SPACING.as_millis() as u64;
        if quiet_ms < spacing_ms {
            return self.permille;
        }
        let recovered = (quiet_ms - spacing_ms) / 1000 * u64::from(Self::RECOVERY_PER_SEC);
        (u64::from(self.permille) + recovered).min(u64::from(Self::FULL_PERMILLE)) as u32
    }

    /// After a report of strain at `now`.
    pub fn strained(self, now: Timestamp) -> Self {
        let spacing_ms = Self::STRAIN_SPACING.as_millis() as u64;
        if now.unix_millis() < self.strained_at.unix_millis().saturating_add(spacing_ms) {
            return self;
        }
        Self::from_parts(self.at(now) / 2, now)
    }

    /// Whether a request saw the seat and payment path saturated: its database was
    /// unavailable, or its connection took longer than `STRAIN_WAIT` to get.
    pub fn shows_strain(connection_wait: Duration, unavailable: bool) -> bool {
        unavailable || connection_wait > Self::STRAIN_WAIT
    }
}

/// Decides one admission round over the head of the line.
///
/// `live_passes` counts unexpired, unconsumed passes. The walk stops at the first live user
/// who cannot be admitted, so nobody is ever admitted ahead of an earlier user still waiting.
/// A queue that sells a concert admits at most `open_seats` fans (`crate::sale::Stock`):
/// each admitted fan wants at least one seat, so nobody is admitted to look for seats that
/// are not there, and none at all while it is sold out; the round still passes fans who
/// stopped polling. `None`: no concert, or not counted yet.
pub fn admission_round(
    policy: &AdmissionPolicy,
    share: AdmissionShare,
    bucket: AdmissionBucket,
    now: Timestamp,
    live_passes: u64,
    open_seats: Option<u64>,
    head: &[Waiting],
) -> AdmissionRound {
    let bucket = bucket.refill(policy, share.at(now), now);
    let free_slots = u64::from(policy.max_active).saturating_sub(live_passes);
    let mut budget = bucket
        .whole_tokens()
        .min(free_slots)
        .min(open_seats.unwrap_or(u64::MAX));
    let mut admit = Vec::new();
    let mut abandon = Vec::new();
    let mut held_back = false;
    for waiting in head {
        if policy.is_abandoned(waiting.last_seen, now) {
            abandon.push(waiting.position);
        } else if budget > 0 {
            admit.push(waiting.position);
            budget -= 1;
        } else {
            held_back = true;
            break;
        }
    }
    let spent = admit.len() as u64 * 1000;
    AdmissionRound {
        admit,
        abandon,
        bucket: AdmissionBucket {
            tokens_milli: bucket.tokens_milli - spent,
            ..bucket
        },
        held_back,
    }
}

/// The admission pace a queue has actually kept, in milli-admissions per second, as an
/// exponentially weighted average over the rounds that held someone back: the honest basis
/// for a wait estimate, because the operator's rate is only a ceiling (the share backs off
/// under strain, live passes fill the cap). A round that admitted everyone waiting says
/// nothing about the pace (the line, not the queue, was the limit) and leaves it as it was.
/// Integer arithmetic, mirrored by the waiting-room script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionPace {
    milli_per_sec: u64,
    measured_at: Timestamp,
}

impl AdmissionPace {
    /// How much of the average one second of new measurement replaces, per mille: about
    /// ten seconds of memory, quick to follow a backed-off share, steady over empty rounds.
    pub const WEIGHT_PER_SEC_PERMILLE: u64 = 100;

    /// A queue that measured nothing yet: the operator's rate.
    pub fn unmeasured(policy: &AdmissionPolicy, now: Timestamp) -> Self {
        Self {
            milli_per_sec: u64::from(policy.rate_per_sec) * 1000,
            measured_at: now,
        }
    }

    pub const fn from_parts(milli_per_sec: u64, measured_at: Timestamp) -> Self {
        Self {
            milli_per_sec,
            measured_at,
        }
    }

    pub const fn milli_per_sec(self) -> u64 {
        self.milli_per_sec
    }

    pub const fn measured_at(self) -> Timestamp {
        self.measured_at
    }

    /// After a round at `now` that admitted `round_admitted`: a round that held someone
    /// back weighs in by the time since the last measurement, of which at most a second
    /// counts (a whole second weighs `WEIGHT_PER_SEC_PERMILLE`): the bucket holds at most a
    /// second of tokens, so a longer gap between rounds (nobody polled, or the queue was
    /// gathering for its draw) admitted no more than a second's worth. Any other round only
    /// restarts the interval. A clock that went backwards changes nothing.
    pub fn after(self, round_admitted: u64, held_back: bool, now: Timestamp) -> Self {
        let elapsed_ms = now
            .unix_millis()
            .saturating_sub(self.measured_at.unix_millis());
        if elapsed_ms == 0 {
            return self;
        }
        if !held_back {
            return Self {
                measured_at: now,
                ..self
            };
        }
        let counted_ms = elapsed_ms.min(1000);
        let interval = round_admitted.saturating_mul(1_000_000) / counted_ms;
        let weight = counted_ms * Self::WEIGHT_PER_SEC_PERMILLE / 1000;
        Self {
            milli_per_sec: (self.milli_per_sec * (1000 - weight) + interval * weight) / 1000,
            measured_at: now,
        }
    }

    /// Seconds until a fan with `ahead` live fans in front is admitted at this pace, rounded
    /// up; at the operator's rate (`AdmissionPolicy::eta_secs`) while the queue admits
    /// nobody (every pass in use), when the measured pace promises nothing.
    pub fn eta_secs(self, policy: &AdmissionPolicy, ahead: u64) -> u64 {
        if self.milli_per_sec == 0 {
            return policy.eta_secs(ahead);
        }
        ((ahead + 1) * 1000).div_ceil(self.milli_per_sec)
    }
}

/// `POST /api/queue/tokens`: who joins which queue (the `default` one when none is named).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    pub user_id: UserId,
    #[serde(default)]
    pub queue_id: QueueId,
}

/// The answer to a join: the place and the signed queue ticket that stands for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinReply {
    pub queue_id: QueueId,
    pub user_id: UserId,
    pub position: u64,
    pub token: String,
    pub joined_at: Timestamp,
    pub token_expires_at: Timestamp,
}

/// The answer to a join before a scheduled queue opens: an entry in its draw (no position
/// yet), the commitment the draw is bound to, and the signed entry that polls status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrawEntryReply {
    pub queue_id: QueueId,
    pub user_id: UserId,
    /// The fan's entry number: the order of entries, which the draw does not follow.
    pub entry: u64,
    pub opens_at: Timestamp,
    pub commitment: Commitment,
    pub token: String,
    pub joined_at: Timestamp,
    pub token_expires_at: Timestamp,
}

/// Why a queue ticket or pass no longer counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiryReason {
    /// The user stopped polling while waiting.
    Abandoned,
    /// The pass lived out its TTL.
    PassExpired,
    /// The pass was used up by a completed payment.
    Consumed,
}

/// The answer to a status poll, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueStatus {
    /// An entrant of a scheduled queue before its draw has placed them.
    #[serde(rename_all = "camelCase")]
    Gathering {
        opens_at: Timestamp,
        entry: u64,
        /// Entrants so far.
        entrants: u64,
        commitment: Commitment,
        poll_after_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    Waiting {
        position: Position,
        ahead: u64,
        eta_seconds: u64,
        /// When to poll again (`PollPacing`); also sent as `Retry-After`.
        poll_after_ms: u64,
    },
    /// Still in line, but the concert has no seat open to a hold: nobody is admitted until
    /// one comes back (a release, a lapsed hold, a refund), and the fan keeps their place.
    #[serde(rename_all = "camelCase")]
    SoldOut {
        position: Position,
        ahead: u64,
        poll_after_ms: u64,
        /// The concert sold out, whose waitlist (`crate::waitlist`) the fan may join
        /// instead of polling on.
        #[serde(skip_serializing_if = "Option::is_none")]
        concert_id: Option<ConcertId>,
    },
    #[serde(rename_all = "camelCase")]
    Active { pass: String, expires_at: Timestamp },
    #[serde(rename_all = "camelCase")]
    Expired { reason: ExpiryReason },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    fn at(ms: u64) -> Timestamp {
        T0.saturating_add(Duration::from_millis(ms))
    }

    fn policy(rate: u32, max_active: u32) -> AdmissionPolicy {
        AdmissionPolicy::new(
            rate,
            max_active,
            Duration::from_secs(600),
            Duration::from_secs(60),
        )
        .unwrap()
    }

    fn line(positions: std::ops::RangeInclusive<u64>, last_seen: Timestamp) -> Vec<Waiting> {
        positions
            .map(|p| Waiting {
                position: Position::new(p).unwrap(),
                last_seen,
            })
            .collect()
    }

    /// A queue's first round at `now`: 10 a second, at most 100 live passes, no strain, the
    /// bucket empty since `T0` and no pass live yet.
    fn first_round(now: Timestamp, open_seats: Option<u64>, head: &[Waiting]) -> AdmissionRound {
        admission_round(
            &policy(10, 100),
            AdmissionShare::FULL,
            AdmissionBucket::empty(T0),
            now,
            0,
            open_seats,
            head,
        )
    }

    fn positions(range: std::ops::RangeInclusive<u64>) -> Vec<Position> {
        range.map(|p| Position::new(p).unwrap()).collect()
    }

    #[test]
    fn a_place_counts_every_place_between_it_and_the_front_as_ahead() {
        let place = Position::new(12).unwrap();
        assert_eq!(place.ahead_of_front(Position::new(5).unwrap()), 7);
        assert_eq!(place.ahead_of_front(place), 0);
        // Between admission rounds the front may not have caught up with an admitted place.
        assert_eq!(place.ahead_of_front(Position::new(13).unwrap()), 0);
    }

    #[test]
    fn strain_halves_the_share_once_per_spacing_and_quiet_seconds_give_it_back() {
        let share = AdmissionShare::FULL.strained(at(10_000));
        assert_eq!(share.at(at(10_000)), 500);
        // The same overload seen by more requests within the spacing counts once.
        assert_eq!(share.strained(at(10_900)).at(at(10_900)), 500);
        let twice = share.strained(at(11_000));
        assert_eq!(twice.at(at(11_000)), 250);
        // One spacing of quiet, then 100 per mille per whole second.
        assert_eq!(twice.at(at(11_999)), 250);
        assert_eq!(twice.at(at(13_000)), 350);
        assert_eq!(twice.at(at(30_000)), 1000);
        let floor = (0..20).fold(AdmissionShare::FULL, |s, i| s.strained(at(1_000 * i)));
        assert_eq!(floor.at(at(19_000)), AdmissionShare::MIN_PERMILLE);
    }

    #[test]
    fn the_pace_follows_what_was_admitted_while_fans_were_held_back() {
        let policy = policy(200, 1_000);
        let start = AdmissionPace::unmeasured(&policy, T0);
        assert_eq!(start.eta_secs(&policy, 399), 2);
        // Rounds of 5 every 100 ms while fans are held back: 50 a second, which the
        // average approaches by a tenth of the difference per second.
        let measured = (1..=1_000).fold(start, |pace, i| pace.after(5, true, at(100 * i)));
        assert!(
            (50_000..50_100).contains(&measured.milli_per_sec()),
            "{measured:?}"
        );
        assert_eq!(measured.eta_secs(&policy, 99), 2);
        // A round after a long gap (nobody polled) counts one second, as the bucket does.
        let gap = AdmissionPace::from_parts(50_000, at(0)).after(200, true, at(10_000));
        assert_eq!(gap.milli_per_sec(), 65_000);
        // A round that admitted everyone waiting measures nothing.
        let idle = measured.after(3, false, at(140_000));
        assert_eq!(idle.milli_per_sec(), measured.milli_per_sec());
        assert_eq!(idle.measured_at(), at(140_000));
        // Stalled (every pass in use): the pace falls and, at zero, the estimate is the rate's.
        let stalled = (1..=500).fold(measured, |pace, i| {
            pace.after(0, true, at(30_000 + 1_000 * i))
        });
        assert_eq!(stalled.milli_per_sec(), 0);
        assert_eq!(stalled.eta_secs(&policy, 399), 2);
        assert_eq!(measured.after(7, true, at(5_000)), measured);
    }

    #[test]
    fn a_sold_out_round_admits_nobody_but_still_passes_fans_who_left() {
        let mut head = line(1..=4, at(30_000));
        head[0].last_seen = T0;
        let round = first_round(at(61_000), Some(0), &head);
        assert_eq!(round.admit, vec![]);
        assert_eq!(round.abandon, positions(1..=1));
        assert!(round.held_back);
        assert_eq!(
            round.bucket.whole_tokens(),
            10,
            "the bucket keeps its second"
        );
    }

    #[test]
    fn a_round_admits_no_more_fans_than_seats_are_open() {
        let round = first_round(at(1_000), Some(3), &line(1..=8, at(1_000)));
        assert_eq!(round.admit, positions(1..=3));
        assert!(round.held_back);
    }

    #[test]
    fn a_round_that_admits_everyone_waiting_holds_nobody_back() {
        let round = first_round(at(1_000), None, &line(1..=4, at(1_000)));
        assert!(!round.held_back);
        let round = first_round(at(1_000), None, &line(1..=20, at(1_000)));
        assert!(round.held_back);
    }

    #[test]
    fn a_strained_queue_earns_admissions_at_its_share_of_the_rate() {
        let strained = AdmissionShare::FULL.strained(T0);
        let round = admission_round(
            &policy(10, 100),
            strained,
            AdmissionBucket::empty(T0),
            at(1_000),
            0,
            None,
            &line(1..=20, at(1_000)),
        );
        assert_eq!(round.admit, positions(1..=5));
    }

    #[test]
    fn a_slow_connection_or_an_unavailable_database_shows_strain() {
        assert!(!AdmissionShare::shows_strain(
            Duration::from_millis(20),
            false
        ));
        assert!(AdmissionShare::shows_strain(
            Duration::from_millis(400),
            false
        ));
        assert!(AdmissionShare::shows_strain(Duration::ZERO, true));
    }

    #[test]
    fn nobody_is_admitted_the_instant_a_queue_opens() {
        let round = first_round(T0, None, &line(1..=5, T0));
        assert!(round.admit.is_empty());
    }

    #[test]
    fn admission_follows_the_rate_in_position_order() {
        let round = first_round(at(500), None, &line(1..=20, at(400)));
        assert_eq!(round.admit, positions(1..=5));
        assert_eq!(round.bucket.tokens_milli, 0);
    }

    #[test]
    fn fractional_tokens_carry_over_between_rounds() {
        let p = policy(3, 100);
        let first = admission_round(
            &p,
            AdmissionShare::FULL,
            AdmissionBucket::empty(T0),
            at(500),
            0,
            None,
            &line(1..=9, at(0)),
        );
        assert_eq!(first.admit.len(), 1);
        assert_eq!(first.bucket.tokens_milli, 500);
        // 500 carried + 1,500 earned = exactly two more.
        let second = admission_round(
            &p,
            AdmissionShare::FULL,
            first.bucket,
            at(1000),
            1,
            None,
            &line(2..=9, at(900)),
        );
        assert_eq!(second.admit, positions(2..=3));
        assert_eq!(second.bucket.tokens_milli, 0);
    }

    #[test]
    fn a_long_pause_admits_at_most_one_second_of_users() {
        let round = admission_round(
            &policy(10, 1_000),
            AdmissionShare::FULL,
            AdmissionBucket::empty(T0),
            at(3_600_000),
            0,
            None,
            &line(1..=100, at(3_599_000)),
        );
        assert_eq!(round.admit.len(), 10);
    }

    #[test]
    fn the_active_cap_holds_however_many_tokens_there_are() {
        let round = admission_round(
            &policy(100, 5),
            AdmissionShare::FULL,
            AdmissionBucket::empty(T0),
            at(1000),
            3,
            None,
            &line(1..=50, at(900)),
        );
        assert_eq!(round.admit, positions(1..=2));
        let full = admission_round(
            &policy(100, 5),
            AdmissionShare::FULL,
            AdmissionBucket::empty(T0),
            at(1000),
            5,
            None,
            &line(1..=50, at(900)),
        );
        assert!(full.admit.is_empty());
        assert_eq!(
            full.bucket.whole_tokens(),
            100,
            "unspent tokens stay for when slots free"
        );
    }

    #[test]
    fn abandoned_users_are_skipped_without_spending_a_token() {
        let mut head = line(1..=4, at(59_000));
        head[0].last_seen = T0;
        head[2].last_seen = T0;
        let round = admission_round(
            &policy(2, 100),
            AdmissionShare::FULL,
            AdmissionBucket::empty(at(59_000)),
            at(60_000),
            0,
            None,
            &head,
        );
        assert_eq!(round.abandon, vec![head[0].position, head[2].position]);
        assert_eq!(round.admit, vec![head[1].position, head[3].position]);
    }

    #[test]
    fn a_clock_that_goes_backwards_earns_no_tokens() {
        let bucket = AdmissionBucket {
            tokens_milli: 2_000,
            refilled_at: at(5_000),
        };
        assert_eq!(bucket.refill(&policy(10, 10), 1000, at(1_000)), bucket);
    }

    fn pacing() -> PollPacing {
        PollPacing::new(2_000, Duration::from_secs(25), Duration::from_secs(60))
    }

    const FAR: Duration = Duration::from_secs(3_600);

    #[test]
    fn fans_near_the_head_poll_about_every_second_and_far_back_fans_rarely() {
        let p = pacing();
        assert_eq!(p.pause_without_turn(0, 20_000, 0.5), Duration::from_secs(1));
        let middle = p.pause_without_turn(1_000, 20_000, 0.5);
        assert!(
            middle > Duration::from_secs(4) && middle < Duration::from_secs(8),
            "{middle:?}"
        );
        assert_eq!(
            p.pause_without_turn(15_000, 20_000, 0.5),
            Duration::from_secs(25)
        );
    }

    #[test]
    fn a_fan_whose_turn_is_seconds_away_sleeps_three_quarters_of_the_way_to_it() {
        let p = pacing();
        // The budget alone would ask the 11th fan of a short line to poll every second.
        assert_eq!(p.pause_without_turn(10, 100, 0.5), Duration::from_secs(1));
        assert_eq!(
            p.pause(10, 100, Duration::from_secs(8), 0.5),
            Duration::from_secs(6)
        );
        // The most jitter still wakes the fan before its expected turn.
        assert!(p.pause(10, 100, Duration::from_secs(8), 1.0) < Duration::from_secs(8));
        // A far turn is slept toward at most three quarters of the longest pause.
        assert_eq!(
            p.pause(10, 100, FAR, 0.5),
            Duration::from_secs(25).mul_f64(PollPacing::TOWARD_TURN)
        );
    }

    #[test]
    fn a_fan_at_the_head_still_polls_every_second() {
        assert_eq!(
            pacing().pause(0, 5_000, Duration::from_secs(1), 0.5),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_fan_polls_no_later_than_its_turn_is_expected() {
        assert_eq!(
            pacing().pause(5_000, 50_000, Duration::from_secs(3), 0.5),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn the_longest_pause_stays_under_half_the_idle_timeout() {
        let p = PollPacing::new(10, Duration::from_secs(25), Duration::from_secs(20));
        assert_eq!(p.longest, Duration::from_secs(10));
        assert_eq!(
            p.pause(1_000_000, 1_000_000, FAR, 1.0),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn harmonic_numbers_match_their_sums() {
        for n in [1u64, 2, 10, 32, 33, 1_000, 50_000] {
            let sum: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
            assert!((harmonic(n) - sum).abs() / sum < 0.001, "H({n})");
        }
    }

    proptest! {
        /// The measured pace stays between the slowest and the fastest interval measured.
        #[test]
        fn the_pace_stays_within_the_paces_it_measured(
            rounds in proptest::collection::vec((1u64..5_000, 0u64..500), 1..50),
        ) {
            let mut pace = AdmissionPace::unmeasured(&policy(100, 1_000), T0);
            let (mut low, mut high) = (100_000u64, 100_000u64);
            let mut now = 0;
            for (elapsed, admitted) in rounds {
                now += elapsed;
                let interval = admitted * 1_000_000 / elapsed.min(1_000);
                low = low.min(interval);
                high = high.max(interval);
                pace = pace.after(admitted, true, at(now));
                prop_assert!((low..=high).contains(&pace.milli_per_sec()), "{pace:?} outside {low}..={high}");
            }
        }

        /// Sleeping toward a turn never makes a fan poll sooner than the budget asks, but
        /// for a turn due sooner still.
        #[test]
        fn a_turn_expected_never_makes_a_fan_poll_sooner_than_the_budget_asks(
            ahead in 0u64..50_000,
            behind in 0u64..50_000,
            eta_ms in 0u64..100_000,
            jitter in 0.0f64..1.0,
        ) {
            let p = pacing();
            let (waiting, eta) = (ahead + 1 + behind, Duration::from_millis(eta_ms));
            let budget = p.pause_without_turn(ahead, waiting, jitter);
            let turn_due = eta.mul_f64(0.8).max(PollPacing::SHORTEST);
            prop_assert!(p.pause(ahead, waiting, eta, jitter) >= budget.min(turn_due));
        }

        /// Over any sequence of strain reports and quiet spells the share stays within its
        /// bounds, a report never raises it, and a quiet spell never lowers it.
        #[test]
        fn the_admission_share_stays_bounded_and_moves_the_right_way(
            steps in proptest::collection::vec((0u64..5_000, any::<bool>()), 1..60),
        ) {
            let mut share = AdmissionShare::FULL;
            let mut now = T0;
            for (advance_ms, strain) in steps {
                let before = share.at(now);
                now = now.saturating_add(Duration::from_millis(advance_ms));
                prop_assert!(share.at(now) >= before, "quiet time lowered the share");
                if strain {
                    let after = share.strained(now);
                    prop_assert!(after.at(now) <= share.at(now));
                    share = after;
                }
                let current = share.at(now);
                prop_assert!((AdmissionShare::MIN_PERMILLE..=AdmissionShare::FULL_PERMILLE).contains(&current));
            }
        }
    }

    proptest! {
        // Each case sums a whole line of up to 60,000 pauses.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// However many wait (up to the budget times the longest pause), the whole line
        /// polls within the budget, whatever the jitter; and nobody is paced faster than a
        /// fan ahead of them.
        #[test]
        fn the_waiting_crowd_polls_within_the_budget(
            waiting in 1u64..60_000,
            budget in 100u32..5_000,
            longest in 2u64..=30,
            jitter in 0.0f64..1.0,
        ) {
            let p = PollPacing::new(budget, Duration::from_secs(longest), Duration::from_secs(2 * longest));
            prop_assume!(waiting <= u64::from(budget) * longest);
            // The budget's own pace; a turn expected only slows a fan further, unless the
            // turn is due sooner (`a_turn_expected_never_makes_a_fan_poll_sooner…`).
            let polls_per_sec: f64 = (0..waiting)
                .map(|ahead| 1.0 / p.pause_without_turn(ahead, waiting, jitter).as_secs_f64())
                .sum();
            // The 20 % jitter may speed a fan up; H(n) is approximated within 0.1 %.
            let allowed = f64::from(budget) / 0.8 * 1.001;
            prop_assert!(polls_per_sec <= allowed, "{polls_per_sec} polls/s > {allowed}");
            let pauses: Vec<Duration> = (0..waiting.min(2_000))
                .map(|ahead| p.pause_without_turn(ahead, waiting, jitter))
                .collect();
            prop_assert!(pauses.windows(2).all(|pair| pair[0] <= pair[1]));
        }
    }

    #[test]
    fn eta_rounds_up_to_whole_seconds_at_the_rate() {
        let p = policy(10, 100);
        assert_eq!(p.eta_secs(0), 1);
        assert_eq!(p.eta_secs(9), 1);
        assert_eq!(p.eta_secs(10), 2);
    }

    #[test]
    fn a_pass_expires_after_its_ttl() {
        let p = policy(10, 100);
        assert_eq!(p.pass_expiry(T0), at(600_000));
    }

    #[test]
    fn policies_outside_their_bounds_name_the_field() {
        let err = AdmissionPolicy::new(0, 1, Duration::from_secs(60), Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(err.field, "ratePerSec");
        let err = AdmissionPolicy::new(1, 1, Duration::from_secs(5), Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(err.field, "passTtlSeconds");
    }

    #[test]
    fn a_settings_patch_changes_only_what_it_names_and_validates_the_result() {
        let current = QueueSettings {
            open: true,
            policy: AdmissionPolicy::default(),
        };
        let closed = QueueSettingsPatch {
            open: Some(false),
            max_active: Some(20),
            ..Default::default()
        }
        .apply(current)
        .unwrap();
        assert!(!closed.open);
        assert_eq!(closed.policy.max_active(), 20);
        assert_eq!(closed.policy.rate_per_sec(), 50);
        let err = QueueSettingsPatch {
            rate_per_sec: Some(0),
            ..Default::default()
        }
        .apply(current)
        .unwrap_err();
        assert_eq!(err.field, "ratePerSec");
    }

    #[test]
    fn statuses_serialize_in_the_api_shape() {
        let waiting = QueueStatus::Waiting {
            position: Position::new(12).unwrap(),
            ahead: 11,
            eta_seconds: 2,
            poll_after_ms: 1_000,
        };
        assert_eq!(
            serde_json::to_value(&waiting).unwrap(),
            serde_json::json!({ "status": "WAITING", "position": 12, "ahead": 11, "etaSeconds": 2, "pollAfterMs": 1000 })
        );
        let expired = QueueStatus::Expired {
            reason: ExpiryReason::Abandoned,
        };
        assert_eq!(
            serde_json::to_value(&expired).unwrap(),
            serde_json::json!({ "status": "EXPIRED", "reason": "ABANDONED" })
        );
    }

    #[derive(Debug, Clone)]
    struct Step {
        advance_ms: u64,
        joins: u64,
        consumed: u64,
        idle: Vec<bool>,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0u64..3_000,
            0u64..20,
            0u64..5,
            proptest::collection::vec(any::<bool>(), 0..4),
        )
            .prop_map(|(advance_ms, joins, consumed, idle)| Step {
                advance_ms,
                joins,
                consumed,
                idle,
            })
    }

    proptest! {
        /// Simulates a queue over random rounds: joins, polls that stop, consumed passes and
        /// time. Checks that admission is always in order, never passes the cap, and never
        /// admits more than the rate allows over the whole run.
        #[test]
        fn admission_never_reorders_and_never_exceeds_rate_or_cap(
            rate in 1u32..50,
            max_active in 1u32..30,
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let p = policy(rate, max_active);
            let mut now = T0;
            let mut bucket = AdmissionBucket::empty(now);
            let mut next_position = 1u64;
            let mut line: Vec<Waiting> = Vec::new();
            let mut live = 0u64;
            let mut admitted_total = 0u64;
            let mut last_admitted = 0u64;
            for step in steps {
                now = now.saturating_add(Duration::from_millis(step.advance_ms));
                for _ in 0..step.joins {
                    line.push(Waiting { position: Position::new(next_position).unwrap(), last_seen: now });
                    next_position += 1;
                }
                // Users who keep polling refresh last_seen; the ones flagged idle stop.
                for (i, w) in line.iter_mut().enumerate() {
                    if !step.idle.get(i).copied().unwrap_or(false) {
                        w.last_seen = now;
                    }
                }
                live = live.saturating_sub(step.consumed);
                let round = admission_round(&p, AdmissionShare::FULL, bucket, now, live, None, &line);
                prop_assert!(live + round.admit.len() as u64 <= u64::from(max_active));
                for pos in &round.admit {
                    prop_assert!(pos.get() > last_admitted, "admitted out of order");
                    last_admitted = pos.get();
                }
                let decided: Vec<Position> = round.admit.iter().chain(&round.abandon).copied().collect();
                let still_waiting: Vec<&Waiting> = line.iter().filter(|w| !decided.contains(&w.position)).collect();
                if let (Some(last), Some(first_waiting)) = (round.admit.last(), still_waiting.first()) {
                    prop_assert!(first_waiting.position > *last, "a later position passed an earlier waiting one");
                }
                line.retain(|w| !decided.contains(&w.position));
                admitted_total += round.admit.len() as u64;
                live += round.admit.len() as u64;
                bucket = round.bucket;
                prop_assert!(bucket.tokens_milli <= p.bucket_capacity_milli());
            }
            let elapsed_ms = now.since(T0).as_millis() as u64;
            prop_assert!(admitted_total * 1000 <= elapsed_ms * u64::from(rate));
        }
    }
}
