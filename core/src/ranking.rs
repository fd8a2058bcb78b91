//! The popularity ranking: seats sold per concert, kept by the bridge in one Redis sorted
//! set per UTC day plus an all-time set, and read over a window of days. Daily sets make a
//! window a union of a few keys, and old days simply expire.

use crate::error::{DomainError, ErrorCode};
use crate::events::{Envelope, EnvelopeError, EventId, PaymentCompleted, PaymentRefunded, Topic};
use crate::ids::ConcertId;
use crate::time::Timestamp;

/// How many concerts a ranking lists.
pub const TOP: usize = 10;

const MILLIS_PER_DAY: u64 = 86_400_000;

/// The period a ranking covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankingWindow {
    AllTime,
    /// The last `n` UTC days, today included.
    Days(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window must be one of all, 3d, 7d")]
pub struct RankingWindowError;

impl DomainError for RankingWindowError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidField
    }
}

impl RankingWindow {
    pub fn parse(text: &str) -> Result<Self, RankingWindowError> {
        match text {
            "all" => Ok(Self::AllTime),
            "3d" => Ok(Self::Days(3)),
            "7d" => Ok(Self::Days(7)),
            _ => Err(RankingWindowError),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AllTime => "all",
            Self::Days(3) => "3d",
            Self::Days(_) => "7d",
        }
    }

    /// The sorted sets to add up for this window at `now`, newest day first.
    pub fn keys(self, now: Timestamp) -> Vec<String> {
        match self {
            Self::AllTime => vec![ALL_TIME_KEY.to_owned()],
            Self::Days(days) => (0..u64::from(days))
                .map(|back| {
                    let day = Timestamp::from_unix_millis(
                        now.unix_millis().saturating_sub(back * MILLIS_PER_DAY),
                    );
                    daily_key(day)
                })
                .collect(),
        }
    }
}

/// The all-time set. Every ranking key shares the `{ranking}` hash tag, so a window's
/// ZUNION and the bridge's update script touch one slot on Redis Cluster.
pub const ALL_TIME_KEY: &str = "{ranking}:all";

/// The set of the UTC day that contains `at`, e.g. `{ranking}:day:2026-11-21`.
pub fn daily_key(at: Timestamp) -> String {
    let civil = at.to_civil();
    format!(
        "{{ranking}}:day:{:04}-{:02}-{:02}",
        civil.year, civil.month, civil.day
    )
}

/// Marks an event as counted, so a redelivered one changes nothing.
pub fn counted_key(event: &EventId) -> String {
    format!("{{ranking}}:counted:{event}")
}

/// A daily set is kept a little longer than the widest window reads it; so is the mark of a
/// counted event, which outlives any redelivery.
pub const DAILY_RETENTION_DAYS: u64 = 8;

/// How one event moves the ranking: `seats` added to (or, for a refund, taken from)
/// `concert` in the all-time set and in the set of the day the event occurred. A window
/// therefore counts the net seats sold within it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankingChange {
    pub concert: ConcertId,
    pub seats: i64,
    pub day_key: String,
}

impl RankingChange {
    /// The change an envelope makes, or `None` for event types the ranking ignores.
    pub fn of(envelope: &Envelope) -> Result<Option<Self>, EnvelopeError> {
        let (facts, sign) = match envelope.topic() {
            Some(Topic::PaymentCompleted) => (envelope.decode::<PaymentCompleted>()?.0, 1),
            Some(Topic::PaymentRefunded) => (envelope.decode::<PaymentRefunded>()?.0, -1),
            _ => return Ok(None),
        };
        Ok(Some(Self {
            concert: facts.concert_id,
            seats: sign * facts.seat_ids.len() as i64,
            day_key: daily_key(envelope.occurred_at),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, PaymentFacts, ReservationExpired};
    use crate::ids::{PaymentId, ReservationId, ScheduleId, SeatId, UserId};
    use crate::money::Amount;

    #[test]
    fn windows_parse_from_their_query_names_only() {
        assert_eq!(RankingWindow::parse("all"), Ok(RankingWindow::AllTime));
        assert_eq!(RankingWindow::parse("7d"), Ok(RankingWindow::Days(7)));
        assert!(RankingWindow::parse("30d").is_err());
        assert!(RankingWindow::parse("").is_err());
        assert_eq!(RankingWindow::Days(3).as_str(), "3d");
    }

    #[test]
    fn a_three_day_window_reads_today_and_the_two_days_before() {
        let now = Timestamp::parse_rfc3339("2026-03-01T00:30:00Z").unwrap();
        assert_eq!(
            RankingWindow::Days(3).keys(now),
            [
                "{ranking}:day:2026-03-01",
                "{ranking}:day:2026-02-28",
                "{ranking}:day:2026-02-27"
            ]
        );
        assert_eq!(RankingWindow::AllTime.keys(now), ["{ranking}:all"]);
    }

    fn facts(seats: usize) -> PaymentFacts {
        PaymentFacts {
            payment_id: PaymentId::new(9).unwrap(),
            reservation_id: ReservationId::new(5).unwrap(),
            user_id: UserId::new(42).unwrap(),
            concert_id: ConcertId::new(3).unwrap(),
            schedule_id: ScheduleId::new(101).unwrap(),
            seat_ids: (1..=seats as u64)
                .map(|n| SeatId::new(n).unwrap())
                .collect(),
            amount: Amount::new(50_000).unwrap(),
        }
    }

    fn envelope<E: Event>(event: &E, at: &str) -> Envelope {
        let at = Timestamp::parse_rfc3339(at).unwrap();
        Envelope::wrap(event, EventId::new(at, [7; 10]), at).unwrap()
    }

    #[test]
    fn a_payment_adds_its_seats_on_its_day_and_a_refund_takes_them_back_on_its_own() {
        let sold = envelope(&PaymentCompleted(facts(3)), "2026-03-01T23:59:59Z");
        let change = RankingChange::of(&sold).unwrap().unwrap();
        assert_eq!(change.concert, ConcertId::new(3).unwrap());
        assert_eq!(change.seats, 3);
        assert_eq!(change.day_key, "{ranking}:day:2026-03-01");
        let refunded = envelope(&PaymentRefunded(facts(3)), "2026-03-02T00:00:01Z");
        let undo = RankingChange::of(&refunded).unwrap().unwrap();
        assert_eq!(undo.seats, -3);
        assert_eq!(undo.day_key, "{ranking}:day:2026-03-02");
    }

    #[test]
    fn other_events_leave_the_ranking_alone_and_a_bad_payload_is_an_error() {
        let expired = envelope(
            &ReservationExpired {
                reservation_id: ReservationId::new(5).unwrap(),
                user_id: UserId::new(42).unwrap(),
                schedule_id: ScheduleId::new(101).unwrap(),
                seat_ids: vec![],
            },
            "2026-03-01T00:00:00Z",
        );
        assert_eq!(RankingChange::of(&expired).unwrap(), None);
        let mut broken = envelope(&PaymentCompleted(facts(1)), "2026-03-01T00:00:00Z");
        broken.payload = serde_json::json!({ "paymentId": "nine" });
        assert!(RankingChange::of(&broken).is_err());
    }

    #[test]
    fn counted_marks_share_the_ranking_hash_tag() {
        let id = EventId::new(Timestamp::from_unix_millis(0), [1; 10]);
        assert!(counted_key(&id).starts_with("{ranking}:counted:"));
    }
}
