//! Balances, charges, payments and refunds.
//!
//! - `GET /api/users/{id}/balance`, `POST /api/users/{id}/balance/charge` `{ amount }` with
//!   an `Idempotency-Key` (a pass, queue ticket or draw entry of that user authorizes).
//! - `POST /api/payments` `{ reservationId }` with a pass and an `Idempotency-Key`; a seat
//!   offered from a waitlist is paid with the fan's queue ticket instead (`core::waitlist`).
//! - `GET /api/payments/{id}`, `POST /api/payments/{id}/refund` (the owner).
//!
//! # Why no crash can debit without a sale or sell without a debit
//!
//! A payment runs in three steps:
//! 1. **Record** the attempt as PENDING under the user's idempotency key (unique in the
//!    schema). No money or seat changes.
//! 2. **Authorize** at the external gateway under the attempt's reference, which follows
//!    from the user and the key (`GatewayReference`). The gateway answers a repeated
//!    reference with its first decision, so this step can be repeated safely. Still no money
//!    or seat changes in our books.
//! 3. **Settle** in one MySQL transaction: with the payment, reservation, seat and balance
//!    rows locked, reservation HELD→CONFIRMED (only if still held and unexpired), its seats
//!    HELD→SOLD (only if every one is still held for it), the balance debited (only if it
//!    covers the price: never below zero), the ledger line, the payment PENDING→SUCCEEDED,
//!    and the outbox rows (`payment.completed`, `notification.request`). All of it commits
//!    or none of it does.
//!
//! The debit and the sale are in the same transaction, so no crash point separates them. A
//! crash before step 3 commits leaves a PENDING payment with at most an unused gateway
//! authorization and nothing moved; a request with the same key after the pending timeout
//! resumes it from step 2 (the gateway repeats its decision). A refused step 3 (hold lapsed,
//! balance short) and a declined or timed-out step 2 end the payment FAILED and void the
//! authorization by reference (best effort: an uncaptured authorization lapses at the
//! gateway by itself), so the user may pay again while the hold lives. After step 3 the
//! pass is consumed, which lets the queue admit the next user; if that fails, the pass
//! lapses at its expiry, which only delays the next admission.

mod config;
mod gateway;
mod store;

use http_kit::{Reply, bearer_token, json, now, read_json};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Method, Request, StatusCode};
use sql_kit::Db;
use ticketing_core::ids::{IdempotencyKey, PaymentId, ReservationId, UserId};
use ticketing_core::money::{Amount, Balance, ChargePolicy};
use ticketing_core::pass::{Claims, TokenKind};
use ticketing_core::payment::{
    FailureReason, GatewayReference, Idempotency, IdempotencyError, PaymentStatus, RefundDecision,
    RefundPolicy, RequestFingerprint, StoredAttempt, check_idempotency,
};
use ticketing_core::time::Timestamp;
use ticketing_core::waitlist::{HoldAdmission, hold_admission};
use ticketing_core::{ApiError, ErrorCode};
use waiting_room::WaitingRoom;

use crate::config::Config;
use crate::gateway::Authorization;
use crate::store::{Booking, ChargeOrder, Charged, Payment, Settlement};

http_kit::serve!(route);

async fn route(request: Request) -> Result<Reply, ApiError> {
    let path = request.uri().path().to_owned();
    match http_kit::path_segments(&path).as_slice() {
        ["api", "users", user, "balance"] => {
            http_kit::only(&request, Method::GET)?;
            show_balance(&request, UserId::parse(user)?).await
        }
        ["api", "users", user, "balance", "charge"] => {
            http_kit::only(&request, Method::POST)?;
            charge(request, UserId::parse(user)?).await
        }
        ["api", "payments"] => {
            http_kit::only(&request, Method::POST)?;
            pay(request).await
        }
        ["api", "payments", payment] => {
            http_kit::only(&request, Method::GET)?;
            show_payment(&request, PaymentId::parse(payment)?).await
        }
        ["api", "payments", payment, "refund"] => {
            http_kit::only(&request, Method::POST)?;
            refund(&request, PaymentId::parse(payment)?).await
        }
        _ => Err(http_kit::no_route(&request)),
    }
}

