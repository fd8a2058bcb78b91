//! The only module that talks to MySQL for payments: balances, charges, payment records,
//! and the settle and refund transactions.
//!
//! Every money movement is one transaction with its ledger line: a debit, the reservation
//! becoming CONFIRMED, its seats SOLD, the payment SUCCEEDED and the outbox rows commit
//! together or not at all; a refund likewise. A settlement first locks its payment,
//! reservation, seats and balance rows (`FOR UPDATE`) and lets the core's rules decide on
//! them (the payment is still pending, the hold payable with every seat still held for it,
//! the balance covers the price), then writes the sale to exactly those locked rows. A
//! refund's writes are conditional (`… AND status = 'SUCCEEDED'`, checked with
//! `ROW_COUNT()`). Each step refuses instead of overdrawing or double-selling, whatever runs
//! concurrently.

use spin_sdk::mysql::{DbValue, ParameterValue};
use sql_kit::{
    Db, DbError, DbResult, Row, column_as, column_text, column_time, column_u64, corrupt, datetime,
    envelope, id, int, placeholders, text, with_retries,
};
use store_sql::TakenBy;
use ticketing_core::events::{
    Envelope, NotificationKind, NotificationRequest, PaymentCompleted, PaymentFacts,
    PaymentRefunded,
};
use ticketing_core::ids::{
    ConcertId, IdempotencyKey, PaymentId, ReservationId, ScheduleId, SeatId, UserId,
};
use ticketing_core::money::{
    Amount, Balance, ChargePolicy, LedgerEntry, LedgerEntryKind, MoneyError,
};
use ticketing_core::payment::{FailureReason, PaymentStatus, RequestFingerprint};
use ticketing_core::seats::{Reservation, ReservationStatus};
use ticketing_core::time::Timestamp;

// ---- balances and charges ----------------------------------------------------------------

pub(crate) async fn balance(db: &Db, user: UserId) -> DbResult<Option<Balance>> {
    read_balance(db, user, "").await
}

/// The balance, its row locked until the caller's transaction ends.
async fn locked_balance(db: &Db, user: UserId) -> DbResult<Option<Balance>> {
    read_balance(db, user, " FOR UPDATE").await
}

async fn read_balance(db: &Db, user: UserId, lock: &str) -> DbResult<Option<Balance>> {
    let rows = db
        .query(
            &format!("SELECT amount FROM balances WHERE user_id = ?{lock}"),
            vec![id(user.get())],
        )
        .await?;
    rows.first()
        .map(|row| column_as(row, 0, "balances.amount", Balance::new))
        .transpose()
}

/// Stores the balance a core rule computed from the locked row.
async fn set_balance(db: &Db, user: UserId, balance: Balance) -> DbResult<()> {
    db.execute(
        "UPDATE balances SET amount = ?, version = version + 1 WHERE user_id = ?",
        vec![id(balance.minor_units()), id(user.get())],
    )
    .await
}

/// A charge as recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Charge {
    pub(crate) charge_id: u64,
    pub(crate) amount: Amount,
    pub(crate) balance_after: Balance,
}

/// What a charge request came to.
#[derive(Debug)]
pub(crate) enum Charged {
    New(Charge),
    /// The same key was used before: its first result.
    Replay(Charge),
    /// The key was used before for another amount.
    KeyReused,
    Refused(MoneyError),
    UnknownUser,
}

async fn charge_by_key(db: &Db, user: UserId, key: &IdempotencyKey) -> DbResult<Option<Charge>> {
    let rows = db
        .query(
            "SELECT id, amount, balance_after FROM charges WHERE user_id = ? AND idempotency_key = ?",
            vec![id(user.get()), text(key.as_str())],
        )
        .await?;
    rows.first()
        .map(|row| {
            Ok(Charge {
                charge_id: column_u64(row, 0).ok_or_else(|| corrupt("charges.id"))?,
                amount: column_as(row, 1, "charges.amount", Amount::new)?,
                balance_after: column_as(row, 2, "charges.balance_after", Balance::new)?,
            })
        })
        .transpose()
}

fn replay_or_reuse(first: Charge, amount: Amount) -> Charged {
    if first.amount == amount {
        Charged::Replay(first)
    } else {
        Charged::KeyReused
    }
}

