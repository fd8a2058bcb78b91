//! The only module that talks to MySQL for payments: balances, charges, payment records,
//! and the settle and refund transactions.
//!
//! Every money movement is one transaction with its ledger line: a debit, the reservation
//! becoming CONFIRMED, its seats SOLD, the payment SUCCEEDED and the outbox rows commit
//! together or not at all; a refund likewise. A settlement first locks its payment,
//! reservation and balance rows (`FOR UPDATE`) and lets the core's rules decide on them (the
//! payment is still pending, the hold payable, the balance covers the price); the other
//! writes are conditional (`… AND status = 'HELD'`, checked with `ROW_COUNT()`). Each step
//! refuses instead of overdrawing or double-selling, whatever runs concurrently.

use spin_sdk::mysql::Row;
use sql_kit::{
    Db, DbError, DbResult, column_as, column_text, column_time, column_u64, corrupt, datetime,
    envelope, id, int, placeholders, text, with_retries,
};
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
use ticketing_core::payment::{PaymentStatus, RequestFingerprint};
use ticketing_core::seats::{Reservation, ReservationStatus};
use ticketing_core::time::Timestamp;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- balances and charges ----------------------------------------------------------------

pub(crate) async fn balance(db: &Db, user: UserId) -> DbResult<Option<Balance>> {
    let rows = db
        .query(
            "SELECT amount FROM balances WHERE user_id = ?",
            vec![id(user.get())],
        )
        .await?;
    rows.first()
        .map(|row| column_as(row, 0, "balances.amount", Balance::new))
        .transpose()
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

/// Adds `amount` to the user's balance under the charge policy, once per key.
pub(crate) async fn charge(
    db: &Db,
    user: UserId,
    key: &IdempotencyKey,
    amount: Amount,
    policy: &ChargePolicy,
    now: Timestamp,
) -> DbResult<Charged> {
    if let Some(first) = charge_by_key(db, user, key).await? {
        return Ok(replay_or_reuse(first, amount));
    }
    let outcome = with_retries!(db, charge_transaction(db, user, key, amount, policy, now));
    match outcome {
        // A concurrent request with the same key won the race: answer as a replay.
        Err(DbError::Duplicate(_)) => match charge_by_key(db, user, key).await? {
            Some(first) => Ok(replay_or_reuse(first, amount)),
            None => Err(DbError::Contention),
        },
        other => other,
    }
}

async fn charge_transaction(
    db: &Db,
    user: UserId,
    key: &IdempotencyKey,
    amount: Amount,
    policy: &ChargePolicy,
    now: Timestamp,
) -> DbResult<Charged> {
    db.begin().await?;
    let rows = db
        .query(
            "SELECT amount FROM balances WHERE user_id = ? FOR UPDATE",
            vec![id(user.get())],
        )
        .await?;
    let Some(row) = rows.first() else {
        db.rollback().await;
        return Ok(Charged::UnknownUser);
    };
    let current = column_as(row, 0, "balances.amount", Balance::new)?;
    let after = match current.charge(amount, policy) {
        Ok(after) => after,
        Err(refused) => {
            db.rollback().await;
            return Ok(Charged::Refused(refused));
        }
    };
    db.execute(
        "UPDATE balances SET amount = ?, version = version + 1 WHERE user_id = ?",
        vec![id(after.minor_units()), id(user.get())],
    )
    .await?;
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
    pub(crate) fingerprint_hex: String,
    pub(crate) failure_code: Option<String>,
    pub(crate) created_at: Timestamp,
}

const PAYMENT_COLUMNS: &str = "id, user_id, reservation_id, status, amount, HEX(request_hash), \
     failure_code, created_at";

fn payment_from(row: &Row) -> DbResult<Payment> {
    Ok(Payment {
        id: column_as(row, 0, "payments.id", PaymentId::new)?,
        user_id: column_as(row, 1, "payments.user_id", UserId::new)?,
        reservation_id: column_as(row, 2, "payments.reservation_id", ReservationId::new)?,
        status: column_text(row, 3)
            .and_then(|s| PaymentStatus::parse(&s))
            .ok_or_else(|| corrupt("payments.status"))?,
        amount: column_as(row, 4, "payments.amount", Amount::new)?,
        fingerprint_hex: column_text(row, 5)
            .ok_or_else(|| corrupt("payments.request_hash"))?
            .to_ascii_lowercase(),
        failure_code: column_text(row, 6),
        created_at: column_time(row, 7).ok_or_else(|| corrupt("payments.created_at"))?,
    })
}

impl Payment {
    pub(crate) fn same_request(&self, fingerprint: &RequestFingerprint) -> bool {
        self.fingerprint_hex == hex(fingerprint.as_bytes())
    }
}

pub(crate) async fn payment(db: &Db, payment: PaymentId) -> DbResult<Option<Payment>> {
    db.query(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?"),
        vec![id(payment.get())],
    )
    .await?
    .first()
    .map(payment_from)
    .transpose()
}

pub(crate) async fn payment_by_key(
    db: &Db,
    user: UserId,
    key: &IdempotencyKey,
) -> DbResult<Option<Payment>> {
    db.query(
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE user_id = ? AND idempotency_key = ?"
        ),
        vec![id(user.get()), text(key.as_str())],
    )
    .await?
    .first()
    .map(payment_from)
    .transpose()
}

