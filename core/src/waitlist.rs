//! The waitlist of a sold-out concert.
//!
//! A fan told `SOLD_OUT` by a queue selling the concert may put their name on its waitlist
//! instead of polling on. Every seat that comes back (a release, a lapsed hold, a refund) is
//! offered, in the order fans joined, to the first fan not yet offered one: the offer is a
//! hold of that seat for the fan with its own short TTL, paid like any hold. An offer not
//! paid in time lapses like any hold, and its seat goes to the next fan. While fans wait on
//! the list they have first claim on returning seats, so the queue stays sold out until the
//! list is through.
//!
//! Adapters keep the entries (MySQL) and make a round of offers in one transaction with
//! their events (`WaitlistOffered`, a notification); these functions only decide.

use std::time::Duration;

use crate::error::{DomainError, ErrorCode};
use crate::ids::{ConcertId, QueueId, ReservationId, UserId};
use crate::pass::TokenKind;
use crate::sale::Stock;
use crate::seats::{FanCap, FanHolding};
use crate::time::Timestamp;

/// How long a fan has to pay an offered seat before it passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferPolicy {
    ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitlistError {
    #[error("an offer must last between {}s and {}s", OfferPolicy::SHORTEST.as_secs(), OfferPolicy::LONGEST.as_secs())]
    OfferTtlOutOfRange,
    #[error("concert {0} still has seats open to a hold: keep your place in its queue")]
    NotSoldOut(ConcertId),
    #[error("queue {queue} does not sell concert {concert}")]
    OtherConcert { queue: QueueId, concert: ConcertId },
    #[error("you are not on the waitlist of concert {0}")]
    NotListed(ConcertId),
    #[error("reservation {0} is not a waitlist offer: paying or releasing it takes a pass")]
    PassNeeded(ReservationId),
}

impl DomainError for WaitlistError {
    fn code(&self) -> ErrorCode {
        match self {
            WaitlistError::OfferTtlOutOfRange => ErrorCode::InvalidField,
            WaitlistError::NotSoldOut(_) => ErrorCode::InvalidState,
            WaitlistError::OtherConcert { .. } => ErrorCode::Forbidden,
            WaitlistError::NotListed(_) => ErrorCode::NotFound,
            WaitlistError::PassNeeded(_) => ErrorCode::TokenWrongKind,
        }
    }
}

impl OfferPolicy {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(120);
    /// Shorter would expire offers before a notified fan could open them; tests use it.
    pub const SHORTEST: Duration = Duration::from_secs(2);
    /// Longer would leave a returned seat unsold while the rest of the list waits.
    pub const LONGEST: Duration = Duration::from_secs(15 * 60);

    pub fn new(ttl: Duration) -> Result<Self, WaitlistError> {
        if (Self::SHORTEST..=Self::LONGEST).contains(&ttl) {
            Ok(Self { ttl })
        } else {
            Err(WaitlistError::OfferTtlOutOfRange)
        }
    }

    pub const fn ttl(self) -> Duration {
        self.ttl
    }

    /// When an offer made at `now` lapses.
    pub fn expiry(self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.ttl)
    }
}

impl Default for OfferPolicy {
    fn default() -> Self {
        Self {
            ttl: Self::DEFAULT_TTL,
        }
    }
}

/// What a queue may still sell of a concert: the seats open to a hold, less those the fans
/// waiting on its list have first claim on. The bridge hands this count to the queues, so a
/// seat that comes back while fans wait on the list goes to the list, not to the line.
pub fn open_to_queue(holdable: u64, waiting: u64) -> Stock {
    Stock {
        holdable: holdable.saturating_sub(waiting),
    }
}

/// Whether a fan whose ticket belongs to `queue` may join the waitlist of `concert`: only
/// from a queue that sells it, and only once it is sold out to the queue. A fan who could
/// still be admitted belongs in the line, where admission follows the line's order; a
/// list open before sell-out would let fans jump it.
pub fn ensure_may_join(
    concert: ConcertId,
    queue: &QueueId,
    queue_sells_concert: bool,
    open: Stock,
) -> Result<(), WaitlistError> {
    if !queue_sells_concert {
        Err(WaitlistError::OtherConcert {
            queue: queue.clone(),
            concert,
        })
    } else if !open.is_sold_out() {
        Err(WaitlistError::NotSoldOut(concert))
    } else {
        Ok(())
    }
}