/// A charge to record: `amount` onto `user`'s balance under `policy`, once per `key`.
pub(crate) struct ChargeOrder<'a> {
    pub(crate) user: UserId,
    pub(crate) key: &'a IdempotencyKey,
    pub(crate) amount: Amount,
    pub(crate) policy: &'a ChargePolicy,
}

/// Records `order`, or answers with what its key recorded before.
pub(crate) async fn charge(db: &Db, order: &ChargeOrder<'_>, now: Timestamp) -> DbResult<Charged> {
    let ChargeOrder {
        user, key, amount, ..
    } = *order;
    if let Some(first) = charge_by_key(db, user, key).await? {
        return Ok(replay_or_reuse(first, amount));
    }
    match with_retries!(db, charge_transaction(db, order, now)) {
        // A concurrent request with the same key won the race: answer as a replay.
        Err(DbError::Duplicate(_)) => match charge_by_key(db, user, key).await? {
            Some(first) => Ok(replay_or_reuse(first, amount)),
            None => Err(DbError::Contention),
        },
        other => other,
    }
}

async fn charge_transaction(db: &Db, order: &ChargeOrder<'_>, now: Timestamp) -> DbResult<Charged> {
    let ChargeOrder {
        user,
        key,
        amount,
        policy,
    } = *order;
    db.begin().await?;
    let Some(current) = locked_balance(db, user).await? else {
        db.rollback().await;
        return Ok(Charged::UnknownUser);
    };
    let after = match current.charge(amount, policy) {
        Ok(after) => after,
        Err(refused) => {
            db.rollback().await;
            return Ok(Charged::Refused(refused));
        }
    };
    set_balance(db, user, after).await?;
    db.execute(
        "INSERT INTO charges (user_id, idempotency_key, amount, balance_after, created_at) \
         VALUES (?, ?, ?, ?, ?)",
        vec![
            id(user.get()),
            text(key.as_str()),
            id(amount.minor_units()),
            id(after.minor_units()),
            datetime(now),
        ],
    )
    .await?;
    let charge_id = db.last_insert_id().await?;
    db.execute(
        "INSERT INTO balance_ledger (user_id, entry_type, amount, balance_after, charge_id, created_at) \
         VALUES (?, 'CHARGE', ?, ?, ?, ?)",
        vec![
            id(user.get()),
            id(amount.minor_units()),
            id(after.minor_units()),
            id(charge_id),
            datetime(now),
        ],
    )
    .await?;
    db.commit().await?;
    Ok(Charged::New(Charge {
        charge_id,
        amount,
        balance_after: after,
    }))
}

// ---- payments ------------------------------------------------------------------------------

/// A payment as stored.
#[derive(Debug, Clone)]
pub(crate) struct Payment {
    pub(crate) id: PaymentId,
    pub(crate) user_id: UserId,
    pub(crate) reservation_id: ReservationId,
    pub(crate) status: PaymentStatus,
    pub(crate) amount: Amount,
    pub(crate) fingerprint: RequestFingerprint,
    pub(crate) failure: Option<FailureReason>,
    pub(crate) created_at: Timestamp,
}

/// The columns [`payment_from`] reads, of `payments p`.
const PAYMENT_COLUMNS: &str = "p.id, p.user_id, p.reservation_id, p.status, p.amount, \
     HEX(p.request_hash), p.failure_code, CAST(p.created_at AS CHAR)";

/// The payment in [`PAYMENT_COLUMNS`] starting at column `at`.
fn payment_from(row: &Row, at: usize) -> DbResult<Payment> {
    Ok(Payment {
        id: column_as(row, at, "payments.id", PaymentId::new)?,
        user_id: column_as(row, at + 1, "payments.user_id", UserId::new)?,
        reservation_id: column_as(row, at + 2, "payments.reservation_id", ReservationId::new)?,
        status: column_text(row, at + 3)
            .and_then(|s| PaymentStatus::parse(&s))
            .ok_or_else(|| corrupt("payments.status"))?,
        amount: column_as(row, at + 4, "payments.amount", Amount::new)?,
        fingerprint: column_text(row, at + 5)
            .and_then(|hex| RequestFingerprint::from_hex(&hex))
            .ok_or_else(|| corrupt("payments.request_hash"))?,
        failure: column_text(row, at + 6)
            .map(|code| FailureReason::parse(&code).ok_or_else(|| corrupt("payments.failure_code")))
            .transpose()?,
        created_at: column_time(row, at + 7).ok_or_else(|| corrupt("payments.created_at"))?,
    })
}

