//! Payments: the payment lifecycle, idempotency-key semantics and refund rules.
//!
//! Idempotency follows the IETF `Idempotency-Key` draft: the first request under a key is
//! executed and its result stored; a retry with the same key and the *same* request gets the
//! stored result (no second debit); the same key with a *different* request is refused with
//! 422; a retry while the first is still in flight is refused with 409.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, DomainError, ErrorCode};
use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::time::Timestamp;

/// The `payments.status` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Recorded, authorization under way.
    Pending,
    /// Authorized and committed: money debited, seats sold.
    Succeeded,
    /// Declined or timed out: nothing debited.
    Failed,
    /// Succeeded, then credited back.
    Refunded,
}

impl PaymentStatus {
    const ALL: [PaymentStatus; 4] = [
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A final outcome that a replay may return as it is.
    pub const fn is_settled(self) -> bool {
        !matches!(self, PaymentStatus::Pending)
    }

    /// Whether the payment moved money out of the balance (and, if refunded, back in).
    pub const fn debited(self) -> bool {
        matches!(self, PaymentStatus::Succeeded | PaymentStatus::Refunded)
    }

    /// The lifecycle: PENDING → SUCCEEDED | FAILED, SUCCEEDED → REFUNDED. Nothing else.
    pub fn can_become(self, next: PaymentStatus) -> bool {
        matches!(
            (self, next),
            (PaymentStatus::Pending, PaymentStatus::Succeeded)
                | (PaymentStatus::Pending, PaymentStatus::Failed)
                | (PaymentStatus::Succeeded, PaymentStatus::Refunded)
        )
    }
}

/// Why a payment ended FAILED: the `payments.failure_code` column and a reply's
/// `failureCode`. Every one of them moved no money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The gateway declined the authorization.
    CardDeclined,
    /// The gateway could not be reached or did not answer in time; the authorization, if
    /// any, was voided.
    GatewayUnavailable,
    /// The balance did not cover the amount; the authorization was voided.
    InsufficientBalance,
    /// The hold lapsed, or another request paid or cancelled the reservation, before the
    /// payment settled; the authorization was voided.
    HoldGone,
}

impl FailureReason {
    pub const ALL: [FailureReason; 4] = [
        FailureReason::CardDeclined,
        FailureReason::GatewayUnavailable,
        FailureReason::InsufficientBalance,
        FailureReason::HoldGone,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::CardDeclined => "card_declined",
            FailureReason::GatewayUnavailable => "gateway_unavailable",
            FailureReason::InsufficientBalance => "insufficient_balance",
            FailureReason::HoldGone => "hold_gone",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }

    /// The error a request for this failed payment answers, the first time and on every
    /// replay of its key.
    pub fn error(self, payment: PaymentId) -> ApiError {
        let for_payment = || serde_json::json!({ "paymentId": payment });
        match self {
            FailureReason::InsufficientBalance => ApiError::new(
                ErrorCode::InsufficientBalance,
                "the balance does not cover the payment; nothing was charged",
            ),
            FailureReason::HoldGone => ApiError::new(
                ErrorCode::HoldExpired,
                "the seat hold lapsed or changed before the payment; nothing was charged",
            ),
            FailureReason::GatewayUnavailable => {
                ApiError::unavailable("the payment gateway").with_details(for_payment())
            }
            FailureReason::CardDeclined => ApiError::new(
                ErrorCode::PaymentDeclined,
                "the payment gateway declined the payment; nothing was charged",
            )
            .with_details(for_payment()),
        }
    }
}