/// When a fan on the list should look again: soon near the front, where an offer is
/// near and lasts only its TTL, up to `LONGEST_POLL_PAUSE` far back, so a long list costs
/// a bounded rate of reads. An offer is also notified; polling is the page's fallback.
pub fn poll_pause(ahead: u64) -> Duration {
    let ahead = u32::try_from(ahead.min(AHEAD_COUNTED_UP_TO)).unwrap_or(u32::MAX);
    (SHORTEST_POLL_PAUSE + POLL_PAUSE_PER_FAN_AHEAD.saturating_mul(ahead)).min(LONGEST_POLL_PAUSE)
}

/// How many fans ahead a waitlist answer counts at most: far enough back that the pace is
/// the longest, so a count further would change nothing but its cost.
pub const AHEAD_COUNTED_UP_TO: u64 = 500;
const SHORTEST_POLL_PAUSE: Duration = Duration::from_secs(2);
const POLL_PAUSE_PER_FAN_AHEAD: Duration = Duration::from_millis(56);
pub const LONGEST_POLL_PAUSE: Duration = Duration::from_secs(30);

/// A fan waiting on the list, with what the concert's cap counts of theirs.
#[derive(Clone, Copy, Debug)]
pub struct WaitingFan<'a> {
    /// The entry's place on the list: entries are offered in ascending order.
    pub entry: u64,
    pub user: UserId,
    pub holdings: &'a [FanHolding],
}

/// What one round does with one waiting fan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<S> {
    /// Offer `seat` to the fan of `entry`.
    Offer { entry: u64, user: UserId, seat: S },
    /// The fan already owns as many seats of the concert as its cap allows: their turn is
    /// over, and the seat goes to the next fan.
    PassOver { entry: u64 },
}

/// One round of offers: `seats` (the concert's free seats, in the order they are to be
/// offered) go to the `waiting` fans (in list order) one each, skipping fans at the
/// concert's `cap`. A fan with a lapsed hold not yet ended ends the round: until that hold
/// ends, whether its payment committed in time is unknown, and so is the fan's count; the
/// next round, after the sweeper, takes them in turn. No later fan is served before them.
pub fn plan_offers<S: Copy>(
    waiting: &[WaitingFan<'_>],
    seats: &[S],
    cap: Option<FanCap>,
    now: Timestamp,
) -> Vec<Decision<S>> {
    let mut seats = seats.iter().copied();
    let mut decisions = Vec::new();
    let mut next_seat = seats.next();
    for fan in waiting {
        let Some(seat) = next_seat else {
            break;
        };
        if let Some(cap) = cap {
            if !FanCap::lapsed(fan.holdings, now).is_empty() {
                break;
            }
            if cap.allows(fan.holdings, 1, now).is_err() {
                decisions.push(Decision::PassOver { entry: fan.entry });
                continue;
            }
        }
        decisions.push(Decision::Offer {
            entry: fan.entry,
            user: fan.user,
            seat,
        });
        next_seat = seats.next();
    }
    decisions
}

/// What lets a fan pay for or let go of a hold, besides owning it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAdmission {
    /// A pass, which must still be active in its queue to pay, and is consumed by the payment.
    ActivePass,
    /// A waitlist offer: the system chose this fan for this seat, which admits them as a
    /// pass would. Their queue ticket says who they are.
    WaitlistOffer,
}

/// Who may pay for or decline `reservation`: a pass holder always (subject to the queue's
/// check); the holder of a queue ticket or draw entry only for a waitlist offer made to
/// them, since they were never admitted through the line.
pub fn hold_admission(
    token: TokenKind,
    reservation: ReservationId,
    is_waitlist_offer: bool,
) -> Result<HoldAdmission, WaitlistError> {
    match token {
        TokenKind::Pass => Ok(HoldAdmission::ActivePass),
        TokenKind::QueueTicket | TokenKind::DrawEntry if is_waitlist_offer => {
            Ok(HoldAdmission::WaitlistOffer)
        }
        _ => Err(WaitlistError::PassNeeded(reservation)),
    }
}

/// Where a fan's waitlist entry stands (`waitlist_entries.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryState {
    /// On the list, not yet offered a seat.
    Waiting,
    /// Offered a seat as a hold; the hold says whether it was paid, lapsed or released.
    Offered,
    /// Their turn came while they owned the concert's cap of seats.
    PassedOver,
}

