//! The rules of a sale around the waiting room: when a scheduled queue opens, and how the
//! fans who gathered before it learn what happens next.
//!
//! Adapters keep the state (the waiting-room script in Redis) and apply these decisions
//! atomically where the state lives; these functions only decide.

use std::time::Duration;

use crate::error::{DomainError, ErrorCode};
use crate::ids::{ConcertId, QueueId};
use crate::time::Timestamp;

/// A queue's opening time. Before it, a fan who joins becomes an entrant of the draw
/// (`crate::draw`) and gets no position; at it the entrants are put in line in drawn order,
/// and everyone who joins later lines up behind them in arrival order. A queue without an
/// opening time is open from its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    opens_at: Timestamp,
}

/// Where a scheduled queue stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Fans join the draw; nobody has a position and nobody is admitted.
    Gathering,
    /// The draw is done (or due): positions and admission as in any open queue.
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpeningError {
    #[error("opensAt must be in the future")]
    InThePast,
    #[error("opensAt must be at most {} days ahead", Opening::LONGEST_AHEAD.as_secs() / 86_400)]
    TooFarAhead,
    #[error("opensAt can only be set when the queue is created: its draw is already committed")]
    AlreadyCreated,
    #[error("queue {0} has no opening time, so no draw")]
    NotScheduled(QueueId),
}

impl DomainError for OpeningError {
    fn code(&self) -> ErrorCode {
        match self {
            // Well-formed, but outside the window an opening may take.
            OpeningError::InThePast | OpeningError::TooFarAhead => ErrorCode::LimitExceeded,
            OpeningError::AlreadyCreated => ErrorCode::InvalidState,
            OpeningError::NotScheduled(_) => ErrorCode::NotFound,
        }
    }
}

impl Opening {
    /// How far ahead an opening may be scheduled: a queue's data lives two days past its
    /// last write, so entrants who joined early must not outlast it.
    pub const LONGEST_AHEAD: Duration = Duration::from_secs(24 * 60 * 60);

    pub const fn at(opens_at: Timestamp) -> Self {
        Self { opens_at }
    }

    /// An operator's opening time for a queue they create at `now`. A queue that exists has
    /// published its commitment already (or runs unscheduled), so its opening cannot move.
    pub fn schedule(
        opens_at: Timestamp,
        queue_exists: bool,
        now: Timestamp,
    ) -> Result<Self, OpeningError> {
        if queue_exists {
            Err(OpeningError::AlreadyCreated)
        } else if opens_at <= now {
            Err(OpeningError::InThePast)
        } else if opens_at > now.saturating_add(Self::LONGEST_AHEAD) {
            Err(OpeningError::TooFarAhead)
        } else {
            Ok(Self { opens_at })
        }
    }

    pub const fn opens_at(self) -> Timestamp {
        self.opens_at
    }

    /// Whether a fan joining at `now` enters the draw or lines up. The instant of opening
    /// already belongs to the open queue, so nobody joins the draw once it may be run.
    pub fn phase(self, now: Timestamp) -> Phase {
        if now < self.opens_at {
            Phase::Gathering
        } else {
            Phase::Open
        }
    }

    /// When an entrant polling at `now` should poll again. Until the opening, as late as
    /// the opening or `longest` allows; the `entrants`' first polls after it are spread by
    /// `jitter` (0.0 to 1.0) over as long as the poll budget needs for all of them, so a
    /// crowd that gathered does not arrive in one millisecond. While the draw runs (at and
    /// after the opening), half a second.
    pub fn pause(
        self,
        now: Timestamp,
        longest: Duration,
        entrants: u64,
        budget_per_sec: u32,
        jitter: f64,
    ) -> Duration {
        const DRAWING: Duration = Duration::from_millis(500);
        if self.phase(now) == Phase::Open {
            return DRAWING;
        }
        let spread = Duration::from_secs_f64(entrants as f64 / f64::from(budget_per_sec.max(1)));
        let after_opening = spread.mul_f64(jitter.clamp(0.0, 1.0));
        (self.opens_at.since(now) + after_opening).min(longest)
    }
}

