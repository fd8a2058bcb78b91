//! The only module that talks to MySQL and Redis: catalog reads, the read cache, the
//! ranking sets, and the hold and release transactions.
//!
//! Holding seats is one READ COMMITTED transaction around a conditional `UPDATE` that only
//! takes seats the core calls holdable (AVAILABLE, or HELD with a lapsed hold); the affected
//! row count says whether every seat was taken. Seats are locked in primary-key order (the
//! selection is sorted), so two holds never deadlock on each other, and the unique key on
//! live reservation seats backs the whole thing up in the schema.

use cache_invalidation::invalidate_schedule;
use redis_kit::KeptConnection;
use serde::{Deserialize, Serialize};
use spin_sdk::mysql::{DbValue, ParameterValue};
use spin_sdk::redis::{self, RedisParameter, RedisResult};
use sql_kit::{
    Db, DbError, DbResult, Row, column_as, column_text, column_time, column_u64, corrupt, datetime,
    id, placeholders, with_retries,
};
use std::num::NonZeroU32;
use store_sql::{HOLDABLE, TakenBy};
use ticketing_core::ApiError;
use ticketing_core::cache::{Freshness, rebuild_lease_key, seat_map_keys, stored_ttl_ms};
use ticketing_core::events::{ReservationExpired, ReservationHeld, ReservationReleased};
use ticketing_core::ids::{ConcertId, ReservationId, ScheduleId, SeatId, UserId};
use ticketing_core::money::Amount;
use ticketing_core::ranking::{RankingWindow, TOP};
use ticketing_core::seats::{
    FanCap, FanHolding, HoldPolicy, Reservation, ReservationStatus, SeatError, SeatListing,
    SeatNumbers, SeatSelection, SeatState,
};
use ticketing_core::time::Timestamp;
use ticketing_core::waitlist::{self, EntryState};

// ---- catalog -------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Concert {
    pub(crate) concert_id: ConcertId,
    pub(crate) title: String,
    pub(crate) artist: String,
    pub(crate) venue: String,
    /// At most this many seats of the concert per fan; `None`: no cap.
    pub(crate) seats_per_fan: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Schedule {
    pub(crate) schedule_id: ScheduleId,
    pub(crate) starts_at: Timestamp,
    pub(crate) total_seats: u64,
    pub(crate) available_seats: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Seat {
    pub(crate) seat_id: SeatId,
    pub(crate) seat_no: u64,
    pub(crate) label: String,
    pub(crate) price: Amount,
}

/// A schedule's identity, as holds and seat maps need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScheduleRef {
    pub(crate) schedule_id: ScheduleId,
    pub(crate) concert_id: ConcertId,
    pub(crate) total_seats: u64,
}

fn concert_from(row: &Row) -> DbResult<Concert> {
    Ok(Concert {
        concert_id: column_as(row, 0, "concerts.id", ConcertId::new)?,
        title: column_text(row, 1).ok_or_else(|| corrupt("concerts.title"))?,
        artist: column_text(row, 2).ok_or_else(|| corrupt("concerts.artist"))?,
        venue: column_text(row, 3).ok_or_else(|| corrupt("concerts.venue"))?,
        seats_per_fan: fan_cap(row, 4)?.map(FanCap::seats_per_concert),
    })
}

pub(crate) async fn concerts(db: &Db) -> DbResult<Vec<Concert>> {
    db.query(
        "SELECT id, title, artist, venue, seats_per_fan FROM concerts ORDER BY id",
        vec![],
    )
    .await?
    .iter()
    .map(concert_from)
    .collect()
}

pub(crate) async fn concert(db: &Db, concert: ConcertId) -> DbResult<Option<Concert>> {
    db.query(
        "SELECT id, title, artist, venue, seats_per_fan FROM concerts WHERE id = ?",
        vec![id(concert.get())],
    )
    .await?
    .first()
    .map(concert_from)
    .transpose()
}

/// The concert's cap on seats per fan from a nullable `concerts.seats_per_fan` column.
fn fan_cap(row: &Row, index: usize) -> DbResult<Option<FanCap>> {
    match row.get(index) {
        None | Some(DbValue::DbNull) => Ok(None),
        Some(_) => column_u64(row, index)
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
            .map(|n| Some(FanCap::new(n)))
            .ok_or_else(|| corrupt("concerts.seats_per_fan")),
    }
}

/// The schedules of a concert by date, with their seats open to a hold at `now`.
pub(crate) async fn schedules(
    db: &Db,
    concert: ConcertId,
    now: Timestamp,
) -> DbResult<Vec<Schedule>> {
    let rows = db
        .query(
            &format!(
                "SELECT sc.id, CAST(sc.starts_at AS CHAR), sc.total_seats, \
                   (SELECT COUNT(*) FROM seats WHERE schedule_id = sc.id AND {HOLDABLE}) \
                 FROM schedules sc WHERE sc.concert_id = ? ORDER BY sc.starts_at, sc.id"
            ),
            vec![datetime(now), id(concert.get())],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Schedule {
                schedule_id: column_as(row, 0, "schedules.id", ScheduleId::new)?,
                starts_at: column_time(row, 1).ok_or_else(|| corrupt("schedules.starts_at"))?,
                total_seats: column_u64(row, 2).ok_or_else(|| corrupt("schedules.total_seats"))?,
                available_seats: column_u64(row, 3).unwrap_or(0),
            })
        })
        .collect()
}