/// Records a payment attempt as PENDING; `None` when the key was taken meanwhile.
pub(crate) async fn insert_pending(
    db: &Db,
    reservation: &Reservation,
    key: &IdempotencyKey,
    fingerprint: &RequestFingerprint,
    now: Timestamp,
) -> DbResult<Option<PaymentId>> {
    let inserted = db
        .execute(
            "INSERT INTO payments (user_id, reservation_id, idempotency_key, request_hash, amount, \
             status, created_at) VALUES (?, ?, ?, UNHEX(?), ?, 'PENDING', ?)",
            vec![
                id(reservation.user_id.get()),
                id(reservation.id.get()),
                text(key.as_str()),
                text(hex(fingerprint.as_bytes())),
                id(reservation.amount.minor_units()),
                datetime(now),
            ],
        )
        .await;
    match inserted {
        Err(DbError::Duplicate(_)) => Ok(None),
        Err(error) => Err(error),
        Ok(()) => Ok(Some(
            PaymentId::new(db.last_insert_id().await?).map_err(|_| corrupt("LAST_INSERT_ID()"))?,
        )),
    }
}

/// Ends a PENDING payment as FAILED with a reason; a settled payment is left alone.
pub(crate) async fn fail(db: &Db, payment: PaymentId, code: &str) -> DbResult<()> {
    db.execute(
        "UPDATE payments SET status = 'FAILED', failure_code = ? WHERE id = ? AND status = 'PENDING'",
        vec![text(code), id(payment.get())],
    )
    .await
}

/// A reservation with what payments need to know about its show.
#[derive(Debug)]
pub(crate) struct Booking {
    pub(crate) reservation: Reservation,
    pub(crate) concert_id: ConcertId,
    pub(crate) starts_at: Timestamp,
}

/// One read: the reservation, its show, and its seats as a sorted, comma-separated list.
pub(crate) async fn booking(db: &Db, reservation: ReservationId) -> DbResult<Option<Booking>> {
    let rows = db
        .query(
            "SELECT r.user_id, r.schedule_id, r.status, r.amount, r.expires_at, \
               sc.concert_id, sc.starts_at, \
               (SELECT GROUP_CONCAT(rs.seat_id ORDER BY rs.seat_id) FROM reservation_seats rs \
                WHERE rs.reservation_id = r.id) \
             FROM reservations r JOIN schedules sc ON sc.id = r.schedule_id WHERE r.id = ?",
            vec![id(reservation.get())],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(Booking {
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
    }))
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

/// Why an authorized payment could not be settled; the caller voids the authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsettled {
    /// The hold lapsed, or the reservation was paid or cancelled by another request.
    HoldGone,
    InsufficientBalance,
}

impl Unsettled {
    pub(crate) const fn code(self) -> &'static str {
        match self {
            Unsettled::HoldGone => "hold_gone",
            Unsettled::InsufficientBalance => "insufficient_balance",
        }
    }
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

/// The settling transaction of an authorized payment. Returns the balance after the debit.
pub(crate) async fn settle(
    db: &Db,
    payment: PaymentId,
    booking: &Booking,
    gateway_ref: &str,
    now: Timestamp,
) -> DbResult<Result<Balance, Unsettled>> {
    with_retries!(
        db,
        settle_transaction(db, payment, booking, gateway_ref, now)
    )
}