/// A digest of everything that makes two requests "the same request" under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// SHA-256 over the length-prefixed parts, so `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as SQL's `UNHEX` takes it and URLs carry it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A fingerprint from 64 hex digits of either case (SQL's `HEX` gives uppercase).
    pub fn from_hex(text: &str) -> Option<Self> {
        // from_str_radix would take a sign: only digits may pass.
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

/// The merchant reference a payment attempt is authorized (and voided) under at the gateway.
/// It follows from the user and the Idempotency-Key alone, so it is known before the attempt
/// is stored (no round trip to learn its row id) and a resumed attempt gets the reference its
/// first request used: the gateway then repeats its first decision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GatewayReference(String);

impl GatewayReference {
    /// `pay-` and 32 hex digits of a digest: URL-safe whatever characters the key has.
    pub fn of(user: UserId, key: &IdempotencyKey) -> Self {
        let digest = RequestFingerprint::of(&[
            b"gateway reference",
            &user.get().to_be_bytes(),
            key.as_str().as_bytes(),
        ]);
        Self(format!("pay-{}", &digest.to_hex()[..32]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GatewayReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What storage already knows about an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAttempt<R> {
    pub fingerprint: RequestFingerprint,
    /// `None` until the first request settles.
    pub outcome: Option<R>,
    /// When the first request stored the attempt.
    pub started_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    InProgress,
}

impl DomainError for IdempotencyError {
    fn code(&self) -> ErrorCode {
        match self {
            IdempotencyError::KeyReused => ErrorCode::IdempotencyKeyReused,
            IdempotencyError::InProgress => ErrorCode::IdempotencyInProgress,
        }
    }
}

/// What to do with an incoming request under an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Idempotency<R> {
    /// First use of the key: run the request.
    Execute,
    /// The same request ran before: answer with its outcome, do nothing else.
    Replay(R),
    /// The same request started at `started_at` and never settled, and it is older than any
    /// request could still be working on it: carry it on, as the request it was (its
    /// start, and so its gateway reference, stay the first one's).
    Resume { started_at: Timestamp },
}

/// Decides between executing, replaying, resuming or refusing. An unsettled attempt is in
/// progress until `abandoned_after` has passed since it started.
pub fn check_idempotency<R>(
    stored: Option<StoredAttempt<R>>,
    incoming: RequestFingerprint,
    now: Timestamp,
    abandoned_after: Duration,
) -> Result<Idempotency<R>, IdempotencyError> {
    let Some(attempt) = stored else {
        return Ok(Idempotency::Execute);
    };
    if attempt.fingerprint != incoming {
        return Err(IdempotencyError::KeyReused);
    }
    match attempt.outcome {
        Some(outcome) => Ok(Idempotency::Replay(outcome)),
        None if now >= attempt.started_at.saturating_add(abandoned_after) => {
            Ok(Idempotency::Resume {
                started_at: attempt.started_at,
            })
        }
        None => Err(IdempotencyError::InProgress),
    }
}

/// Refunds close some time before the show, when unsold seats can no longer be resold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefundPolicy {
    pub closes_before_show: Duration,
}

impl Default for RefundPolicy {
    fn default() -> Self {
        Self {
            closes_before_show: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("only a succeeded payment can be refunded; this one is {0:?}")]
    NotRefundable(PaymentStatus),
    #[error("refunds closed at {0}")]
    WindowClosed(Timestamp),
}

impl DomainError for RefundError {
    fn code(&self) -> ErrorCode {
        match self {
            RefundError::NotRefundable(_) => ErrorCode::InvalidState,
            RefundError::WindowClosed(_) => ErrorCode::RefundNotAllowed,
        }
    }
}

/// The outcome of asking for a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundDecision {
    /// Credit the amount back, release the seats, mark the payment refunded.
    Refund,
    /// Already refunded: answer as before, move nothing (refunds are idempotent).
    AlreadyRefunded,
}

impl RefundPolicy {
    pub fn decide(
        &self,
        status: PaymentStatus,
        show_starts_at: Timestamp,
        now: Timestamp,
    ) -> Result<RefundDecision, RefundError> {
        match status {
            PaymentStatus::Refunded => Ok(RefundDecision::AlreadyRefunded),
            PaymentStatus::Succeeded => {
                let closes_at = show_starts_at.saturating_sub(self.closes_before_show);
                if now < closes_at {
                    Ok(RefundDecision::Refund)
                } else {
                    Err(RefundError::WindowClosed(closes_at))
                }
            }
            other => Err(RefundError::NotRefundable(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(body: &str) -> RequestFingerprint {
        RequestFingerprint::of(&[b"POST /api/payments", body.as_bytes()])
    }

    fn reference(user: u64, key: &str) -> GatewayReference {
        GatewayReference::of(
            UserId::new(user).unwrap(),
            &IdempotencyKey::parse(key).unwrap(),
        )
    }

    #[test]
    fn a_gateway_reference_is_the_same_for_the_same_user_and_key() {
        assert_eq!(reference(7, "k-1"), reference(7, "k-1"));
    }

    #[test]
    fn a_gateway_reference_differs_by_user_and_by_key() {
        assert_ne!(reference(7, "k-1"), reference(8, "k-1"));
        assert_ne!(reference(7, "k-1"), reference(7, "k-2"));
    }

    #[test]
    fn a_gateway_reference_is_url_safe_whatever_the_key() {
        let reference = reference(7, "a/b?c#d%e");
        assert_eq!(reference.as_str().len(), 36);
        assert!(reference.as_str().starts_with("pay-"));
        assert!(
            reference.as_str()[4..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
    }

    const STARTED: Timestamp = Timestamp::from_unix_millis(1_000_000);
    const ABANDONED_AFTER: Duration = Duration::from_secs(25);

    fn attempt(fingerprint: &str, outcome: Option<u32>) -> Option<StoredAttempt<u32>> {
        Some(StoredAttempt {
            fingerprint: fp(fingerprint),
            outcome,
            started_at: STARTED,
        })
    }

    fn check_at(
        stored: Option<StoredAttempt<u32>>,
        incoming: &str,
        now: Timestamp,
    ) -> Result<Idempotency<u32>, IdempotencyError> {
        check_idempotency(stored, fp(incoming), now, ABANDONED_AFTER)
    }

    #[test]
    fn a_new_key_executes() {
        assert_eq!(check_at(None, "a", STARTED), Ok(Idempotency::Execute));
    }

    #[test]
    fn the_same_request_under_the_same_key_replays_the_first_outcome() {
        assert_eq!(
            check_at(attempt("a", Some(201)), "a", STARTED),
            Ok(Idempotency::Replay(201))
        );
    }

    #[test]
    fn a_different_request_under_the_same_key_is_a_422_conflict() {
        let error = check_at(attempt("a", Some(201)), "b", STARTED).unwrap_err();
        assert_eq!(error, IdempotencyError::KeyReused);
        assert_eq!(crate::ApiError::from(error).http_status(), 422);
    }

    #[test]
    fn a_retry_while_the_first_is_in_flight_is_a_409() {
        let just_before = STARTED.saturating_add(ABANDONED_AFTER - Duration::from_millis(1));
        let error = check_at(attempt("a", None), "a", just_before).unwrap_err();
        assert_eq!(error, IdempotencyError::InProgress);
        assert_eq!(crate::ApiError::from(error).http_status(), 409);
    }

    #[test]
    fn an_attempt_abandoned_long_enough_is_resumed_from_its_first_start() {
        let abandoned = STARTED.saturating_add(ABANDONED_AFTER);
        assert_eq!(
            check_at(attempt("a", None), "a", abandoned),
            Ok(Idempotency::Resume {
                started_at: STARTED
            })
        );
        // Even abandoned, it is still only the same request's to resume.
        assert_eq!(
            check_at(attempt("a", None), "b", abandoned),
            Err(IdempotencyError::KeyReused)
        );
    }

    #[test]
    fn a_fingerprint_reads_back_from_its_hex_in_either_case_and_nothing_else_reads() {
        let fingerprint = fp("a");
        assert_eq!(
            RequestFingerprint::from_hex(&fingerprint.to_hex()),
            Some(fingerprint)
        );
        let upper = fingerprint.to_hex().to_ascii_uppercase();
        assert_eq!(RequestFingerprint::from_hex(&upper), Some(fingerprint));
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(63), &"+1".repeat(32)] {
            assert_eq!(RequestFingerprint::from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn failure_reasons_read_back_from_their_names_and_answer_with_their_own_error() {
        for reason in FailureReason::ALL {
            assert_eq!(FailureReason::parse(reason.as_str()), Some(reason));
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::json!(reason.as_str())
            );
        }
        assert_eq!(FailureReason::parse("declined"), None);
        let payment = PaymentId::new(7).unwrap();
        let statuses: Vec<u16> = FailureReason::ALL
            .map(|reason| reason.error(payment).http_status())
            .to_vec();
        assert_eq!(statuses, [422, 503, 422, 410]);
        assert_eq!(
            FailureReason::CardDeclined.error(payment).details,
            Some(serde_json::json!({ "paymentId": 7 }))
        );
    }

    #[test]
    fn fingerprints_do_not_collide_across_part_boundaries() {
        assert_ne!(
            RequestFingerprint::of(&[b"ab", b"c"]),
            RequestFingerprint::of(&[b"a", b"bc"])
        );
    }

    #[test]
    fn the_payment_lifecycle_allows_only_its_transitions() {
        use PaymentStatus::*;
        let all = [Pending, Succeeded, Failed, Refunded];
        let allowed = [
            (Pending, Succeeded),
            (Pending, Failed),
            (Succeeded, Refunded),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_their_column_names() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert!(!PaymentStatus::Pending.is_settled());
        assert!(PaymentStatus::Refunded.debited());
        assert!(!PaymentStatus::Failed.debited());
    }

    const SHOW: Timestamp = Timestamp::from_unix_millis(1_900_000_000_000);

    #[test]
    fn a_succeeded_payment_is_refundable_until_the_window_closes() {
        let policy = RefundPolicy::default();
        let closes = SHOW.saturating_sub(Duration::from_secs(86_400));
        let just_before = closes.saturating_sub(Duration::from_millis(1));
        assert_eq!(
            policy.decide(PaymentStatus::Succeeded, SHOW, just_before),
            Ok(RefundDecision::Refund)
        );
        assert_eq!(
            policy.decide(PaymentStatus::Succeeded, SHOW, closes),
            Err(RefundError::WindowClosed(closes))
        );
    }

    #[test]
    fn refunding_twice_moves_money_once() {
        let policy = RefundPolicy::default();
        assert_eq!(
            policy.decide(PaymentStatus::Refunded, SHOW, SHOW),
            Ok(RefundDecision::AlreadyRefunded)
        );
    }

    #[test]
    fn failed_and_pending_payments_cannot_be_refunded() {
        let policy = RefundPolicy::default();
        for status in [PaymentStatus::Failed, PaymentStatus::Pending] {
            let error = policy
                .decide(status, SHOW, Timestamp::UNIX_EPOCH)
                .unwrap_err();
            assert_eq!(crate::ApiError::from(error).http_status(), 409);
        }
    }
}