impl EntryState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "WAITING" => Some(EntryState::Waiting),
            "OFFERED" => Some(EntryState::Offered),
            "PASSED_OVER" => Some(EntryState::PassedOver),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seats::ReservationStatus;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::num::NonZeroU32;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms)
    }

    fn user(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn held(reservation: u64, seats: u32, until: Timestamp) -> FanHolding {
        FanHolding {
            reservation: ReservationId::new(reservation).unwrap(),
            status: ReservationStatus::Held,
            expires_at: until,
            seats,
        }
    }

    fn cap(n: u32) -> Option<FanCap> {
        Some(FanCap::new(NonZeroU32::new(n).unwrap()))
    }

    #[test]
    fn an_offer_lasts_its_own_ttl_within_bounds() {
        let policy = OfferPolicy::new(Duration::from_secs(30)).unwrap();
        assert_eq!(policy.expiry(at(0)), at(30_000));
        assert_eq!(OfferPolicy::default().ttl(), OfferPolicy::DEFAULT_TTL);
        assert_eq!(
            OfferPolicy::new(Duration::from_secs(1)),
            Err(WaitlistError::OfferTtlOutOfRange)
        );
        assert_eq!(
            OfferPolicy::new(Duration::from_secs(3600)),
            Err(WaitlistError::OfferTtlOutOfRange)
        );
    }

    #[test]
    fn fans_near_the_front_look_again_soon_and_far_back_at_most_every_thirty_seconds() {
        assert_eq!(poll_pause(0), Duration::from_secs(2));
        assert_eq!(poll_pause(100), Duration::from_millis(7_600));
        assert_eq!(poll_pause(AHEAD_COUNTED_UP_TO), LONGEST_POLL_PAUSE);
        assert_eq!(poll_pause(u64::MAX), LONGEST_POLL_PAUSE);
    }

    #[test]
    fn waiting_fans_have_first_claim_on_returning_seats() {
        assert_eq!(open_to_queue(3, 5), Stock { holdable: 0 });
        assert_eq!(open_to_queue(7, 5), Stock { holdable: 2 });
        assert!(open_to_queue(0, 0).is_sold_out());
    }

    #[test]
    fn only_a_fan_of_a_queue_selling_a_sold_out_concert_may_join() {
        let concert = ConcertId::new(10).unwrap();
        let queue = QueueId::parse("spring").unwrap();
        let sold_out = Stock { holdable: 0 };
        assert_eq!(ensure_may_join(concert, &queue, true, sold_out), Ok(()));
        assert_eq!(
            ensure_may_join(concert, &queue, true, Stock { holdable: 1 }),
            Err(WaitlistError::NotSoldOut(concert))
        );
        assert!(matches!(
            ensure_may_join(concert, &queue, false, sold_out),
            Err(WaitlistError::OtherConcert { .. })
        ));
    }

    #[test]
    fn seats_go_to_waiting_fans_in_list_order_one_each() {
        let fans = [
            WaitingFan {
                entry: 4,
                user: user(40),
                holdings: &[],
            },
            WaitingFan {
                entry: 7,
                user: user(70),
                holdings: &[],
            },
            WaitingFan {
                entry: 9,
                user: user(90),
                holdings: &[],
            },
        ];
        assert_eq!(
            plan_offers(&fans, &['a', 'b'], None, at(0)),
            vec![
                Decision::Offer {
                    entry: 4,
                    user: user(40),
                    seat: 'a'
                },
                Decision::Offer {
                    entry: 7,
                    user: user(70),
                    seat: 'b'
                },
            ]
        );
        assert!(plan_offers(&fans, &[] as &[char], None, at(0)).is_empty());
    }

    #[test]
    fn a_fan_at_the_cap_is_passed_over_and_the_seat_goes_to_the_next() {
        let full = [held(1, 2, at(60_000))];
        let fans = [
            WaitingFan {
                entry: 1,
                user: user(10),
                holdings: &full,
            },
            WaitingFan {
                entry: 2,
                user: user(20),
                holdings: &[],
            },
        ];
        assert_eq!(
            plan_offers(&fans, &['a'], cap(2), at(0)),
            vec![
                Decision::PassOver { entry: 1 },
                Decision::Offer {
                    entry: 2,
                    user: user(20),
                    seat: 'a'
                },
            ]
        );
        // Without a cap the same fan is offered the seat.
        assert_eq!(
            plan_offers(&fans, &['a'], None, at(0)),
            vec![Decision::Offer {
                entry: 1,
                user: user(10),
                seat: 'a'
            }]
        );
    }

    #[test]
    fn a_fan_with_a_lapsed_hold_not_yet_ended_stops_the_round_so_nobody_jumps_them() {
        let lapsed = [held(1, 1, at(1_000))];
        let fans = [
            WaitingFan {
                entry: 1,
                user: user(10),
                holdings: &lapsed,
            },
            WaitingFan {
                entry: 2,
                user: user(20),
                holdings: &[],
            },
        ];
        assert!(plan_offers(&fans, &['a', 'b'], cap(4), at(2_000)).is_empty());
    }

    #[test]
    fn entry_states_parse_from_their_column_values() {
        for state in [
            EntryState::Waiting,
            EntryState::Offered,
            EntryState::PassedOver,
        ] {
            let text = serde_json::to_value(state).unwrap();
            assert_eq!(EntryState::parse(text.as_str().unwrap()), Some(state));
        }
        assert_eq!(EntryState::parse("waiting"), None);
    }

    #[test]
    fn a_ticket_pays_or_declines_only_a_waitlist_offer_and_a_pass_any_hold() {
        let reservation = ReservationId::new(5).unwrap();
        assert_eq!(
            hold_admission(TokenKind::Pass, reservation, false),
            Ok(HoldAdmission::ActivePass)
        );
        assert_eq!(
            hold_admission(TokenKind::QueueTicket, reservation, true),
            Ok(HoldAdmission::WaitlistOffer)
        );
        assert_eq!(
            hold_admission(TokenKind::QueueTicket, reservation, false),
            Err(WaitlistError::PassNeeded(reservation))
        );
        assert_eq!(
            hold_admission(TokenKind::DrawEntry, reservation, true),
            Ok(HoldAdmission::WaitlistOffer)
        );
        assert_eq!(
            hold_admission(TokenKind::DrawEntry, reservation, false),
            Err(WaitlistError::PassNeeded(reservation))
        );
    }

    /// A waiting fan for the property test: their seats owned now, and whether one of their
    /// holds has lapsed unended.
    fn fan_strategy() -> impl Strategy<Value = (u32, bool)> {
        (0u32..6, prop::bool::weighted(0.15))
    }

    proptest! {
        /// Over random lists, seats and caps: every seat is offered at most once, every fan
        /// at most once, in list order with nobody skipped but those at the cap, and no
        /// offer takes a fan past the cap.
        #[test]
        fn a_round_offers_each_seat_and_each_fan_at_most_once_in_list_order_within_the_cap(
            fans in prop::collection::vec(fan_strategy(), 0..30),
            seats in 0usize..20,
            seat_cap in prop::option::of(1u32..5),
        ) {
            let now = at(10_000);
            let holdings: Vec<Vec<FanHolding>> = fans
                .iter()
                .enumerate()
                .map(|(i, &(owned, lapsed))| {
                    let mut h = Vec::new();
                    if owned > 0 {
                        h.push(held(2 * i as u64 + 1, owned, at(60_000)));
                    }
                    if lapsed {
                        h.push(held(2 * i as u64 + 2, 1, at(5_000)));
                    }
                    h
                })
                .collect();
            let waiting: Vec<WaitingFan> = holdings
                .iter()
                .enumerate()
                .map(|(i, h)| WaitingFan { entry: 10 + 3 * i as u64, user: user(100 + i as u64), holdings: h })
                .collect();
            let seat_ids: Vec<usize> = (0..seats).collect();
            let cap = seat_cap.and_then(NonZeroU32::new).map(FanCap::new);
            let decisions = plan_offers(&waiting, &seat_ids, cap, now);

            let mut offered_seats = BTreeSet::new();
            let mut previous_entry = 0;
            for (decision, fan) in decisions.iter().zip(&waiting) {
                // Decisions follow the list with no gap.
                let entry = match *decision {
                    Decision::Offer { entry, user, seat } => {
                        prop_assert_eq!(user, fan.user);
                        prop_assert!(offered_seats.insert(seat), "seat {} offered twice", seat);
                        if let Some(cap) = cap {
                            prop_assert!(cap.allows(fan.holdings, 1, now).is_ok());
                        }
                        entry
                    }
                    Decision::PassOver { entry } => {
                        let cap = cap.expect("only a cap passes a fan over");
                        prop_assert!(cap.allows(fan.holdings, 1, now).is_err());
                        entry
                    }
                };
                prop_assert_eq!(entry, fan.entry);
                prop_assert!(entry > previous_entry);
                previous_entry = entry;
            }
            // The round ends only when seats or fans run out, or at a fan whose count is unknown.
            if decisions.len() < waiting.len() && offered_seats.len() < seats {
                let stopped_at = &waiting[decisions.len()];
                prop_assert!(cap.is_some() && !FanCap::lapsed(stopped_at.holdings, now).is_empty());
            }
        }
    }
}
