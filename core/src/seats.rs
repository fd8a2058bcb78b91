//! Seats and reservations: the hold state machine that makes double-booking impossible.
//!
//! ```text
//!             hold                 sell (pay, before expiry)
//! AVAILABLE ────────▶ HELD ──────────────────────────────▶ SOLD
//!     ▲                │  release (cancel) / expiry         │
//!     └────────────────┘◀───────────────────────────────────┘ refund
//! ```
//! A HELD seat whose hold has lapsed counts as available to the next holder even before a
//! sweeper resets it, so an abandoned hold never blocks a sale. The database applies
//! [`SeatState::is_holdable`] as the `WHERE` clause of one conditional `UPDATE`, which is what
//! makes a hold atomic across concurrent requests.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::error::{DomainError, ErrorCode};
use crate::ids::{ReservationId, ScheduleId, SeatId, UserId};
use crate::money::{Amount, MoneyError};
use crate::time::Timestamp;

/// How long holds last and how many seats one reservation may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldPolicy {
    pub hold_ttl: Duration,
    pub max_seats_per_reservation: usize,
}

impl Default for HoldPolicy {
    /// Five minutes to pay for at most four seats, as ticket sites commonly allow.
    fn default() -> Self {
        Self {
            hold_ttl: Duration::from_secs(300),
            max_seats_per_reservation: 4,
        }
    }
}

impl HoldPolicy {
    pub fn hold_expiry(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.hold_ttl)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    #[error("choose at least one seat")]
    NoSeats,
    #[error("seat {0} is listed more than once")]
    DuplicateSeat(SeatId),
    #[error("at most {max} seats per reservation")]
    TooManySeats { max: usize },
    #[error("seats {} do not exist", listed(.0))]
    UnknownSeats(Vec<SeatId>),
    #[error("seats {} do not belong to schedule {schedule}", listed(seats))]
    OtherSchedule {
        schedule: ScheduleId,
        seats: Vec<SeatId>,
    },
    #[error("{} no longer available", taken_seats(.0))]
    Unavailable(Vec<SeatId>),
    #[error("the seat is not held by this reservation")]
    NotHeldByReservation,
    #[error("the hold expired")]
    HoldExpired,
    #[error("the seat is not sold to this reservation")]
    NotSoldToReservation,
    #[error(
        "at most {cap} seats of this concert per fan: {owned} held or bought already, {requested} more asked for"
    )]
    FanCapReached {
        cap: u32,
        owned: u32,
        requested: u32,
    },
    #[error(transparent)]
    Price(#[from] MoneyError),
}

/// "7, 8": seat ids as a person reads them (`details.seatIds` lists them for programs).
fn listed(seats: &[SeatId]) -> String {
    let ids: Vec<String> = seats.iter().map(ToString::to_string).collect();
    ids.join(", ")
}

/// "seat 7 is" or "seats 7, 8 are".
fn taken_seats(seats: &[SeatId]) -> String {
    match seats {
        [one] => format!("seat {one} is"),
        many => format!("seats {} are", listed(many)),
    }
}

impl DomainError for SeatError {
    fn code(&self) -> ErrorCode {
        match self {
            SeatError::NoSeats | SeatError::DuplicateSeat(_) | SeatError::OtherSchedule { .. } => {
                ErrorCode::InvalidField
            }
            SeatError::TooManySeats { .. } | SeatError::FanCapReached { .. } => {
                ErrorCode::LimitExceeded
            }
            SeatError::UnknownSeats(_) => ErrorCode::NotFound,
            SeatError::Unavailable(_) => ErrorCode::SeatsUnavailable,
            SeatError::NotHeldByReservation | SeatError::NotSoldToReservation => {
                ErrorCode::InvalidState
            }
            SeatError::HoldExpired => ErrorCode::HoldExpired,
            SeatError::Price(error) => error.code(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            SeatError::Unavailable(seats) | SeatError::UnknownSeats(seats) => {
                Some(json!({ "seatIds": seats }))
            }
            SeatError::OtherSchedule { seats, .. } => Some(json!({ "seatIds": seats })),
            SeatError::FanCapReached {
                cap,
                owned,
                requested,
            } => Some(json!({ "cap": cap, "owned": owned, "requested": requested })),
            _ => None,
        }
    }
}

/// How many seats of one concert a fan may hold and buy, across all their reservations and
/// schedules of it: a cap per request alone lets a fan (or their bot) take a block four seats
/// at a time. A concert without a cap has no `FanCap` at all, and its holds pay nothing for
/// this rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanCap {
    seats_per_concert: NonZeroU32,
}

/// One reservation of a fan for a capped concert, as the cap counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanHolding {
    pub reservation: ReservationId,
    pub status: ReservationStatus,
    pub expires_at: Timestamp,
    /// The seats it still owns (or owned until it lapsed).
    pub seats: u32,
}

impl FanHolding {
    /// A lapsed hold owns nothing, but the store ends it before counting: its payment may
    /// have started before it lapsed and still be committing, and ending it under the row
    /// lock is what tells the two apart.
    fn has_lapsed(&self, now: Timestamp) -> bool {
        self.status == ReservationStatus::Held && now >= self.expires_at
    }