pub(crate) async fn payment(db: &Db, payment: PaymentId) -> DbResult<Option<Payment>> {
    payment_where(db, "p.id = ?", vec![id(payment.get())]).await
}

pub(crate) async fn payment_by_key(
    db: &Db,
    user: UserId,
    key: &IdempotencyKey,
) -> DbResult<Option<Payment>> {
    let params = vec![id(user.get()), text(key.as_str())];
    payment_where(db, "p.user_id = ? AND p.idempotency_key = ?", params).await
}

/// The payment matching `condition` (on a unique key), if any.
async fn payment_where(
    db: &Db,
    condition: &str,
    params: Vec<ParameterValue>,
) -> DbResult<Option<Payment>> {
    db.query(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments p WHERE {condition}"),
        params,
    )
    .await?
    .first()
    .map(|row| payment_from(row, 0))
    .transpose()
}

/// Records a payment attempt as PENDING under the user's `key`; `false` when the key was
/// taken meanwhile. The attempt is found by its key from here on, so its row id is not read.
pub(crate) async fn insert_pending(
    db: &Db,
    reservation: &Reservation,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
    now: Timestamp,
) -> DbResult<bool> {
    let inserted = db
        .execute(
            "INSERT INTO payments (user_id, reservation_id, idempotency_key, request_hash, amount, \
             status, created_at) VALUES (?, ?, ?, UNHEX(?), ?, 'PENDING', ?)",
            vec![
                id(reservation.user_id.get()),
                id(reservation.id.get()),
                text(key.as_str()),
                text(fingerprint.to_hex()),
                id(reservation.amount.minor_units()),
                datetime(now),
            ],
        )
        .await;
    match inserted {
        Err(DbError::Duplicate(_)) => Ok(false),
        Err(error) => Err(error),
        Ok(()) => Ok(true),
    }
}

/// Ends the user's PENDING payment under `key` as FAILED with a reason; a settled payment
/// is left alone.
pub(crate) async fn fail(
    db: &Db,
    user: UserId,
    key: &IdempotencyKey,
    reason: FailureReason,
) -> DbResult<()> {
    db.execute(
        "UPDATE payments SET status = 'FAILED', failure_code = ? \
         WHERE user_id = ? AND idempotency_key = ? AND status = 'PENDING'",
        vec![text(reason.as_str()), id(user.get()), text(key.as_str())],
    )
    .await
}

/// A reservation with what payments need to know about its show.
#[derive(Debug)]
pub(crate) struct Booking {
    pub(crate) reservation: Reservation,
    pub(crate) concert_id: ConcertId,
    pub(crate) starts_at: Timestamp,
    /// Made by the waitlist for the first fan on it: the offer admits them as a pass would.
    pub(crate) is_waitlist_offer: bool,
}

/// The columns [`booking_from`] reads: the reservation, its show, and its seats as a sorted,
/// comma-separated list.
const BOOKING_COLUMNS: &str = "r.user_id, r.schedule_id, r.status, r.amount, \
     CAST(r.expires_at AS CHAR), sc.concert_id, CAST(sc.starts_at AS CHAR), \
     (SELECT GROUP_CONCAT(rs.seat_id ORDER BY rs.seat_id) FROM reservation_seats rs \
      WHERE rs.reservation_id = r.id), \
     EXISTS (SELECT 1 FROM waitlist_entries w WHERE w.reservation_id = r.id)";

/// How many columns [`BOOKING_COLUMNS`] has.
const BOOKING_WIDTH: usize = 9;

/// The tables [`BOOKING_COLUMNS`] reads.
const BOOKING_TABLES: &str = "reservations r JOIN schedules sc ON sc.id = r.schedule_id";