/// A schedule as the operator's console shows it: its seats by state at `now` (a seat
/// whose hold lapsed counts as free, as a hold would find it) and what it sold.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScheduleSales {
    schedule_id: ScheduleId,
    concert_id: ConcertId,
    title: String,
    starts_at: Timestamp,
    total_seats: u64,
    free: u64,
    held: u64,
    sold: u64,
    /// Confirmed reservations' amounts (refunded ones no longer count).
    sales_won: u64,
}

/// The console lists at most this many schedules, the earliest first.
const CONSOLE_SCHEDULES: u32 = 100;

/// The schedules of `concert`, or the upcoming ones of every concert, earliest first.
pub(crate) async fn schedule_sales(
    db: &Db,
    concert: Option<ConcertId>,
    now: Timestamp,
) -> DbResult<Vec<ScheduleSales>> {
    let (filter, value) = match concert {
        Some(concert) => ("sc.concert_id = ?", id(concert.get())),
        None => ("sc.starts_at >= ?", datetime(now)),
    };
    let rows = db
        .query(
            &format!(
                "SELECT sc.id, sc.concert_id, c.title, CAST(sc.starts_at AS CHAR), sc.total_seats, \
                   (SELECT COUNT(*) FROM seats WHERE schedule_id = sc.id AND {HOLDABLE}), \
                   (SELECT COUNT(*) FROM seats WHERE schedule_id = sc.id AND status = 'SOLD'), \
                   (SELECT CAST(COALESCE(SUM(amount), 0) AS SIGNED) FROM reservations \
                      WHERE schedule_id = sc.id AND status = 'CONFIRMED') \
                 FROM schedules sc JOIN concerts c ON c.id = sc.concert_id WHERE {filter} \
                 ORDER BY sc.starts_at, sc.id LIMIT {CONSOLE_SCHEDULES}"
            ),
            vec![datetime(now), value],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let total_seats = column_u64(row, 4).ok_or_else(|| corrupt("schedules.total_seats"))?;
            let free = column_u64(row, 5).unwrap_or(0);
            let sold = column_u64(row, 6).unwrap_or(0);
            Ok(ScheduleSales {
                schedule_id: column_as(row, 0, "schedules.id", ScheduleId::new)?,
                concert_id: column_as(row, 1, "schedules.concert_id", ConcertId::new)?,
                title: column_text(row, 2).ok_or_else(|| corrupt("concerts.title"))?,
                starts_at: column_time(row, 3).ok_or_else(|| corrupt("schedules.starts_at"))?,
                total_seats,
                free,
                held: total_seats.saturating_sub(free + sold),
                sold,
                sales_won: column_u64(row, 7).unwrap_or(0),
            })
        })
        .collect()
}

pub(crate) async fn schedule(db: &Db, schedule: ScheduleId) -> DbResult<Option<ScheduleRef>> {
    let rows = db
        .query(
            "SELECT concert_id, total_seats FROM schedules WHERE id = ?",
            vec![id(schedule.get())],
        )
        .await?;
    rows.first()
        .map(|row| {
            Ok(ScheduleRef {
                schedule_id: schedule,
                concert_id: column_as(row, 0, "schedules.concert_id", ConcertId::new)?,
                total_seats: column_u64(row, 1).ok_or_else(|| corrupt("schedules.total_seats"))?,
            })
        })
        .transpose()
}

/// The seats of a schedule open to a hold at `now`, by seat number.
/// A schedule's seats as they never change: what its seat map lists, less which are free.
/// Seats are created with their schedule and no API alters them, so it is cached apart
/// from the map for an hour, and a map's rebuild reads only the free seats' numbers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SeatLayout {
    pub(crate) concert_id: ConcertId,
    pub(crate) total_seats: u64,
    /// By seat number.
    pub(crate) seats: Vec<Seat>,
}

pub(crate) async fn seat_layout(db: &Db, schedule: ScheduleId) -> DbResult<Option<SeatLayout>> {
    let Some(found) = self::schedule(db, schedule).await? else {
        return Ok(None);
    };
    let rows = db
        .query(
            "SELECT id, seat_no, label, price FROM seats WHERE schedule_id = ? ORDER BY seat_no",
            vec![id(schedule.get())],
        )
        .await?;
    Ok(Some(SeatLayout {
        concert_id: found.concert_id,
        total_seats: found.total_seats,
        seats: rows.iter().map(seat_from).collect::<DbResult<_>>()?,
    }))
}