    fn owns_seats(&self, now: Timestamp) -> bool {
        match self.status {
            ReservationStatus::Confirmed => true,
            ReservationStatus::Held => now < self.expires_at,
            _ => false,
        }
    }
}

impl FanCap {
    pub const fn new(seats_per_concert: NonZeroU32) -> Self {
        Self { seats_per_concert }
    }

    pub const fn seats_per_concert(self) -> u32 {
        self.seats_per_concert.get()
    }

    /// The fan's holds that have lapsed without being ended yet: the store ends them (under
    /// their row locks) and reads the holdings again if any was not its to end.
    pub fn lapsed(holdings: &[FanHolding], now: Timestamp) -> Vec<ReservationId> {
        holdings
            .iter()
            .filter(|h| h.has_lapsed(now))
            .map(|h| h.reservation)
            .collect()
    }

    /// Whether a fan with `holdings` in the concert may hold `requested` more seats. The
    /// store calls this under a lock on the (fan, concert) pair, in the transaction that
    /// takes the seats, so two holds at once cannot both pass on the same count. A payment
    /// turns owned seats into owned seats and needs no check.
    pub fn allows(
        self,
        holdings: &[FanHolding],
        requested: usize,
        now: Timestamp,
    ) -> Result<(), SeatError> {
        let owned: u32 = holdings
            .iter()
            .filter(|h| h.owns_seats(now))
            .map(|h| h.seats)
            .sum();
        let requested = u32::try_from(requested).unwrap_or(u32::MAX);
        if owned.saturating_add(requested) <= self.seats_per_concert() {
            Ok(())
        } else {
            Err(SeatError::FanCapReached {
                cap: self.seats_per_concert(),
                owned,
                requested,
            })
        }
    }
}

/// The state of one seat, as stored in `seats.status` / `reservation_id` / `held_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeatState {
    Available,
    Held {
        reservation: ReservationId,
        until: Timestamp,
    },
    Sold {
        reservation: ReservationId,
    },
}

impl SeatState {
    /// The `seats.status` column value.
    pub const fn status(&self) -> &'static str {
        match self {
            SeatState::Available => "AVAILABLE",
            SeatState::Held { .. } => "HELD",
            SeatState::Sold { .. } => "SOLD",
        }
    }

    /// Available, or held by a hold that has lapsed.
    pub fn is_holdable(&self, now: Timestamp) -> bool {
        match self {
            SeatState::Available => true,
            SeatState::Held { until, .. } => now >= *until,
            SeatState::Sold { .. } => false,
        }
    }

    /// The reservation that owns this seat at `now`, if any: a live hold or a sale.
    pub fn owner(&self, now: Timestamp) -> Option<ReservationId> {
        match self {
            SeatState::Held { reservation, until } if now < *until => Some(*reservation),
            SeatState::Sold { reservation } => Some(*reservation),
            _ => None,
        }
    }

    /// Status as a buyer sees it: a lapsed hold shows as available.
    pub fn public_status(&self, now: Timestamp) -> &'static str {
        if self.is_holdable(now) {
            "AVAILABLE"
        } else {
            self.status()
        }
    }

    pub fn hold(
        self,
        reservation: ReservationId,
        now: Timestamp,
        policy: &HoldPolicy,
    ) -> Option<SeatState> {
        self.is_holdable(now).then(|| SeatState::Held {
            reservation,
            until: policy.hold_expiry(now),
        })
    }

    /// Sells a seat to the reservation that holds it, strictly before the hold lapses.
    pub fn sell(self, reservation: ReservationId, now: Timestamp) -> Result<SeatState, SeatError> {
        match self {
            SeatState::Held {
                reservation: holder,
                until,
            } if holder == reservation => {
                if now < until {
                    Ok(SeatState::Sold { reservation })
                } else {
                    Err(SeatError::HoldExpired)
                }
            }
            _ => Err(SeatError::NotHeldByReservation),
        }
    }

    /// Cancels a hold. Releasing a seat that the reservation no longer holds (it lapsed and
    /// someone else took it, or it was already released) changes nothing: release is
    /// idempotent and can never free another reservation's seat.
    pub fn release(self, reservation: ReservationId) -> SeatState {
        match self {
            SeatState::Held {
                reservation: holder,
                ..
            } if holder == reservation => SeatState::Available,
            other => other,
        }
    }

    /// Returns a sold seat to sale when its payment is refunded.
    pub fn refund(self, reservation: ReservationId) -> Result<SeatState, SeatError> {
        match self {
            SeatState::Sold { reservation: owner } if owner == reservation => {
                Ok(SeatState::Available)
            }
            _ => Err(SeatError::NotSoldToReservation),
        }
    }
}

/// A validated request for seats: non-empty, no duplicates, within the per-reservation limit.
/// Seats are kept sorted so every transaction locks rows in the same order (no deadlocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatSelection {
    schedule: ScheduleId,
    seats: Vec<SeatId>,
}