async fn settle_transaction(
    db: &Db,
    payment: PaymentId,
    booking: &Booking,
    gateway_ref: &str,
    now: Timestamp,
) -> DbResult<Result<Balance, Unsettled>> {
    let r = &booking.reservation;
    db.begin().await?;
    // Locks the payment, the reservation and the balance, so what the rules decide from
    // them below still holds at the commit.
    let rows = db
        .query(
            "SELECT p.status, r.status, r.expires_at, b.amount FROM payments p \
             JOIN reservations r ON r.id = p.reservation_id \
             JOIN balances b ON b.user_id = r.user_id \
             WHERE p.id = ? AND r.id = ? AND r.user_id = ? FOR UPDATE",
            vec![id(payment.get()), id(r.id.get()), id(r.user_id.get())],
        )
        .await?;
    let Some(row) = rows.first() else {
        db.rollback().await;
        return Ok(Err(Unsettled::HoldGone));
    };
    let pending =
        column_text(row, 0).and_then(|s| PaymentStatus::parse(&s)) == Some(PaymentStatus::Pending);
    let held = Reservation {
        status: column_text(row, 1)
            .and_then(|s| ReservationStatus::parse(&s))
            .ok_or_else(|| corrupt("reservations.status"))?,
        expires_at: column_time(row, 2).ok_or_else(|| corrupt("reservations.expires_at"))?,
        ..r.clone()
    };
    let balance = column_as(row, 3, "balances.amount", Balance::new)?;
    // Settled or failed by another request meanwhile, or the hold lapsed or changed.
    if !pending || held.confirm(now).is_err() {
        db.rollback().await;
        return Ok(Err(Unsettled::HoldGone));
    }
    let Ok(after) = balance.debit(r.amount) else {
        db.rollback().await;
        return Ok(Err(Unsettled::InsufficientBalance));
    };
    db.execute(
        "UPDATE reservations SET status = 'CONFIRMED' WHERE id = ?",
        vec![id(r.id.get())],
    )
    .await?;
    let mut params = vec![id(r.id.get())];
    params.extend(r.seat_ids.iter().map(|s| id(s.get())));
    db.execute(
        &format!(
            "UPDATE seats SET status = 'SOLD', held_until = NULL, version = version + 1 \
             WHERE reservation_id = ? AND status = 'HELD' AND id IN ({})",
            placeholders(r.seat_ids.len())
        ),
        params,
    )
    .await?;
    if db.row_count().await? != r.seat_ids.len() as u64 {
        db.rollback().await;
        return Ok(Err(Unsettled::HoldGone));
    }
    db.execute(
        "UPDATE balances SET amount = ?, version = version + 1 WHERE user_id = ?",
        vec![id(after.minor_units()), id(r.user_id.get())],
    )
    .await?;
    ledger_line(db, payment, booking, LedgerEntryKind::Payment, after, now).await?;
    db.execute(
        "UPDATE payments SET status = 'SUCCEEDED', gateway_ref = ?, failure_code = NULL \
         WHERE id = ?",
        vec![text(gateway_ref), id(payment.get())],
    )
    .await?;
    db.publish_all(&[
        envelope(&PaymentCompleted(facts(payment, booking)), now)?,
        notification(payment, booking, NotificationKind::PaymentCompleted, now)?,
    ])
    .await?;
    db.commit().await?;
    Ok(Ok(after))
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
    let amount = r.amount.minor_units();
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
    db.execute(
        "UPDATE balances SET amount = amount + ?, version = version + 1 WHERE user_id = ?",
        vec![id(amount), id(r.user_id.get())],
    )
    .await?;
    let after = balance(db, r.user_id)
        .await?
        .ok_or_else(|| corrupt("balances.amount"))?;
    ledger_line(db, payment, booking, LedgerEntryKind::Refund, after, now).await?;
    db.execute(
        "UPDATE reservations SET status = 'REFUNDED' WHERE id = ? AND status = 'CONFIRMED'",
        vec![id(r.id.get())],
    )
    .await?;
    db.execute(
        "UPDATE reservation_seats SET released_at = ? WHERE reservation_id = ? AND released_at IS NULL",
        vec![datetime(now), id(r.id.get())],
    )
    .await?;
    let mut params = vec![id(r.id.get())];
    params.extend(r.seat_ids.iter().map(|s| id(s.get())));
    db.execute(
        &format!(
            "UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL, \
             version = version + 1 WHERE reservation_id = ? AND status = 'SOLD' AND id IN ({})",
            placeholders(r.seat_ids.len())
        ),
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