/// The numbers of `schedule`'s holdable seats, a row per 64 seats.
pub(crate) async fn holdable_seat_numbers(
    db: &Db,
    schedule: ScheduleId,
    now: Timestamp,
) -> DbResult<SeatNumbers> {
    let bits = SeatNumbers::CHUNK_BITS;
    let rows = db
        .query(
            &format!(
                "SELECT seat_no DIV {bits}, BIT_OR(1 << (seat_no MOD {bits})) FROM seats \
                 WHERE schedule_id = ? AND {HOLDABLE} GROUP BY seat_no DIV {bits}"
            ),
            vec![id(schedule.get()), datetime(now)],
        )
        .await?;
    let chunks = rows
        .iter()
        .map(|row| {
            let chunk = column_u64(row, 0).ok_or_else(|| corrupt("seat number chunk"))?;
            let free = column_u64(row, 1).ok_or_else(|| corrupt("free seat bits"))?;
            Ok((chunk, free))
        })
        .collect::<DbResult<Vec<_>>>()?;
    Ok(SeatNumbers::from_chunks(chunks))
}

fn seat_from(row: &Row) -> DbResult<Seat> {
    Ok(Seat {
        seat_id: column_as(row, 0, "seats.id", SeatId::new)?,
        seat_no: column_u64(row, 1).ok_or_else(|| corrupt("seats.seat_no"))?,
        label: column_text(row, 2).ok_or_else(|| corrupt("seats.label"))?,
        price: column_as(row, 3, "seats.price", Amount::new)?,
    })
}

// ---- reservations ----------------------------------------------------------------------

/// A reservation with its seats as the API shows them.
#[derive(Debug)]
pub(crate) struct ReservationView {
    pub(crate) reservation: Reservation,
    pub(crate) seats: Vec<Seat>,
}

pub(crate) async fn reservation(
    db: &Db,
    reservation: ReservationId,
) -> DbResult<Option<ReservationView>> {
    let rows = db
        .query(
            "SELECT id, user_id, schedule_id, status, amount, CAST(expires_at AS CHAR) \
             FROM reservations WHERE id = ?",
            vec![id(reservation.get())],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let seats: Vec<Seat> = db
        .query(
            "SELECT s.id, s.seat_no, s.label, s.price FROM reservation_seats rs \
             JOIN seats s ON s.id = rs.seat_id WHERE rs.reservation_id = ? ORDER BY s.id",
            vec![id(reservation.get())],
        )
        .await?
        .iter()
        .map(seat_from)
        .collect::<DbResult<_>>()?;
    let reservation = Reservation {
        id: reservation,
        user_id: column_as(row, 1, "reservations.user_id", UserId::new)?,
        schedule_id: column_as(row, 2, "reservations.schedule_id", ScheduleId::new)?,
        status: column_text(row, 3)
            .and_then(|s| ReservationStatus::parse(&s))
            .ok_or_else(|| corrupt("reservations.status"))?,
        seat_ids: seats.iter().map(|s| s.seat_id).collect(),
        amount: column_as(row, 4, "reservations.amount", Amount::new)?,
        expires_at: column_time(row, 5).ok_or_else(|| corrupt("reservations.expires_at"))?,
    };
    Ok(Some(ReservationView { reservation, seats }))
}

// ---- waitlist ------------------------------------------------------------------------

/// A fan's entry on a concert's waitlist, with the offer made to them if any.
#[derive(Debug)]
pub(crate) struct WaitlistEntry {
    pub(crate) state: EntryState,
    pub(crate) joined_at: Timestamp,
    /// Waiting fans before this one on the list, up to `waitlist::AHEAD_COUNTED_UP_TO`.
    pub(crate) ahead: u64,
    pub(crate) offer: Option<ReservationView>,
}

/// Puts `user` on `concert`'s waitlist (a repeated join keeps the first place); the entry,
/// and whether this join created it. Two statements: the insert, and the entry read with
/// the insert's `ROW_COUNT()` on the same connection.
pub(crate) async fn join_waitlist(
    db: &Db,
    concert: ConcertId,
    user: UserId,
    now: Timestamp,
) -> DbResult<(bool, WaitlistEntry)> {
    db.execute(
        "INSERT IGNORE INTO waitlist_entries (concert_id, user_id, joined_at) VALUES (?, ?, ?)",
        vec![id(concert.get()), id(user.get()), datetime(now)],
    )
    .await?;
    let rows = db
        .query(&entry_select(", ROW_COUNT()"), entry_params(concert, user))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| corrupt("a waitlist entry vanished after its insert"))?;
    let created = column_u64(row, ENTRY_WIDTH) == Some(1);
    Ok((created, entry_from(db, row).await?))
}

/// `user`'s entry on `concert`'s waitlist, with the fans waiting before it counted up to
/// `waitlist::AHEAD_COUNTED_UP_TO`: one read (two for an offer, which reads its hold).
pub(crate) async fn waitlist_entry(
    db: &Db,
    concert: ConcertId,
    user: UserId,
) -> DbResult<Option<WaitlistEntry>> {
    let rows = db
        .query(&entry_select(""), entry_params(concert, user))
        .await?;
    match rows.first() {
        Some(row) => Ok(Some(entry_from(db, row).await?)),
        None => Ok(None),
    }
}