fn booking_from(row: &Row, reservation: ReservationId) -> DbResult<Booking> {
    Ok(Booking {
        reservation: Reservation {
            id: reservation,
            user_id: column_as(row, 0, "reservations.user_id", UserId::new)?,
            schedule_id: column_as(row, 1, "reservations.schedule_id", ScheduleId::new)?,
            status: column_text(row, 2)
                .and_then(|s| ReservationStatus::parse(&s))
                .ok_or_else(|| corrupt("reservations.status"))?,
            seat_ids: seat_list(column_text(row, 7).as_deref())?,
            amount: column_as(row, 3, "reservations.amount", Amount::new)?,
            expires_at: column_time(row, 4).ok_or_else(|| corrupt("reservations.expires_at"))?,
        },
        concert_id: column_as(row, 5, "schedules.concert_id", ConcertId::new)?,
        starts_at: column_time(row, 6).ok_or_else(|| corrupt("schedules.starts_at"))?,
        is_waitlist_offer: column_u64(row, 8).ok_or_else(|| corrupt("waitlist offer flag"))? == 1,
    })
}

/// One read: the reservation with its show and seats.
pub(crate) async fn booking(db: &Db, reservation: ReservationId) -> DbResult<Option<Booking>> {
    db.query(
        &format!("SELECT {BOOKING_COLUMNS} FROM {BOOKING_TABLES} WHERE r.id = ?"),
        vec![id(reservation.get())],
    )
    .await?
    .first()
    .map(|row| booking_from(row, reservation))
    .transpose()
}

/// What a payment request names and what its key already did: the reservation (with its
/// show and seats) and the payment the user made under `key` before, if any. One read on the
/// way of every payment, for one round trip instead of two.
pub(crate) async fn booking_and_payment_by_key(
    db: &Db,
    reservation: ReservationId,
    user: UserId,
    key: &IdempotencyKey,
) -> DbResult<(Option<Booking>, Option<Payment>)> {
    let rows = db
        .query(
            &format!(
                "SELECT {BOOKING_COLUMNS}, {PAYMENT_COLUMNS} FROM {BOOKING_TABLES} \
                 LEFT JOIN payments p ON p.user_id = ? AND p.idempotency_key = ? WHERE r.id = ?"
            ),
            vec![id(user.get()), text(key.as_str()), id(reservation.get())],
        )
        .await?;
    let Some(row) = rows.first() else {
        // No such reservation; the key may still have paid for another one.
        return Ok((None, payment_by_key(db, user, key).await?));
    };
    let first = match row[BOOKING_WIDTH] {
        DbValue::DbNull => None,
        _ => Some(payment_from(row, BOOKING_WIDTH)?),
    };
    Ok((Some(booking_from(row, reservation)?), first))
}

/// The seats of a `GROUP_CONCAT`; NULL (no rows) is no seats.
fn seat_list(list: Option<&str>) -> DbResult<Vec<SeatId>> {
    list.map_or(Ok(Vec::new()), |list| {
        list.split(',')
            .map(|n| {
                n.parse()
                    .ok()
                    .and_then(|n| SeatId::new(n).ok())
                    .ok_or_else(|| corrupt("reservation_seats.seat_id"))
            })
            .collect()
    })
}

fn facts(payment: PaymentId, booking: &Booking) -> PaymentFacts {
    let r = &booking.reservation;
    PaymentFacts {
        payment_id: payment,
        reservation_id: r.id,
        user_id: r.user_id,
        concert_id: booking.concert_id,
        schedule_id: r.schedule_id,
        seat_ids: r.seat_ids.clone(),
        amount: r.amount,
    }
}

/// The ledger line of a payment or refund (unique per kind and payment in the schema).
async fn ledger_line(
    db: &Db,
    payment: PaymentId,
    booking: &Booking,
    kind: LedgerEntryKind,
    balance_after: Balance,
    now: Timestamp,
) -> DbResult<()> {
    let entry = LedgerEntry {
        kind,
        amount: booking.reservation.amount,
    };
    db.execute(
        "INSERT INTO balance_ledger (user_id, entry_type, amount, balance_after, payment_id, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            id(booking.reservation.user_id.get()),
            text(kind.as_str()),
            int(entry.delta()),
            id(balance_after.minor_units()),
            id(payment.get()),
            datetime(now),
        ],
    )
    .await
}