/// The seats of the concert a queue sells that are open to a hold (free, or held by a hold
/// that lapsed) and that no fan let in is still choosing: the bridge counts every sold
/// concert about once a second and hands the count to its queues, and each admission speaks
/// for one of them (`queue::admission_round` admits no more) until that fan holds a seat,
/// which the next count then sees as taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stock {
    pub holdable: u64,
}

impl Stock {
    /// A count of `open` seats while `choosing` fans hold a live pass but no seat yet: each
    /// of them will take one of the seats counted open, so only the rest are left to admit
    /// for. Without this, a count taken between a fan's admission and their hold would
    /// admit a second fan for the same seat, who then finds none.
    pub const fn counted(open: u64, choosing: u64) -> Self {
        Self {
            holdable: open.saturating_sub(choosing),
        }
    }

    /// How often the bridge counts: how long a sell-out (or a seat back on sale) takes at
    /// most to reach the queue, besides the count itself.
    pub const COUNT_EVERY: Duration = Duration::from_secs(1);

    /// Sold out means no seat open to a hold that an admitted fan has not been let in for:
    /// fans still waiting are told so, and nobody is admitted to look for seats that are not
    /// there. Seats on hold are not open, but a release, a lapse or a refund opens them
    /// again, and admission resumes with the next count.
    pub const fn is_sold_out(self) -> bool {
        self.holdable == 0
    }
}

/// The Redis set of concerts that queues sell (their ids), which the bridge counts.
pub const SOLD_CONCERTS_KEY: &str = "sale:concerts";

/// The Redis set of the queues (their ids) selling `concert`.
pub fn selling_queues_key(concert: ConcertId) -> String {
    format!("sale:queues:{concert}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_let_in_who_have_not_held_yet_speak_for_the_seats_counted_open() {
        assert_eq!(Stock::counted(10, 4), Stock { holdable: 6 });
        assert!(Stock::counted(3, 3).is_sold_out());
        assert!(Stock::counted(2, 5).is_sold_out());
        assert_eq!(Stock::counted(7, 0), Stock { holdable: 7 });
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn fans_before_the_opening_enter_the_draw_and_from_its_instant_on_line_up() {
        let opening = Opening::at(at(60_000));
        assert_eq!(opening.phase(at(0)), Phase::Gathering);
        assert_eq!(opening.phase(at(59_999)), Phase::Gathering);
        assert_eq!(opening.phase(at(60_000)), Phase::Open);
        assert_eq!(opening.phase(at(61_000)), Phase::Open);
    }

    #[test]
    fn an_opening_is_set_once_at_creation_and_within_a_day() {
        assert_eq!(
            Opening::schedule(at(60_000), false, at(0)),
            Ok(Opening::at(at(60_000)))
        );
        assert_eq!(
            Opening::schedule(at(60_000), true, at(0)),
            Err(OpeningError::AlreadyCreated)
        );
        assert_eq!(
            Opening::schedule(at(0), false, at(0)),
            Err(OpeningError::InThePast)
        );
        assert_eq!(
            Opening::schedule(at(86_400_001), false, at(0)),
            Err(OpeningError::TooFarAhead)
        );
    }

    #[test]
    fn entrants_poll_at_the_opening_spread_by_jitter_and_no_later_than_the_longest_pause() {
        let opening = Opening::at(at(10_000));
        let longest = Duration::from_secs(25);
        // 8,000 entrants at 2,000 polls a second: their first polls spread over 4 s.
        let pause = |now, jitter| opening.pause(now, longest, 8_000, 2_000, jitter);
        assert_eq!(pause(at(0), 0.0), Duration::from_secs(10));
        assert_eq!(pause(at(0), 0.5), Duration::from_secs(12));
        assert_eq!(pause(at(8_000), 1.0), Duration::from_secs(6));
        assert_eq!(pause(at(10_000), 0.3), Duration::from_millis(500));
        assert_eq!(
            Opening::at(at(3_600_000)).pause(at(0), longest, 8_000, 2_000, 0.3),
            longest
        );
    }
}