/// The select of a fan's entry: its state, when it joined, its offer, and the waiting fans
/// before it, counted up to `waitlist::AHEAD_COUNTED_UP_TO` (past it the pace is the same,
/// so a long list costs a poll no more) through the entry's id found again by its fan
/// (MariaDB takes no outer column inside a derived table); then `extra` columns.
fn entry_select(extra: &str) -> String {
    format!(
        "SELECT w.state, CAST(w.joined_at AS CHAR), w.reservation_id, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM waitlist_entries a \
           WHERE a.concert_id = ? AND a.state = 'WAITING' AND a.id < \
             (SELECT b.id FROM waitlist_entries b WHERE b.concert_id = ? AND b.user_id = ?) \
           LIMIT {}) ahead){extra} \
         FROM waitlist_entries w WHERE w.concert_id = ? AND w.user_id = ?",
        waitlist::AHEAD_COUNTED_UP_TO
    )
}

/// How many columns [`entry_select`] has before its `extra` ones.
const ENTRY_WIDTH: usize = 4;

fn entry_params(concert: ConcertId, user: UserId) -> Vec<ParameterValue> {
    let (concert, user) = (id(concert.get()), id(user.get()));
    vec![
        concert.clone(),
        concert.clone(),
        user.clone(),
        concert,
        user,
    ]
}

async fn entry_from(db: &Db, row: &Row) -> DbResult<WaitlistEntry> {
    let state = column_text(row, 0)
        .and_then(|s| EntryState::parse(&s))
        .ok_or_else(|| corrupt("waitlist_entries.state"))?;
    let offer = match column_u64(row, 2) {
        Some(reservation_id) => {
            let reservation_id = ReservationId::new(reservation_id)
                .map_err(|_| corrupt("waitlist_entries.reservation_id"))?;
            reservation(db, reservation_id).await?
        }
        None => None,
    };
    let ahead = match state {
        EntryState::Waiting => column_u64(row, 3).ok_or_else(|| corrupt("waitlist place"))?,
        EntryState::Offered | EntryState::PassedOver => 0,
    };
    Ok(WaitlistEntry {
        state,
        joined_at: column_time(row, 1).ok_or_else(|| corrupt("waitlist_entries.joined_at"))?,
        ahead,
        offer,
    })
}