async fn database(config: &Config) -> Result<Db, ApiError> {
    Ok(Db::open(&config.mysql_url).await?)
}

/// The user a token of ours speaks for: a pass, a queue ticket or a draw entry.
fn token_user(config: &Config, request: &Request, now: Timestamp) -> Result<UserId, ApiError> {
    let claims = config
        .pass_key
        .verify_any_kind(bearer_token(request)?, now)?;
    Ok(claims.user_id)
}

fn ensure_same_user(token_user: UserId, path_user: UserId) -> Result<(), ApiError> {
    if token_user == path_user {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the token is not user {path_user}'s"),
        ))
    }
}

fn idempotency_key(request: &Request) -> Result<IdempotencyKey, ApiError> {
    let value = request
        .headers()
        .get("idempotency-key")
        .ok_or_else(|| ApiError::bad_request("an Idempotency-Key header is required"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be ASCII"))?;
    Ok(IdempotencyKey::parse(value)?)
}

// ---- balances -------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceReply {
    user_id: UserId,
    balance: Balance,
}

async fn show_balance(request: &Request, user: UserId) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    ensure_same_user(token_user(config, request, now())?, user)?;
    let db = database(config).await?;
    let balance = store::balance(&db, user)
        .await?
        .ok_or_else(|| ApiError::not_found("user", user))?;
    Ok(json(
        StatusCode::OK,
        &BalanceReply {
            user_id: user,
            balance,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeRequest {
    amount: Amount,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChargeReply {
    charge_id: u64,
    user_id: UserId,
    amount: Amount,
    balance: Balance,
}

async fn charge(request: Request, user: UserId) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    ensure_same_user(token_user(config, &request, now)?, user)?;
    let key = idempotency_key(&request)?;
    let body: ChargeRequest = read_json(request).await?;
    let db = database(config).await?;
    let order = ChargeOrder {
        user,
        key: &key,
        amount: body.amount,
        policy: &ChargePolicy::default(),
    };
    let charged = store::charge(&db, &order, now).await?;
    let (status, charge) = match charged {
        Charged::New(charge) => (StatusCode::CREATED, charge),
        Charged::Replay(charge) => (StatusCode::OK, charge),
        Charged::KeyReused => return Err(IdempotencyError::KeyReused.into()),
        Charged::Refused(refused) => return Err(refused.into()),
        Charged::UnknownUser => return Err(ApiError::not_found("user", user)),
    };
    Ok(json(
        status,
        &ChargeReply {
            charge_id: charge.charge_id,
            user_id: user,
            amount: charge.amount,
            balance: charge.balance_after,
        },
    ))
}

// ---- payments -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PayRequest {
    reservation_id: ReservationId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentReply {
    payment_id: PaymentId,
    user_id: UserId,
    reservation_id: ReservationId,
    status: PaymentStatus,
    amount: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_code: Option<FailureReason>,
    created_at: Timestamp,
}

impl From<&Payment> for PaymentReply {
    fn from(payment: &Payment) -> Self {
        Self {
            payment_id: payment.id,
            user_id: payment.user_id,
            reservation_id: payment.reservation_id,
            status: payment.status,
            amount: payment.amount,
            failure_code: payment.failure,
            created_at: payment.created_at,
        }
    }
}

/// The answer a payment's outcome gets, the first time and on every replay of its key.
fn outcome_reply(payment: &Payment) -> Result<Reply, ApiError> {
    match (payment.status, payment.failure) {
        (PaymentStatus::Succeeded | PaymentStatus::Refunded, _) => {
            Ok(json(StatusCode::CREATED, &PaymentReply::from(payment)))
        }
        // A FAILED row without a reason predates reasons: it was a decline.
        (PaymentStatus::Failed, reason) => Err(reason
            .unwrap_or(FailureReason::CardDeclined)
            .error(payment.id)),
        (PaymentStatus::Pending, _) => Err(IdempotencyError::InProgress.into()),
    }
}

/// How long a PENDING payment may sit before a retry with its key takes it over: longer
/// than any request that could still be working on it.
fn pending_takeover(config: &Config) -> std::time::Duration {
    config.gateway_timeout * 2 + std::time::Duration::from_secs(5)
}

async fn pay(request: Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    // A pass, or a ticket whose fan was offered the reservation from a waitlist: which one
    // may pay is decided once the reservation is read.
    let pass = config
        .pass_key
        .verify_any_kind(bearer_token(&request)?, now)?;
    let key = idempotency_key(&request)?;
    let body: PayRequest = read_json(request).await?;
    let fingerprint = RequestFingerprint::of(&[
        b"POST /api/payments",
        &body.reservation_id.get().to_be_bytes(),
    ]);
    let opening = database(config);
    let db = waiting_room::connect_watching_strain(&config.redis_url, &pass, opening, now).await?;
    let (booking, first) =
        store::booking_and_payment_by_key(&db, body.reservation_id, pass.user_id, &key).await?;
    match idempotency(config, first.as_ref(), fingerprint, now)? {
        Idempotency::Execute => {}
        Idempotency::Replay(first) => return outcome_reply(first),
        Idempotency::Resume { started_at } => {
            // The same request, so the same reservation as the body's.
            let booking =
                booking.ok_or_else(|| ApiError::not_found("reservation", body.reservation_id))?;
            return complete(config, db, &pass, (&key, started_at), &booking, now).await;
        }
    }

    let booking = booking.ok_or_else(|| ApiError::not_found("reservation", body.reservation_id))?;
    let admission = hold_admission(pass.kind, booking.reservation.id, booking.is_waitlist_offer)?;
    booking.reservation.ensure_owner(pass.user_id)?;
    booking.reservation.ensure_payable(now)?;
    if admission == HoldAdmission::ActivePass {
        WaitingRoom::connect(&config.redis_url)
            .await?
            .ensure_pass_active(&pass, now)
            .await?;
    }
    if !store::insert_pending(&db, &booking.reservation, &key, &fingerprint, now).await? {
        // The same key, concurrently: answer as its replay would.
        let first = store::payment_by_key(&db, pass.user_id, &key).await?;
        return match idempotency(config, first.as_ref(), fingerprint, now)? {
            Idempotency::Replay(first) => outcome_reply(first),
            Idempotency::Execute | Idempotency::Resume { .. } => {
                Err(IdempotencyError::InProgress.into())
            }
        };
    }
    complete(config, db, &pass, (&key, now), &booking, now).await
}

/// What the core's idempotency rule makes of the payment stored under the request's key.
fn idempotency<'p>(
    config: &Config,
    stored: Option<&'p Payment>,
    fingerprint: RequestFingerprint,
    now: Timestamp,
) -> Result<Idempotency<&'p Payment>, IdempotencyError> {
    let stored = stored.map(|payment| StoredAttempt {
        fingerprint: payment.fingerprint,
        outcome: payment.status.is_settled().then_some(payment),
        started_at: payment.created_at,
    });
    check_idempotency(stored, fingerprint, now, pending_takeover(config))
}

/// Steps 2 and 3 of the payment the pass's user recorded under `key` at `created_at` (see
/// the module documentation). The connection goes back to the pool while the gateway
/// decides, so a slow or dead gateway cannot leave every other request (a seat hold, a
/// balance) waiting for a connection.
async fn complete(
    config: &Config,
    db: Db,
    pass: &Claims,
    (key, created_at): (&IdempotencyKey, Timestamp),
    booking: &Booking,
    now: Timestamp,
) -> Result<Reply, ApiError> {
    let amount = booking.reservation.amount;
    drop(db);
    let reference = GatewayReference::of(pass.user_id, key);
    let authorization = gateway::authorize(
        &config.gateway_url,
        &reference,
        amount,
        config.gateway_timeout,
    )
    .await;
    // Unreachable now, the payment stays PENDING for a retry to resume, as after a crash.
    let db = database(config).await?;
    let settled = match &authorization {
        Authorization::Approved { authorization_id } => {
            let sale = Settlement {
                key,
                booking,
                gateway_ref: authorization_id,
            };
            match store::settle(&db, &sale, now).await {
                Ok(Ok((payment, _balance))) => Ok(payment),
                Ok(Err(reason)) => Err(reason),
                Err(error) => {
                    // Nothing committed; the payment stays PENDING for a retry to resume.
                    return Err(error.into());
                }
            }
        }
        Authorization::Declined { .. } => Err(FailureReason::CardDeclined),
        Authorization::Unavailable => Err(FailureReason::GatewayUnavailable),
    };
    let reason = match settled {
        Ok(payment) => {
            // Back to the instance's other requests before the queue is told.
            drop(db);
            return succeeded(config, pass, payment, created_at, booking, now).await;
        }
        Err(reason) => reason,
    };
    store::fail(&db, pass.user_id, key, reason).await?;
    // Read back: a concurrent request with the same key may have settled it meanwhile, on
    // the same authorization, which then must not be voided.
    let stored = store::payment_by_key(&db, pass.user_id, key)
        .await?
        .ok_or_else(|| ApiError::not_found("payment under the Idempotency-Key", key))?;
    // No connection is held while a gateway that may be down takes its time.
    drop(db);
    if stored.status == PaymentStatus::Failed {
        if !matches!(authorization, Authorization::Declined { .. }) {
            gateway::void(&config.gateway_url, &reference, config.gateway_timeout).await;
        }
        if stored.failure == Some(FailureReason::HoldGone) {
            booking.reservation.ensure_payable(now)?;
        }
    }
    outcome_reply(&stored)
}

/// After the settle committed: a pass is consumed (the queue admits the next user; a
/// waitlist offer paid with a ticket took no pass) and the outcome, known without reading
/// it back, is answered.
async fn succeeded(
    config: &Config,
    pass: &Claims,
    payment: PaymentId,
    created_at: Timestamp,
    booking: &Booking,
    now: Timestamp,
) -> Result<Reply, ApiError> {
    if pass.kind == TokenKind::Pass
        && let Ok(room) = WaitingRoom::connect(&config.redis_url).await
        && let Err(error) = room.consume(pass, now).await
    {
        eprintln!("payment: consuming the pass of payment {payment}: {error}");
    }
    let r = &booking.reservation;
    Ok(json(
        StatusCode::CREATED,
        &PaymentReply {
            payment_id: payment,
            user_id: r.user_id,
            reservation_id: r.id,
            status: PaymentStatus::Succeeded,
            amount: r.amount,
            failure_code: None,
            created_at,
        },
    ))
}

/// The payment, if it exists and `caller` made it.
async fn owned_payment(db: &Db, caller: UserId, payment: PaymentId) -> Result<Payment, ApiError> {
    let found = store::payment(db, payment)
        .await?
        .ok_or_else(|| ApiError::not_found("payment", payment))?;
    if found.user_id != caller {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("payment {payment} belongs to another user"),
        ));
    }
    Ok(found)
}