impl SeatSelection {
    pub fn new(
        schedule: ScheduleId,
        seats: &[SeatId],
        policy: &HoldPolicy,
    ) -> Result<Self, SeatError> {
        if seats.is_empty() {
            return Err(SeatError::NoSeats);
        }
        if seats.len() > policy.max_seats_per_reservation {
            return Err(SeatError::TooManySeats {
                max: policy.max_seats_per_reservation,
            });
        }
        let mut unique = BTreeSet::new();
        for seat in seats {
            if !unique.insert(*seat) {
                return Err(SeatError::DuplicateSeat(*seat));
            }
        }
        Ok(Self {
            schedule,
            seats: unique.into_iter().collect(),
        })
    }

    pub fn schedule(&self) -> ScheduleId {
        self.schedule
    }

    /// The seat ids in ascending order.
    pub fn seats(&self) -> &[SeatId] {
        &self.seats
    }

    /// Checks the seats found in storage against the selection: all must exist and belong
    /// to the selected schedule. Returns the reservation total.
    pub fn price(&self, found: &[SeatListing]) -> Result<Amount, SeatError> {
        let unknown: Vec<SeatId> = self
            .seats
            .iter()
            .filter(|id| !found.iter().any(|s| s.seat == **id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            return Err(SeatError::UnknownSeats(unknown));
        }
        let foreign: Vec<SeatId> = found
            .iter()
            .filter(|s| s.schedule != self.schedule)
            .map(|s| s.seat)
            .collect();
        if !foreign.is_empty() {
            return Err(SeatError::OtherSchedule {
                schedule: self.schedule,
                seats: foreign,
            });
        }
        Amount::sum(
            found
                .iter()
                .filter(|s| self.seats.contains(&s.seat))
                .map(|s| s.price),
        )
        .map_err(SeatError::from)
    }

    /// Refuses, naming them, when any of the seats cannot be held at `now`.
    pub fn ensure_holdable(
        states: &[(SeatId, SeatState)],
        now: Timestamp,
    ) -> Result<(), SeatError> {
        let taken: Vec<SeatId> = states
            .iter()
            .filter(|(_, state)| !state.is_holdable(now))
            .map(|(id, _)| *id)
            .collect();
        if taken.is_empty() {
            Ok(())
        } else {
            Err(SeatError::Unavailable(taken))
        }
    }

    /// Refuses, naming them, when a seat map read moments ago shows any of the seats taken:
    /// in a rush for a few seats that is almost every hold, and it needs no database.
    /// `schedule_seats` are all the schedule's seats, `free` those the map shows free. A seat
    /// the schedule does not list passes, for the database to name what is wrong with it.
    pub fn ensure_free_on_map(
        &self,
        schedule_seats: &BTreeSet<SeatId>,
        free: &BTreeSet<SeatId>,
    ) -> Result<(), SeatError> {
        if !self.seats.iter().all(|seat| schedule_seats.contains(seat)) {
            return Ok(());
        }
        let taken: Vec<SeatId> = self
            .seats
            .iter()
            .filter(|seat| !free.contains(seat))
            .copied()
            .collect();
        if taken.is_empty() {
            Ok(())
        } else {
            Err(SeatError::Unavailable(taken))
        }
    }

    /// Tries to hold every selected seat at once: all or none. `states` are the current
    /// states of the selected seats. On refusal nothing changes and the error names the
    /// seats that are taken.
    pub fn hold_all(
        &self,
        states: &[(SeatId, SeatState)],
        reservation: ReservationId,
        now: Timestamp,
        policy: &HoldPolicy,
    ) -> Result<Vec<(SeatId, SeatState)>, SeatError> {
        Self::ensure_holdable(states, now)?;
        Ok(states
            .iter()
            .filter_map(|(id, state)| state.hold(reservation, now, policy).map(|s| (*id, s)))
            .collect())
    }
}

/// Which seat numbers of a schedule are holdable, as a bitmap in chunks of
/// [`SeatNumbers::CHUNK_BITS`]: chunk `n` has bit `b` set when seat `n * 64 + b` is free.
/// A seat map reads its free seats this way, a row per 64 seats instead of a row per seat,
/// because Spin hands a query's rows to the component one at a time and a crowd makes
/// each hand-over wait its turn (a 500-seat map took seconds to read under a cold-cache
/// rush); the seats themselves never change and are cached apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeatNumbers {
    chunks: std::collections::BTreeMap<u64, u64>,
}

impl SeatNumbers {
    pub const CHUNK_BITS: u64 = 64;

    /// From `(seat_no DIV 64, BIT_OR(1 << (seat_no MOD 64)))` rows.
    pub fn from_chunks(chunks: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut numbers = Self::default();
        for (chunk, bits) in chunks {
            *numbers.chunks.entry(chunk).or_default() |= bits;
        }
        numbers
    }

    pub fn contains(&self, seat_no: u64) -> bool {
        self.chunks
            .get(&(seat_no / Self::CHUNK_BITS))
            .is_some_and(|bits| bits & (1 << (seat_no % Self::CHUNK_BITS)) != 0)
    }
}

/// A seat as a buyer sees it in a seat map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatListing {
    #[serde(rename = "seatId")]
    pub seat: SeatId,
    #[serde(rename = "scheduleId")]
    pub schedule: ScheduleId,
    pub price: Amount,
}