/// Whether `reservation` is a waitlist offer (which its fan may decline with their ticket).
pub(crate) async fn is_waitlist_offer(db: &Db, reservation: ReservationId) -> DbResult<bool> {
    let rows = db
        .query(
            "SELECT 1 FROM waitlist_entries WHERE reservation_id = ?",
            vec![id(reservation.get())],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// A seat as a hold finds it before taking it.
struct SeatRow {
    seat: Seat,
    listing: SeatListing,
    state: SeatState,
    capped: Option<CappedConcert>,
    /// The seat's schedule, read in the same query so a hold needs no lookup of its own.
    show: ScheduleRef,
}

/// A concert with a cap on seats per fan, which its holds check.
#[derive(Clone, Copy)]
struct CappedConcert {
    concert: ConcertId,
    cap: FanCap,
}

async fn seat_rows(db: &Db, seats: &[SeatId]) -> DbResult<Vec<SeatRow>> {
    let rows = db
        .query(
            &format!(
                "SELECT s.id, s.seat_no, s.label, s.price, s.schedule_id, s.status, \
                 s.reservation_id, CAST(s.held_until AS CHAR), sc.concert_id, c.seats_per_fan, \
                 sc.total_seats \
                 FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
                 JOIN concerts c ON c.id = sc.concert_id WHERE s.id IN ({})",
                placeholders(seats.len())
            ),
            seats.iter().map(|s| id(s.get())).collect(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            let seat = seat_from(row)?;
            let owner = || column_as(row, 6, "seats.reservation_id", ReservationId::new);
            let state = match column_text(row, 5).as_deref() {
                Some("AVAILABLE") => SeatState::Available,
                Some("HELD") => SeatState::Held {
                    reservation: owner()?,
                    until: column_time(row, 7).ok_or_else(|| corrupt("seats.held_until"))?,
                },
                Some("SOLD") => SeatState::Sold {
                    reservation: owner()?,
                },
                _ => return Err(corrupt("seats.status")),
            };
            let show = ScheduleRef {
                schedule_id: column_as(row, 4, "seats.schedule_id", ScheduleId::new)?,
                concert_id: column_as(row, 8, "schedules.concert_id", ConcertId::new)?,
                total_seats: column_u64(row, 10).ok_or_else(|| corrupt("schedules.total_seats"))?,
            };
            let capped = fan_cap(row, 9)?.map(|cap| CappedConcert {
                concert: show.concert_id,
                cap,
            });
            Ok(SeatRow {
                capped,
                show,
                listing: SeatListing {
                    seat: seat.seat_id,
                    schedule: show.schedule_id,
                    price: seat.price,
                },
                seat,
                state,
            })
        })
        .collect()
}

/// Why a hold did not happen.
#[derive(Debug)]
pub(crate) enum HoldRefused {
    UnknownSchedule(ScheduleId),
    Seats(SeatError),
    Db(DbError),
}

impl From<DbError> for HoldRefused {
    fn from(error: DbError) -> Self {
        HoldRefused::Db(error)
    }
}

impl From<HoldRefused> for ApiError {
    fn from(refused: HoldRefused) -> Self {
        match refused {
            HoldRefused::UnknownSchedule(schedule) => ApiError::not_found("schedule", schedule),
            HoldRefused::Seats(error) => error.into(),
            HoldRefused::Db(error) => error.into(),
        }
    }
}

/// Holds every seat of `selection` for `user` until `now + hold_ttl`, or none of them, and
/// names the schedule held from.
pub(crate) async fn hold(
    db: &Db,
    selection: &SeatSelection,
    user: UserId,
    policy: &HoldPolicy,
    now: Timestamp,
) -> Result<(ReservationView, ScheduleRef), HoldRefused> {
    let mut found = seat_rows(db, selection.seats()).await?;
    let listings: Vec<SeatListing> = found.iter().map(|s| s.listing).collect();
    let amount = match selection.price(&listings) {
        Ok(amount) => amount,
        // Seats not of the schedule asked for: if it does not exist, that is the answer.
        Err(refused @ (SeatError::UnknownSeats(_) | SeatError::OtherSchedule { .. })) => {
            return Err(match schedule(db, selection.schedule()).await? {
                None => HoldRefused::UnknownSchedule(selection.schedule()),
                Some(_) => HoldRefused::Seats(refused),
            });
        }
        Err(refused) => return Err(HoldRefused::Seats(refused)),
    };
    // Priced, so every seat is of the selection's schedule.
    let show = found[0].show;
    // A cheap read first: seats plainly taken are refused without a transaction, which is
    // the fate of almost every request in a rush for a few seats.
    let states: Vec<(SeatId, SeatState)> =
        found.iter().map(|s| (s.seat.seat_id, s.state)).collect();
    SeatSelection::ensure_holdable(&states, now).map_err(HoldRefused::Seats)?;
    let lapsed: Vec<ReservationId> = {
        let mut ids: Vec<ReservationId> = found
            .iter()
            .filter_map(|s| match s.state {
                SeatState::Held { reservation, until } if until <= now => Some(reservation),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let order = HoldOrder {
        selection,
        user,
        amount,
        capped: found.first().and_then(|s| s.capped),
    };
    let held = with_retries!(db, hold_transaction(db, &order, &lapsed, policy, now))?;
    let reservation = held.map_err(HoldRefused::Seats)?;
    found.sort_by_key(|s| s.seat.seat_id);
    let seats = found.into_iter().map(|s| s.seat).collect();
    Ok((ReservationView { reservation, seats }, show))
}

/// What one hold takes, for whom, at what price, and the cap it must keep.
struct HoldOrder<'a> {
    selection: &'a SeatSelection,
    user: UserId,
    amount: Amount,
    capped: Option<CappedConcert>,
}

async fn hold_transaction(
    db: &Db,
    order: &HoldOrder<'_>,
    lapsed: &[ReservationId],
    policy: &HoldPolicy,
    now: Timestamp,
) -> DbResult<Result<Reservation, SeatError>> {
    let HoldOrder {
        selection,
        user,
        amount,
        capped,
    } = *order;
    let expires_at = policy.hold_expiry(now);
    db.begin().await?;
    if let Some(capped) = capped
        && let Err(refused) = keep_fan_cap(db, user, capped, selection.seats().len(), now).await?
    {
        db.rollback().await;
        return Ok(Err(refused));
    }
    for reservation in lapsed {
        expire(db, *reservation, now).await?;
    }
    let id = match insert_hold(db, order, expires_at, now).await? {
        Ok(id) => id,
        Err(refused) => {
            db.rollback().await;
            return Ok(Err(refused));
        }
    };
    let reservation = Reservation {
        id,
        user_id: user,
        schedule_id: selection.schedule(),
        status: ReservationStatus::Held,
        seat_ids: selection.seats().to_vec(),
        amount,
        expires_at,
    };
    db.publish(
        &ReservationHeld {
            reservation_id: reservation.id,
            user_id: user,
            schedule_id: reservation.schedule_id,
            seat_ids: reservation.seat_ids.clone(),
            amount,
            expires_at: reservation.expires_at,
        },
        now,
    )
    .await?;
    db.commit().await?;
    Ok(Ok(reservation))
}

/// Whether `user` may hold `requested` more seats of a capped concert, decided by the core's
/// `FanCap` inside the hold's transaction. The (fan, concert) lock row makes two holds by
/// one fan count one after the other. The fan's lapsed holds are ended first, under their
/// row locks: a payment that locked one before it lapsed makes the ending wait, and then the
/// holdings are read again with that hold paid, so a late payment never takes the fan past
/// the cap. Payments need no check of their own: they turn held seats into sold ones.
async fn keep_fan_cap(
    db: &Db,
    user: UserId,
    capped: CappedConcert,
    requested: usize,
    now: Timestamp,
) -> DbResult<Result<(), SeatError>> {
    db.execute(
        &store_sql::lock_fans(1),
        vec![id(user.get()), id(capped.concert.get())],
    )
    .await?;
    let mut holdings = fan_holdings(db, user, capped.concert).await?;
    let mut ended_elsewhere = false;
    for reservation in FanCap::lapsed(&holdings, now) {
        ended_elsewhere |= !expire(db, reservation, now).await?;
    }
    if ended_elsewhere {
        holdings = fan_holdings(db, user, capped.concert).await?;
    }
    Ok(capped.cap.allows(&holdings, requested, now))
}

/// The fan's reservations of the concert that own (or owned until they lapsed) seats.
async fn fan_holdings(db: &Db, user: UserId, concert: ConcertId) -> DbResult<Vec<FanHolding>> {
    db.query(
        &store_sql::fan_holdings(1),
        vec![id(user.get()), id(concert.get())],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(FanHolding {
            reservation: column_as(row, 1, "reservations.id", ReservationId::new)?,
            status: column_text(row, 2)
                .and_then(|s| ReservationStatus::parse(&s))
                .ok_or_else(|| corrupt("reservations.status"))?,
            expires_at: column_time(row, 3).ok_or_else(|| corrupt("reservations.expires_at"))?,
            seats: column_u64(row, 4)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| corrupt("reservation_seats count"))?,
        })
    })
    .collect()
}

/// A new HELD reservation holding every selected seat, all or none: a seat not holdable
/// any more (taken since the cheap read) refuses the lot, naming the taken. The seats name
/// the new row by `LAST_INSERT_ID()`, and one read answers both how many were taken and the
/// row's id.
async fn insert_hold(
    db: &Db,
    order: &HoldOrder<'_>,
    expires_at: Timestamp,
    now: Timestamp,
) -> DbResult<Result<ReservationId, SeatError>> {
    let HoldOrder {
        selection,
        user,
        amount,
        ..
    } = *order;
    db.execute(
        store_sql::INSERT_HOLD,
        vec![
            id(user.get()),
            id(selection.schedule().get()),
            id(amount.minor_units()),
            datetime(expires_at),
            datetime(now),
        ],
    )
    .await?;
    let seats = selection.seats();
    let mut params = vec![
        datetime(expires_at),
        id(selection.schedule().get()),
        datetime(now),
    ];
    params.extend(seats.iter().map(|s| id(s.get())));
    db.execute(
        &store_sql::take_seats(seats.len(), store_sql::Holder::LastInserted),
        params,
    )
    .await?;
    let (taken, inserted) = db.row_count_and_last_insert_id().await?;
    let reservation = ReservationId::new(inserted).map_err(|_| corrupt("LAST_INSERT_ID()"))?;
    if taken != seats.len() as u64 {
        return Ok(Err(SeatError::Unavailable(
            taken_seats(db, seats, reservation).await?,
        )));
    }
    let params = seats
        .iter()
        .flat_map(|s| [id(reservation.get()), id(s.get())])
        .collect();
    match db
        .execute(&store_sql::link_seats(seats.len()), params)
        .await
    {
        // A live row for one of these seats: the schema's last line of defence held.
        Err(DbError::Duplicate(_)) => Ok(Err(SeatError::Unavailable(seats.to_vec()))),
        other => other.map(|()| Ok(reservation)),
    }
}

/// The selected seats some other reservation owns now.
async fn taken_seats(db: &Db, seats: &[SeatId], ours: ReservationId) -> DbResult<Vec<SeatId>> {
    let mut params = vec![id(ours.get())];
    params.extend(seats.iter().map(|s| id(s.get())));
    let rows = db
        .query(
            &format!(
                "SELECT id FROM seats WHERE (reservation_id IS NULL OR reservation_id <> ?) \
                 AND id IN ({}) ORDER BY id",
                placeholders(seats.len())
            ),
            params,
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| column_u64(row, 0).and_then(|n| SeatId::new(n).ok()))
        .collect())
}

/// Ends a lapsed hold inside the caller's transaction: the reservation becomes EXPIRED, its
/// seats are released, and `reservation.expired` is published. A hold that is not lapsed
/// or was already ended (by a concurrent request, a payment or the bridge's sweeper) is
/// left alone, and the answer is false.
async fn expire(db: &Db, reservation: ReservationId, now: Timestamp) -> DbResult<bool> {
    let rows = db
        .query(
            "SELECT user_id, schedule_id FROM reservations \
             WHERE id = ? AND status = 'HELD' AND expires_at <= ? FOR UPDATE",
            vec![id(reservation.get()), datetime(now)],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let user = column_as(row, 0, "reservations.user_id", UserId::new)?;
    let schedule = column_as(row, 1, "reservations.schedule_id", ScheduleId::new)?;
    db.execute(&store_sql::expire_holds(1), vec![id(reservation.get())])
        .await?;
    let seats = release_seats(db, reservation, now).await?;
    db.publish(
        &ReservationExpired {
            reservation_id: reservation,
            user_id: user,
            schedule_id: schedule,
            seat_ids: seats,
        },
        now,
    )
    .await?;
    Ok(true)
}

/// Frees the seats a reservation still holds; returns them.
async fn release_seats(
    db: &Db,
    reservation: ReservationId,
    now: Timestamp,
) -> DbResult<Vec<SeatId>> {
    let seats: Vec<SeatId> = db
        .query(
            "SELECT seat_id FROM reservation_seats \
             WHERE reservation_id = ? AND released_at IS NULL ORDER BY seat_id",
            vec![id(reservation.get())],
        )
        .await?
        .iter()
        .filter_map(|row| column_u64(row, 0).and_then(|n| SeatId::new(n).ok()))
        .collect();
    if seats.is_empty() {
        return Ok(seats);
    }
    db.execute(
        &store_sql::release_seat_links(1),
        vec![datetime(now), id(reservation.get())],
    )
    .await?;
    let mut params: Vec<_> = seats.iter().map(|s| id(s.get())).collect();
    params.push(id(reservation.get()));
    db.execute(
        &store_sql::free_seats(TakenBy::Hold, seats.len(), 1),
        params,
    )
    .await?;
    Ok(seats)
}

/// Cancels a live hold: CANCELLED, seats on sale again, `reservation.released` published.
/// Returns false when the hold was no longer live (paid, lapsed or cancelled meanwhile).
pub(crate) async fn release(db: &Db, reservation: &Reservation, now: Timestamp) -> DbResult<bool> {
    with_retries!(db, release_transaction(db, reservation, now))
}

async fn release_transaction(db: &Db, reservation: &Reservation, now: Timestamp) -> DbResult<bool> {
    db.begin().await?;
    db.execute(
        "UPDATE reservations SET status = 'CANCELLED' \
         WHERE id = ? AND status = 'HELD' AND expires_at > ?",
        vec![id(reservation.id.get()), datetime(now)],
    )
    .await?;
    if db.row_count().await? != 1 {
        db.rollback().await;
        return Ok(false);
    }
    let seats = release_seats(db, reservation.id, now).await?;
    db.publish(
        &ReservationReleased {
            reservation_id: reservation.id,
            user_id: reservation.user_id,
            schedule_id: reservation.schedule_id,
            seat_ids: seats,
        },
        now,
    )
    .await?;
    db.commit().await?;
    Ok(true)
}

// ---- Redis: read cache and ranking ---------------------------------------------------------

/// The read cache in Redis. Seat maps are versioned per schedule: a write bumps the version
/// after its commit, and a reader only stores what it read if the version it saw before
/// reading is still current, so a slow reader can never put back a map older than a hold.
pub(crate) struct Cache {
    connection: KeptConnection,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

/// Stores KEYS[1] = ARGV[1] for ARGV[2] ms if KEYS[2] (the version) still equals ARGV[3].
const PUT_IF_CURRENT: &str = "if (redis.call('GET', KEYS[2]) or '0') == ARGV[3] then \
     redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end return 0";

fn bytes(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

fn result_text(result: &RedisResult) -> Option<String> {
    match result {
        RedisResult::Binary(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisResult::Status(text) => Some(text.clone()),
        RedisResult::Int64(n) => Some(n.to_string()),
        RedisResult::Nil => None,
    }
}

fn redis_failed(error: &redis::Error) -> ApiError {
    eprintln!("seats: redis failed: {error:?}");
    ApiError::unavailable("redis")
}

/// A cache lookup: the cached body and how fresh it is, or what a rebuild needs to store a
/// fresh one (for a seat map, the version it was missing under).
pub(crate) enum Lookup<Miss> {
    Hit(String),
    /// Past its time to live, within the grace: served while another reader rebuilds it.
    Stale(String, Miss),
    Miss(Miss),
}

impl<Miss> Lookup<Miss> {
    /// From a cached body (if any) and what `PTTL` said of its key.
    fn of(body: Option<String>, remaining_ms: Option<&RedisResult>, miss: Miss) -> Self {
        let freshness = match remaining_ms {
            Some(RedisResult::Int64(ms)) => Freshness::of_remaining_ms(*ms),
            _ => Freshness::Fresh,
        };
        match (body, freshness) {
            (Some(body), Freshness::Fresh) => Self::Hit(body),
            (Some(body), Freshness::Stale) => Self::Stale(body, miss),
            (None, _) => Self::Miss(miss),
        }
    }
}

/// KEYS[1]'s value and its remaining milliseconds, then each further key's value; a missing
/// value is Nil (`false` in Lua, since a nil would end the reply).
const GET_WITH_EXPIRY: &str = "local values = {redis.call('GET', KEYS[1]) or false, \
     redis.call('PTTL', KEYS[1])} \
     for i = 2, #KEYS do values[#values + 1] = redis.call('GET', KEYS[i]) or false end \
     return values";

/// How long a rebuild lease lasts if its holder never ends it (say, its instance died).
const REBUILD_LEASE_MS: u64 = 2_000;

impl Cache {
    pub(crate) async fn connect(address: &str) -> Result<Self, ApiError> {
        let connection = KeptConnection::open(address)
            .await
            .map_err(|e| redis_failed(&e))?;
        Ok(Self { connection })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Lookup<()>, ApiError> {
        let values = self.get_with_expiry(&[key]).await?;
        Ok(Lookup::of(
            values.first().and_then(result_text),
            values.get(1),
            (),
        ))
    }

    /// `GET_WITH_EXPIRY` of `keys`, in one round trip.
    async fn get_with_expiry(&self, keys: &[&str]) -> Result<Vec<RedisResult>, ApiError> {
        let mut params = vec![
            bytes(GET_WITH_EXPIRY),
            RedisParameter::Int64(keys.len() as i64),
        ];
        params.extend(keys.iter().map(|key| bytes(key)));
        self.connection
            .execute("EVAL", params)
            .await
            .map_err(|e| redis_failed(&e))
    }

    /// Takes the lease to rebuild `key`: false while another reader holds it. A Redis
    /// failure grants it, since then every reader goes to the database anyway.
    pub(crate) async fn claim_rebuild(&self, key: &str) -> bool {
        let result = self
            .connection
            .execute(
                "SET",
                [
                    bytes(&rebuild_lease_key(key)),
                    bytes("1"),
                    bytes("NX"),
                    bytes("PX"),
                    bytes(&REBUILD_LEASE_MS.to_string()),
                ],
            )
            .await;
        match result {
            Ok(values) => !matches!(values.first(), None | Some(RedisResult::Nil)),
            Err(error) => {
                eprintln!("seats: leasing the rebuild of {key}: {error:?}");
                true
            }
        }
    }

    /// Ends a rebuild lease taken by `claim_rebuild`, so waiting readers need not wait out
    /// its lifetime if the rebuilt body could not be stored.
    pub(crate) async fn end_rebuild(&self, key: &str) {
        if let Err(error) = self.connection.del([rebuild_lease_key(key)]).await {
            eprintln!("seats: ending the rebuild of {key}: {error:?}");
        }
    }

    /// Stores `value` for `ttl_ms`; a failure only costs the next reader a database query.
    pub(crate) async fn put(&self, key: &str, value: &str, ttl_ms: u64) {
        let result = self
            .connection
            .execute(
                "SET",
                [
                    bytes(key),
                    bytes(value),
                    bytes("PX"),
                    bytes(&stored_ttl_ms(ttl_ms).to_string()),
                ],
            )
            .await;
        if let Err(error) = result {
            eprintln!("seats: caching {key}: {error:?}");
        }
    }

    pub(crate) async fn seat_map(&self, schedule: ScheduleId) -> Result<Lookup<String>, ApiError> {
        let (map, version) = seat_map_keys(schedule);
        let values = self.get_with_expiry(&[&map, &version]).await?;
        let version = values
            .get(2)
            .and_then(result_text)
            .unwrap_or_else(|| "0".to_owned());
        Ok(Lookup::of(
            values.first().and_then(result_text),
            values.get(1),
            version,
        ))
    }

    /// Stores a seat map read under `version`, unless a write has bumped it since.
    pub(crate) async fn put_seat_map(
        &self,
        schedule: ScheduleId,
        version: &str,
        value: &str,
        ttl_ms: u64,
    ) {
        let (map, version_key) = seat_map_keys(schedule);
        let result = self
            .connection
            .execute(
                "EVAL",
                [
                    bytes(PUT_IF_CURRENT),
                    RedisParameter::Int64(2),
                    bytes(&map),
                    bytes(&version_key),
                    bytes(value),
                    bytes(&stored_ttl_ms(ttl_ms).to_string()),
                    bytes(version),
                ],
            )
            .await;
        if let Err(error) = result {
            eprintln!("seats: caching the seat map of {schedule}: {error:?}");
        }
    }

    /// After a committed change to seats of `schedule`.
    pub(crate) async fn invalidate(&self, schedule: ScheduleRef) -> Result<(), ApiError> {
        invalidate_schedule(&self.connection, schedule.schedule_id, schedule.concert_id)
            .await
            .map_err(|e| redis_failed(&e))
    }

    /// The top concerts by seats sold over `window`, best first: (concert, seats sold).
    pub(crate) async fn ranking(
        &self,
        window: RankingWindow,
        now: Timestamp,
    ) -> Result<Vec<(ConcertId, u64)>, ApiError> {
        let keys = window.keys(now);
        let mut params = vec![RedisParameter::Int64(keys.len() as i64)];
        params.extend(keys.iter().map(|k| bytes(k)));
        params.push(bytes("WITHSCORES"));
        let flat = self
            .connection
            .execute("ZUNION", params)
            .await
            .map_err(|e| redis_failed(&e))?;
        let mut entries: Vec<(ConcertId, u64)> = flat
            .chunks_exact(2)
            .filter_map(|pair| {
                let concert = ConcertId::parse(&result_text(&pair[0])?).ok()?;
                let score: f64 = result_text(&pair[1])?.parse().ok()?;
                // Scores are whole seat counts; a negative one (refunds beyond sales in a
                // window) ranks nothing.
                (score >= 1.0).then_some((concert, score as u64))
            })
            .collect();
        entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        entries.truncate(TOP);
        Ok(entries)
    }
}