/// The request to tell the user about the payment, for the outbox.
fn notification(
    payment: PaymentId,
    booking: &Booking,
    kind: NotificationKind,
    now: Timestamp,
) -> DbResult<Envelope> {
    envelope(
        &NotificationRequest {
            user_id: booking.reservation.user_id,
            kind,
            reservation_id: booking.reservation.id,
            payment_id: Some(payment),
        },
        now,
    )
}

/// An authorized payment to settle: the one the booking's user made under `key`, approved
/// by the gateway as `gateway_ref`.
pub(crate) struct Settlement<'a> {
    pub(crate) key: &'a IdempotencyKey,
    pub(crate) booking: &'a Booking,
    pub(crate) gateway_ref: &'a str,
}

/// Settles `sale`. Returns the payment and the balance after the debit, or why it could not
/// settle (the hold is gone, the balance is short); the caller then voids the authorization.
pub(crate) async fn settle(
    db: &Db,
    sale: &Settlement<'_>,
    now: Timestamp,
) -> DbResult<Result<(PaymentId, Balance), FailureReason>> {
    with_retries!(db, settle_transaction(db, sale, now))
}

async fn settle_transaction(
    db: &Db,
    sale: &Settlement<'_>,
    now: Timestamp,
) -> DbResult<Result<(PaymentId, Balance), FailureReason>> {
    let booking = sale.booking;
    db.begin().await?;
    // A seat released or sold meanwhile leaves nothing to lock.
    let Some(locked) = lock_sale(db, sale).await? else {
        db.rollback().await;
        return Ok(Err(FailureReason::HoldGone));
    };
    // Settled or failed by another request meanwhile, or the hold lapsed or changed.
    if !locked.pending || locked.held.confirm(now).is_err() {
        db.rollback().await;
        return Ok(Err(FailureReason::HoldGone));
    }
    let Ok(after) = locked.balance.debit(booking.reservation.amount) else {
        db.rollback().await;
        return Ok(Err(FailureReason::InsufficientBalance));
    };
    record_sale(db, locked.payment, sale, after).await?;
    ledger_line(
        db,
        locked.payment,
        booking,
        LedgerEntryKind::Payment,
        after,
        now,
    )
    .await?;
    db.publish_all(&[
        envelope(&PaymentCompleted(facts(locked.payment, booking)), now)?,
        notification(
            locked.payment,
            booking,
            NotificationKind::PaymentCompleted,
            now,
        )?,
    ])
    .await?;
    db.commit().await?;
    Ok(Ok((locked.payment, after)))
}

/// What a settlement decides from, locked until its transaction ends.
struct LockedSale {
    payment: PaymentId,
    pending: bool,
    held: Reservation,
    balance: Balance,
}

/// Locks the payment, the reservation, its seats still held for it and the balance (one
/// row per seat); `None` when a seat is no longer held for it.
async fn lock_sale(db: &Db, sale: &Settlement<'_>) -> DbResult<Option<LockedSale>> {
    let r = &sale.booking.reservation;
    let mut params: Vec<_> = r.seat_ids.iter().map(|s| id(s.get())).collect();
    params.extend([
        id(r.user_id.get()),
        text(sale.key.as_str()),
        id(r.id.get()),
        id(r.user_id.get()),
    ]);
    let rows = db
        .query(
            &format!(
                "SELECT p.id, p.status, r.status, CAST(r.expires_at AS CHAR), b.amount FROM payments p \
                 JOIN reservations r ON r.id = p.reservation_id \
                 JOIN balances b ON b.user_id = r.user_id \
                 JOIN seats s ON s.id IN ({}) AND s.reservation_id = r.id AND s.status = 'HELD' \
                 WHERE p.user_id = ? AND p.idempotency_key = ? AND r.id = ? AND r.user_id = ? \
                 FOR UPDATE",
                placeholders(r.seat_ids.len())
            ),
            params,
        )
        .await?;
    let Some(row) = rows.first().filter(|_| rows.len() == r.seat_ids.len()) else {
        return Ok(None);
    };
    Ok(Some(LockedSale {
        payment: column_as(row, 0, "payments.id", PaymentId::new)?,
        pending: column_text(row, 1).and_then(|s| PaymentStatus::parse(&s))
            == Some(PaymentStatus::Pending),
        held: Reservation {
            status: column_text(row, 2)
                .and_then(|s| ReservationStatus::parse(&s))
                .ok_or_else(|| corrupt("reservations.status"))?,
            expires_at: column_time(row, 3).ok_or_else(|| corrupt("reservations.expires_at"))?,
            ..r.clone()
        },
        balance: column_as(row, 4, "balances.amount", Balance::new)?,
    }))
}