/// The lifecycle of a reservation (the `reservations.status` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Expired,
    Cancelled,
    Refunded,
}

impl ReservationStatus {
    const ALL: [ReservationStatus; 5] = [
        ReservationStatus::Held,
        ReservationStatus::Confirmed,
        ReservationStatus::Expired,
        ReservationStatus::Cancelled,
        ReservationStatus::Refunded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Held => "HELD",
            ReservationStatus::Confirmed => "CONFIRMED",
            ReservationStatus::Expired => "EXPIRED",
            ReservationStatus::Cancelled => "CANCELLED",
            ReservationStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("reservation {0} belongs to another user")]
    NotOwner(ReservationId),
    #[error("reservation {id} is {status:?}, not {expected:?}")]
    WrongStatus {
        id: ReservationId,
        status: ReservationStatus,
        expected: ReservationStatus,
    },
    #[error("the hold on reservation {0} expired")]
    Expired(ReservationId),
}

impl DomainError for ReservationError {
    fn code(&self) -> ErrorCode {
        match self {
            ReservationError::NotOwner(_) => ErrorCode::Forbidden,
            ReservationError::WrongStatus { .. } => ErrorCode::InvalidState,
            ReservationError::Expired(_) => ErrorCode::HoldExpired,
        }
    }
}

/// A reservation as stored: who holds which seats of which schedule until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    #[serde(rename = "reservationId")]
    pub id: ReservationId,
    pub user_id: UserId,
    pub schedule_id: ScheduleId,
    pub status: ReservationStatus,
    pub seat_ids: Vec<SeatId>,
    pub amount: Amount,
    pub expires_at: Timestamp,
}

impl Reservation {
    /// Only the holder may see, pay or cancel a reservation.
    pub fn ensure_owner(&self, user: UserId) -> Result<(), ReservationError> {
        if self.user_id == user {
            Ok(())
        } else {
            Err(ReservationError::NotOwner(self.id))
        }
    }