async fn show_payment(request: &Request, payment: PaymentId) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let caller = token_user(config, request, now())?;
    let found = owned_payment(&database(config).await?, caller, payment).await?;
    Ok(json(StatusCode::OK, &PaymentReply::from(&found)))
}

async fn refund(request: &Request, payment: PaymentId) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    let caller = token_user(config, request, now)?;
    let db = database(config).await?;
    let found = owned_payment(&db, caller, payment).await?;
    let booking = store::booking(&db, found.reservation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("reservation", found.reservation_id))?;
    let decision = RefundPolicy::default().decide(found.status, booking.starts_at, now)?;
    if decision == RefundDecision::Refund && store::refund(&db, payment, &booking, now).await? {
        invalidate_seat_maps(config, &booking).await;
    }
    let current = store::payment(&db, payment)
        .await?
        .ok_or_else(|| ApiError::not_found("payment", payment))?;
    Ok(json(StatusCode::OK, &PaymentReply::from(&current)))
}

/// The refunded seats are on sale again; a stale map only lasts its TTL, so a failure is
/// logged, not returned.
async fn invalidate_seat_maps(config: &Config, booking: &Booking) {
    let schedule = booking.reservation.schedule_id;
    let invalidated = match redis_kit::KeptConnection::open(&config.redis_url).await {
        Ok(cache) => {
            cache_invalidation::invalidate_schedule(&cache, schedule, booking.concert_id).await
        }
        Err(error) => Err(error),
    };
    if let Err(error) = invalidated {
        eprintln!("payment: invalidating schedule {schedule}: {error:?}");
    }
}