/// The sale in one statement, on exactly the rows `lock_sale` locked: the payment
/// SUCCEEDED, the reservation CONFIRMED, its seats SOLD, the balance debited to `after` (a
/// multi-table UPDATE changes each matched row once, however many seats join it).
async fn record_sale(
    db: &Db,
    payment: PaymentId,
    sale: &Settlement<'_>,
    after: Balance,
) -> DbResult<()> {
    let r = &sale.booking.reservation;
    let mut params = vec![text(sale.gateway_ref), id(after.minor_units())];
    params.extend(r.seat_ids.iter().map(|s| id(s.get())));
    params.extend([id(payment.get()), id(r.id.get())]);
    db.execute(
        &format!(
            "UPDATE payments p JOIN reservations r ON r.id = p.reservation_id \
             JOIN balances b ON b.user_id = r.user_id \
             JOIN seats s ON s.reservation_id = r.id \
             SET p.status = 'SUCCEEDED', p.gateway_ref = ?, p.failure_code = NULL, \
               r.status = 'CONFIRMED', \
               b.amount = ?, b.version = b.version + 1, \
               s.status = 'SOLD', s.held_until = NULL, s.version = s.version + 1 \
             WHERE s.id IN ({}) AND s.status = 'HELD' AND p.id = ? AND r.id = ?",
            placeholders(r.seat_ids.len())
        ),
        params,
    )
    .await
}

/// The refunding transaction: credit back, seats on sale again, reservation REFUNDED,
/// payment REFUNDED, ledger and outbox. Returns false when the payment was no longer
/// SUCCEEDED (refunded meanwhile).
pub(crate) async fn refund(
    db: &Db,
    payment: PaymentId,
    booking: &Booking,
    now: Timestamp,
) -> DbResult<bool> {
    with_retries!(db, refund_transaction(db, payment, booking, now))
}

async fn refund_transaction(
    db: &Db,
    payment: PaymentId,
    booking: &Booking,
    now: Timestamp,
) -> DbResult<bool> {
    let r = &booking.reservation;
    db.begin().await?;
    db.execute(
        "UPDATE payments SET status = 'REFUNDED', refunded_at = ? WHERE id = ? AND status = 'SUCCEEDED'",
        vec![datetime(now), id(payment.get())],
    )
    .await?;
    if db.row_count().await? != 1 {
        db.rollback().await;
        return Ok(false);
    }
    let after = credit(db, r.user_id, r.amount).await?;
    ledger_line(db, payment, booking, LedgerEntryKind::Refund, after, now).await?;
    db.execute(
        "UPDATE reservations SET status = 'REFUNDED' WHERE id = ? AND status = 'CONFIRMED'",
        vec![id(r.id.get())],
    )
    .await?;
    db.execute(
        &store_sql::release_seat_links(1),
        vec![datetime(now), id(r.id.get())],
    )
    .await?;
    let mut params: Vec<_> = r.seat_ids.iter().map(|s| id(s.get())).collect();
    params.push(id(r.id.get()));
    db.execute(
        &store_sql::free_seats(TakenBy::Sale, r.seat_ids.len(), 1),
        params,
    )
    .await?;
    db.publish_all(&[
        envelope(&PaymentRefunded(facts(payment, booking)), now)?,
        notification(payment, booking, NotificationKind::PaymentRefunded, now)?,
    ])
    .await?;
    db.commit().await?;
    Ok(true)
}

/// Gives `amount` back to `user` by the core's rule (`Balance::credit`), on the balance row
/// locked inside the caller's transaction; returns the balance after.
async fn credit(db: &Db, user: UserId, amount: Amount) -> DbResult<Balance> {
    let after = locked_balance(db, user)
        .await?
        .ok_or_else(|| corrupt("balances.amount"))?
        .credit(amount)
        .map_err(|error| DbError::Internal(format!("crediting a refund: {error}")))?;
    set_balance(db, user, after).await?;
    Ok(after)
}