    /// The status at `now`: a HELD reservation past its expiry is EXPIRED even if no
    /// sweeper has written that yet.
    pub fn effective_status(&self, now: Timestamp) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if now >= self.expires_at => ReservationStatus::Expired,
            status => status,
        }
    }

    /// Whether the reservation still owns its seats at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        matches!(
            self.effective_status(now),
            ReservationStatus::Held | ReservationStatus::Confirmed
        )
    }

    fn ensure_status(
        &self,
        now: Timestamp,
        expected: ReservationStatus,
    ) -> Result<(), ReservationError> {
        match self.effective_status(now) {
            status if status == expected => Ok(()),
            ReservationStatus::Expired if self.status == ReservationStatus::Held => {
                Err(ReservationError::Expired(self.id))
            }
            status => Err(ReservationError::WrongStatus {
                id: self.id,
                status,
                expected,
            }),
        }
    }

    /// A payment may start only for a live hold.
    pub fn ensure_payable(&self, now: Timestamp) -> Result<(), ReservationError> {
        self.ensure_status(now, ReservationStatus::Held)
    }

    /// The status after a successful payment.
    pub fn confirm(&self, now: Timestamp) -> Result<ReservationStatus, ReservationError> {
        self.ensure_payable(now)
            .map(|()| ReservationStatus::Confirmed)
    }

    /// The status after the holder cancels: only a live hold can be cancelled.
    pub fn cancel(&self, now: Timestamp) -> Result<ReservationStatus, ReservationError> {
        self.ensure_status(now, ReservationStatus::Held)
            .map(|()| ReservationStatus::Cancelled)
    }

    /// The status after a sweeper finds the hold lapsed; `None` if it has not lapsed.
    pub fn expire(&self, now: Timestamp) -> Option<ReservationStatus> {
        (self.status == ReservationStatus::Held && now >= self.expires_at)
            .then_some(ReservationStatus::Expired)
    }

    /// The status after the payment for a confirmed reservation is refunded.
    pub fn refund(&self, now: Timestamp) -> Result<ReservationStatus, ReservationError> {
        self.ensure_status(now, ReservationStatus::Confirmed)
            .map(|()| ReservationStatus::Refunded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    fn seat(id: u64) -> SeatId {
        SeatId::new(id).unwrap()
    }
    fn res(id: u64) -> ReservationId {
        ReservationId::new(id).unwrap()
    }
    fn schedule(id: u64) -> ScheduleId {
        ScheduleId::new(id).unwrap()
    }
    fn later(ms: u64) -> Timestamp {
        T0.saturating_add(Duration::from_millis(ms))
    }

    #[test]
    fn seats_a_hold_cannot_take_are_named_as_people_read_them() {
        assert_eq!(
            SeatError::Unavailable(vec![seat(7)]).to_string(),
            "seat 7 is no longer available"
        );
        assert_eq!(
            SeatError::Unavailable(vec![seat(7), seat(8)]).to_string(),
            "seats 7, 8 are no longer available"
        );
        assert_eq!(
            SeatError::UnknownSeats(vec![seat(9)]).to_string(),
            "seats 9 do not exist"
        );
    }

    #[test]
    fn an_available_seat_can_be_held_until_the_ttl() {
        let policy = HoldPolicy::default();
        let held = SeatState::Available.hold(res(1), T0, &policy).unwrap();
        assert_eq!(
            held,
            SeatState::Held {
                reservation: res(1),
                until: later(300_000)
            }
        );
        assert_eq!(held.owner(later(299_999)), Some(res(1)));
        assert_eq!(held.owner(later(300_000)), None);
    }

    #[test]
    fn a_live_hold_cannot_be_taken_but_a_lapsed_one_can() {
        let policy = HoldPolicy::default();
        let held = SeatState::Available.hold(res(1), T0, &policy).unwrap();
        assert_eq!(held.hold(res(2), later(1_000), &policy), None);
        assert!(held.hold(res(2), later(300_000), &policy).is_some());
    }

    #[test]
    fn a_sold_seat_is_never_holdable() {
        let sold = SeatState::Sold {
            reservation: res(1),
        };
        assert!(!sold.is_holdable(later(10_000_000_000)));
        assert_eq!(sold.public_status(T0), "SOLD");
    }

    #[test]
    fn a_seat_sells_only_to_its_holder_before_expiry() {
        let held = SeatState::Held {
            reservation: res(1),
            until: later(1_000),
        };
        assert_eq!(held.sell(res(2), T0), Err(SeatError::NotHeldByReservation));
        assert_eq!(held.sell(res(1), later(1_000)), Err(SeatError::HoldExpired));
        assert_eq!(
            held.sell(res(1), later(999)),
            Ok(SeatState::Sold {
                reservation: res(1)
            })
        );
    }

    #[test]
    fn releasing_never_frees_another_reservations_seat() {
        let held = SeatState::Held {
            reservation: res(2),
            until: later(1_000),
        };
        assert_eq!(held.release(res(1)), held);
        assert_eq!(held.release(res(2)), SeatState::Available);
        assert_eq!(
            SeatState::Sold {
                reservation: res(2)
            }
            .release(res(2)),
            SeatState::Sold {
                reservation: res(2)
            }
        );
    }

    #[test]
    fn a_refund_returns_only_the_refunded_reservations_seat() {
        let sold = SeatState::Sold {
            reservation: res(1),
        };
        assert_eq!(sold.refund(res(1)), Ok(SeatState::Available));
        assert_eq!(sold.refund(res(2)), Err(SeatError::NotSoldToReservation));
    }

    #[test]
    fn a_selection_rejects_empty_duplicate_and_oversized_lists() {
        let policy = HoldPolicy::default();
        assert_eq!(
            SeatSelection::new(schedule(1), &[], &policy),
            Err(SeatError::NoSeats)
        );
        assert_eq!(
            SeatSelection::new(schedule(1), &[seat(3), seat(3)], &policy),
            Err(SeatError::DuplicateSeat(seat(3)))
        );
        let five: Vec<SeatId> = (1..=5).map(seat).collect();
        assert_eq!(
            SeatSelection::new(schedule(1), &five, &policy),
            Err(SeatError::TooManySeats { max: 4 })
        );
    }

    #[test]
    fn a_selection_is_sorted_so_row_locks_are_taken_in_one_order() {
        let selection = SeatSelection::new(
            schedule(1),
            &[seat(9), seat(2), seat(5)],
            &HoldPolicy::default(),
        )
        .unwrap();
        assert_eq!(selection.seats(), &[seat(2), seat(5), seat(9)]);
    }

    #[test]
    fn pricing_rejects_unknown_seats_and_seats_of_another_schedule() {
        let selection =
            SeatSelection::new(schedule(1), &[seat(1), seat(2)], &HoldPolicy::default()).unwrap();
        let price = Amount::new(50_000).unwrap();
        let listing = |s, sch| SeatListing {
            seat: seat(s),
            schedule: schedule(sch),
            price,
        };
        assert_eq!(
            selection.price(&[listing(1, 1)]),
            Err(SeatError::UnknownSeats(vec![seat(2)]))
        );
        assert!(matches!(
            selection.price(&[listing(1, 1), listing(2, 7)]),
            Err(SeatError::OtherSchedule { .. })
        ));
        assert_eq!(
            selection.price(&[listing(1, 1), listing(2, 1)]),
            Ok(Amount::new(100_000).unwrap())
        );
    }

    #[test]
    fn a_seat_map_refuses_only_seats_of_the_schedule_it_shows_taken() {
        let selection =
            SeatSelection::new(schedule(1), &[seat(1), seat(2)], &HoldPolicy::default()).unwrap();
        let ids = |ids: &[u64]| ids.iter().map(|&s| seat(s)).collect::<BTreeSet<_>>();
        let schedule_seats = ids(&[1, 2, 3]);
        assert_eq!(
            selection.ensure_free_on_map(&schedule_seats, &ids(&[1, 2])),
            Ok(())
        );
        assert_eq!(
            selection.ensure_free_on_map(&schedule_seats, &ids(&[1, 3])),
            Err(SeatError::Unavailable(vec![seat(2)]))
        );
        assert_eq!(
            selection.ensure_free_on_map(&schedule_seats, &ids(&[])),
            Err(SeatError::Unavailable(vec![seat(1), seat(2)]))
        );
        // Seat 2 is not the schedule's: the database answers why.
        assert_eq!(
            selection.ensure_free_on_map(&ids(&[1, 3]), &ids(&[])),
            Ok(())
        );
    }

    #[test]
    fn holding_is_all_or_nothing_and_names_the_taken_seats() {
        let policy = HoldPolicy::default();
        let selection = SeatSelection::new(schedule(1), &[seat(1), seat(2)], &policy).unwrap();
        let states = [
            (seat(1), SeatState::Available),
            (
                seat(2),
                SeatState::Held {
                    reservation: res(9),
                    until: later(5_000),
                },
            ),
        ];
        let error = selection
            .hold_all(&states, res(10), T0, &policy)
            .unwrap_err();
        assert_eq!(error, SeatError::Unavailable(vec![seat(2)]));
        let api = crate::ApiError::from(error);
        assert_eq!(api.http_status(), 409);
        assert_eq!(api.details, Some(json!({ "seatIds": [2] })));
        let held = selection
            .hold_all(&states, res(10), later(5_000), &policy)
            .unwrap();
        assert!(
            held.iter()
                .all(|(_, s)| s.owner(later(5_000)) == Some(res(10)))
        );
    }

    fn reservation(status: ReservationStatus) -> Reservation {
        Reservation {
            id: res(1),
            user_id: UserId::new(7).unwrap(),
            schedule_id: schedule(1),
            status,
            seat_ids: vec![seat(1)],
            amount: Amount::new(50_000).unwrap(),
            expires_at: later(1_000),
        }
    }

    #[test]
    fn a_held_reservation_is_payable_until_it_expires() {
        let r = reservation(ReservationStatus::Held);
        assert_eq!(r.confirm(later(999)), Ok(ReservationStatus::Confirmed));
        assert_eq!(
            r.confirm(later(1_000)),
            Err(ReservationError::Expired(res(1)))
        );
        assert_eq!(
            crate::ApiError::from(ReservationError::Expired(res(1))).http_status(),
            410
        );
    }

    #[test]
    fn only_the_owner_may_act_on_a_reservation() {
        let r = reservation(ReservationStatus::Held);
        assert!(r.ensure_owner(UserId::new(7).unwrap()).is_ok());
        let error = r.ensure_owner(UserId::new(8).unwrap()).unwrap_err();
        assert_eq!(crate::ApiError::from(error).http_status(), 403);
    }

    #[test]
    fn a_confirmed_reservation_cannot_be_cancelled_or_paid_again_but_can_be_refunded() {
        let r = reservation(ReservationStatus::Confirmed);
        assert!(matches!(
            r.cancel(T0),
            Err(ReservationError::WrongStatus { .. })
        ));
        assert!(matches!(
            r.confirm(T0),
            Err(ReservationError::WrongStatus { .. })
        ));
        assert_eq!(r.refund(later(5_000)), Ok(ReservationStatus::Refunded));
        assert!(r.is_live(later(10_000_000)));
    }

    #[test]
    fn a_lapsed_hold_reads_as_expired_before_any_sweeper_runs() {
        let r = reservation(ReservationStatus::Held);
        assert_eq!(r.effective_status(later(1_000)), ReservationStatus::Expired);
        assert_eq!(r.expire(later(999)), None);
        assert_eq!(r.expire(later(1_000)), Some(ReservationStatus::Expired));
        assert!(!r.is_live(later(1_000)));
    }

    #[test]
    fn statuses_round_trip_through_their_column_names() {
        for status in ReservationStatus::ALL {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hold(Vec<u64>),
        Pay(usize),
        Cancel(usize),
        Refund(usize),
        Sweep,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(1u64..=8, 1..=4).prop_map(Op::Hold),
            2 => any::<usize>().prop_map(Op::Pay),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => any::<usize>().prop_map(Op::Refund),
            1 => Just(Op::Sweep),
            2 => (0u64..200_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// The bitmap holds exactly the seat numbers put in, whatever the order of the
        /// chunks SQL aggregates or how they split (here: a chunk row per seat).
        #[test]
        fn seat_numbers_contain_exactly_the_free_seats(
            free in proptest::collection::btree_set(0u64..1_000, 0..300),
            probe in 0u64..1_100,
        ) {
            let chunks: Vec<(u64, u64)> = free
                .iter()
                .map(|n| (n / SeatNumbers::CHUNK_BITS, 1 << (n % SeatNumbers::CHUNK_BITS)))
                .collect();
            let numbers = SeatNumbers::from_chunks(chunks.iter().copied());
            prop_assert_eq!(numbers.contains(probe), free.contains(&probe));
            prop_assert_eq!(SeatNumbers::from_chunks(chunks.into_iter().rev()), numbers);
        }
    }

    proptest! {
        /// Random holds, payments, cancels, refunds, sweeps and waits over an 8-seat
        /// schedule, applied through the state machine exactly as a store applies it. After
        /// every step no seat belongs to two live reservations, and every live reservation
        /// still owns each of its seats.
        #[test]
        fn no_seat_is_ever_in_two_live_holds(ops in proptest::collection::vec(op(), 1..80)) {
            let policy = HoldPolicy { hold_ttl: Duration::from_secs(60), max_seats_per_reservation: 4 };
            let mut now = T0;
            let mut seats: BTreeMap<SeatId, SeatState> = (1..=8).map(|i| (seat(i), SeatState::Available)).collect();
            let mut reservations: Vec<Reservation> = Vec::new();
            for op in ops {
                match op {
                    Op::Hold(ids) => {
                        let ids: Vec<SeatId> = ids.into_iter().map(seat).collect();
                        let Ok(selection) = SeatSelection::new(schedule(1), &ids, &policy) else { continue };
                        let id = res(reservations.len() as u64 + 1);
                        let states: Vec<(SeatId, SeatState)> = selection.seats().iter().map(|s| (*s, seats[s])).collect();
                        if let Ok(held) = selection.hold_all(&states, id, now, &policy) {
                            // Taking a lapsed hold expires the reservation that had it.
                            for (seat_id, _) in &states {
                                for r in reservations.iter_mut().filter(|r| r.seat_ids.contains(seat_id)) {
                                    if let Some(status) = r.expire(now) { r.status = status; }
                                }
                            }
                            seats.extend(held);
                            reservations.push(Reservation {
                                id,
                                user_id: UserId::new(1).unwrap(),
                                schedule_id: schedule(1),
                                status: ReservationStatus::Held,
                                seat_ids: selection.seats().to_vec(),
                                amount: Amount::new(1).unwrap(),
                                expires_at: policy.hold_expiry(now),
                            });
                        }
                    }
                    Op::Pay(i) if !reservations.is_empty() => {
                        let n = reservations.len();
                        let r = &mut reservations[i % n];
                        if let Ok(status) = r.confirm(now) {
                            let sold: Result<Vec<_>, _> = r.seat_ids.iter().map(|s| seats[s].sell(r.id, now).map(|st| (*s, st))).collect();
                            let sold = sold.expect("a payable reservation holds all its seats");
                            seats.extend(sold);
                            r.status = status;
                        }
                    }
                    Op::Cancel(i) if !reservations.is_empty() => {
                        let n = reservations.len();
                        let r = &mut reservations[i % n];
                        if let Ok(status) = r.cancel(now) {
                            for s in &r.seat_ids { seats.insert(*s, seats[s].release(r.id)); }
                            r.status = status;
                        }
                    }
                    Op::Refund(i) if !reservations.is_empty() => {
                        let n = reservations.len();
                        let r = &mut reservations[i % n];
                        if let Ok(status) = r.refund(now) {
                            for s in &r.seat_ids { seats.insert(*s, seats[s].refund(r.id).expect("a confirmed reservation owns its sold seats")); }
                            r.status = status;
                        }
                    }
                    Op::Sweep => {
                        for r in reservations.iter_mut() {
                            if let Some(status) = r.expire(now) {
                                for s in &r.seat_ids { seats.insert(*s, seats[s].release(r.id)); }
                                r.status = status;
                            }
                        }
                    }
                    Op::Wait(ms) => now = now.saturating_add(Duration::from_millis(ms)),
                    _ => {}
                }
                let mut owner_of: BTreeMap<SeatId, ReservationId> = BTreeMap::new();
                for r in reservations.iter().filter(|r| r.is_live(now)) {
                    for s in &r.seat_ids {
                        prop_assert!(owner_of.insert(*s, r.id).is_none(), "seat {} in two live reservations", s);
                        prop_assert_eq!(seats[s].owner(now), Some(r.id));
                    }
                }
                for (s, state) in &seats {
                    if let Some(owner) = state.owner(now) {
                        prop_assert_eq!(owner_of.get(s), Some(&owner), "seat {} owned by a dead reservation", s);
                    }
                }
            }
        }
    }

    fn cap(seats: u32) -> FanCap {
        FanCap::new(NonZeroU32::new(seats).unwrap())
    }

    fn holding(id: u64, status: ReservationStatus, seats: u32) -> FanHolding {
        FanHolding {
            reservation: res(id),
            status,
            expires_at: later(1_000),
            seats,
        }
    }

    #[test]
    fn the_fan_cap_counts_live_holds_and_purchases_across_reservations() {
        let holdings = [
            holding(1, ReservationStatus::Held, 2),
            holding(2, ReservationStatus::Confirmed, 1),
            holding(3, ReservationStatus::Refunded, 4),
            holding(4, ReservationStatus::Cancelled, 4),
        ];
        assert_eq!(cap(4).allows(&holdings, 1, T0), Ok(()));
        let refused = cap(4).allows(&holdings, 2, T0).unwrap_err();
        assert_eq!(
            refused,
            SeatError::FanCapReached {
                cap: 4,
                owned: 3,
                requested: 2
            }
        );
        let api = crate::ApiError::from(refused);
        assert_eq!(api.http_status(), 422);
        assert_eq!(
            api.details,
            Some(json!({ "cap": 4, "owned": 3, "requested": 2 }))
        );
    }

    #[test]
    fn a_lapsed_hold_counts_nothing_but_is_named_for_the_store_to_end_first() {
        let holdings = [
            holding(1, ReservationStatus::Held, 4),
            holding(2, ReservationStatus::Confirmed, 1),
        ];
        assert_eq!(FanCap::lapsed(&holdings, later(999)), vec![]);
        assert!(cap(4).allows(&holdings, 1, later(999)).is_err());
        assert_eq!(FanCap::lapsed(&holdings, later(1_000)), vec![res(1)]);
        assert_eq!(cap(4).allows(&holdings, 3, later(1_000)), Ok(()));
    }

    #[derive(Debug, Clone)]
    enum FanOp {
        Hold {
            fan: u64,
            seats: usize,
        },
        /// A payment locks its reservation and checks it is payable, then commits later.
        PayBegins(usize),
        PayCommits,
        Cancel(usize),
        Refund(usize),
        Sweep,
        Wait(u64),
    }

    fn fan_op() -> impl Strategy<Value = FanOp> {
        prop_oneof![
            4 => (1u64..=3, 1usize..=4).prop_map(|(fan, seats)| FanOp::Hold { fan, seats }),
            2 => any::<usize>().prop_map(FanOp::PayBegins),
            1 => Just(FanOp::PayCommits),
            1 => any::<usize>().prop_map(FanOp::Cancel),
            1 => any::<usize>().prop_map(FanOp::Refund),
            1 => Just(FanOp::Sweep),
            2 => (0u64..90_000).prop_map(FanOp::Wait),
        ]
    }

    proptest! {
        /// Random holds, payments (which may start before a hold lapses and commit after),
        /// cancels, refunds, sweeps and waits by three fans, with holds following the store's
        /// protocol: end the fan's lapsed holds (a pending payment on one commits first, as
        /// its row lock makes the ending wait), read the holdings again, then ask the cap.
        /// No fan ever owns more seats of the concert than the cap, counting pending payments.
        #[test]
        fn no_sequence_of_holds_and_payments_takes_a_fan_past_the_cap(
            seats_per_fan in 1u32..=6,
            ops in proptest::collection::vec(fan_op(), 1..100),
        ) {
            let fan_cap = cap(seats_per_fan);
            let ttl = Duration::from_secs(60);
            let mut now = T0;
            let mut reservations: Vec<(u64, FanHolding)> = Vec::new();
            let mut paying: Option<usize> = None;
            let commit = |reservations: &mut Vec<(u64, FanHolding)>, paying: &mut Option<usize>| {
                if let Some(i) = paying.take() {
                    reservations[i].1.status = ReservationStatus::Confirmed;
                }
            };
            for op in ops {
                match op {
                    FanOp::Hold { fan, seats } => {
                        let mine = |all: &[(u64, FanHolding)]| -> Vec<FanHolding> {
                            all.iter().filter(|(f, _)| *f == fan).map(|(_, h)| *h).collect()
                        };
                        for lapsed in FanCap::lapsed(&mine(&reservations), now) {
                            let i = reservations.iter().position(|(_, h)| h.reservation == lapsed).unwrap();
                            if paying == Some(i) {
                                commit(&mut reservations, &mut paying);
                            } else {
                                reservations[i].1.status = ReservationStatus::Expired;
                            }
                        }
                        if fan_cap.allows(&mine(&reservations), seats, now).is_ok() {
                            let id = res(reservations.len() as u64 + 1);
                            reservations.push((fan, FanHolding {
                                reservation: id,
                                status: ReservationStatus::Held,
                                expires_at: now.saturating_add(ttl),
                                seats: seats as u32,
                            }));
                        }
                    }
                    FanOp::PayBegins(i) if !reservations.is_empty() && paying.is_none() => {
                        let i = i % reservations.len();
                        let h = reservations[i].1;
                        if h.status == ReservationStatus::Held && now < h.expires_at {
                            paying = Some(i);
                        }
                    }
                    FanOp::PayCommits => commit(&mut reservations, &mut paying),
                    FanOp::Cancel(i) if !reservations.is_empty() => {
                        let i = i % reservations.len();
                        let h = &mut reservations[i].1;
                        if paying != Some(i) && h.status == ReservationStatus::Held && now < h.expires_at {
                            h.status = ReservationStatus::Cancelled;
                        }
                    }
                    FanOp::Refund(i) if !reservations.is_empty() => {
                        let i = i % reservations.len();
                        let h = &mut reservations[i].1;
                        if h.status == ReservationStatus::Confirmed {
                            h.status = ReservationStatus::Refunded;
                        }
                    }
                    FanOp::Sweep => {
                        for (i, (_, h)) in reservations.iter_mut().enumerate() {
                            if paying != Some(i) && h.has_lapsed(now) {
                                h.status = ReservationStatus::Expired;
                            }
                        }
                    }
                    FanOp::Wait(ms) => now = now.saturating_add(Duration::from_millis(ms)),
                    _ => {}
                }
                for fan in 1..=3 {
                    let owned: u32 = reservations
                        .iter()
                        .enumerate()
                        .filter(|(i, (f, h))| *f == fan && (h.owns_seats(now) || paying == Some(*i)))
                        .map(|(_, (_, h))| h.seats)
                        .sum();
                    prop_assert!(owned <= seats_per_fan, "fan {} owns {} of {}", fan, owned, seats_per_fan);
                }
            }
        }
    }
}
