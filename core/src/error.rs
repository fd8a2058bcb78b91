//! One error taxonomy for the whole system.
//!
//! Every expected failure has a stable machine-readable [`ErrorCode`] with exactly one HTTP
//! status, so clients can branch on the code while the message stays free to improve. Domain
//! errors implement [`DomainError`] and convert into [`ApiError`], whose JSON body is
//! `{ "error": code, "message": …, "details"?: … }` everywhere.

use serde::Serialize;
use serde_json::Value;

/// Stable error codes. Renaming one breaks clients: add new codes instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request body or a parameter could not be parsed at all.
    BadRequest,
    /// A field parsed but broke a validation rule; the message names the field.
    InvalidField,
    /// No queue token or pass was presented where one is required.
    Unauthenticated,
    /// The token is not a well-formed token of ours.
    TokenMalformed,
    /// The token's signature does not match: forged or tampered.
    TokenBadSignature,
    /// The token was valid once but its lifetime is over.
    TokenExpired,
    /// A token of one kind (queue ticket) was presented where another (pass) is required.
    TokenWrongKind,
    /// The token is valid but for another queue.
    TokenWrongQueue,
    /// The caller is known but may not act on this resource (not the owner, wrong admin key).
    Forbidden,
    /// The resource does not exist.
    NotFound,
    /// The path exists, but not with this method; `details.allowed` lists the ones it has.
    MethodNotAllowed,
    /// One or more requested seats are held or sold by someone else.
    SeatsUnavailable,
    /// The resource is in a state that does not allow the operation.
    InvalidState,
    /// The waiting room is closed for joining.
    QueueClosed,
    /// A request with this idempotency key is still being processed.
    IdempotencyInProgress,
    /// The seat hold lapsed before the operation.
    HoldExpired,
    /// The balance does not cover the payment.
    InsufficientBalance,
    /// A money, seat-count or time-window limit was exceeded.
    LimitExceeded,
    /// The idempotency key was already used for a different request.
    IdempotencyKeyReused,
    /// The payment gateway declined the authorization.
    PaymentDeclined,
    /// The refund is no longer allowed.
    RefundNotAllowed,
    /// Too many requests from this user or address.
    RateLimited,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    /// A bug: the server met a state it does not expect (an unreadable column, an encoding
    /// failure, bad configuration). Retrying the same request will fail the same way.
    Internal,
    /// A dependency (Redis, MySQL, the gateway) is unavailable; retry later.
    ServiceUnavailable,
    /// The request took longer than the server allows it; it may or may not have taken
    /// effect, so retry it with the same idempotency key.
    Timeout,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidField,
        ErrorCode::Unauthenticated,
        ErrorCode::TokenMalformed,
        ErrorCode::TokenBadSignature,
        ErrorCode::TokenExpired,
        ErrorCode::TokenWrongKind,
        ErrorCode::TokenWrongQueue,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::SeatsUnavailable,
        ErrorCode::InvalidState,
        ErrorCode::QueueClosed,
        ErrorCode::IdempotencyInProgress,
        ErrorCode::HoldExpired,
        ErrorCode::InsufficientBalance,
        ErrorCode::LimitExceeded,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::PaymentDeclined,
        ErrorCode::RefundNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Internal,
        ErrorCode::ServiceUnavailable,
        ErrorCode::Timeout,
    ];

    /// The code as it appears in the `error` field of a response body.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::TokenMalformed => "token_malformed",
            ErrorCode::TokenBadSignature => "token_bad_signature",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenWrongKind => "token_wrong_kind",
            ErrorCode::TokenWrongQueue => "token_wrong_queue",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::SeatsUnavailable => "seats_unavailable",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::QueueClosed => "queue_closed",
            ErrorCode::IdempotencyInProgress => "idempotency_in_progress",
            ErrorCode::HoldExpired => "hold_expired",
            ErrorCode::InsufficientBalance => "insufficient_balance",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::PaymentDeclined => "payment_declined",
            ErrorCode::RefundNotAllowed => "refund_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Internal => "internal_error",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::Timeout => "timeout",
        }
    }

    /// The one HTTP status this code is always sent with.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidField => 400,
            ErrorCode::Unauthenticated
            | ErrorCode::TokenMalformed
            | ErrorCode::TokenBadSignature
            | ErrorCode::TokenExpired
            | ErrorCode::TokenWrongKind => 401,
            ErrorCode::TokenWrongQueue | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::SeatsUnavailable
            | ErrorCode::InvalidState
            | ErrorCode::QueueClosed
            | ErrorCode::IdempotencyInProgress => 409,
            ErrorCode::HoldExpired => 410,
            ErrorCode::InsufficientBalance
            | ErrorCode::LimitExceeded
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::PaymentDeclined
            | ErrorCode::RefundNotAllowed => 422,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// Whether the client may retry the same request later and expect a different outcome.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::ServiceUnavailable
                | ErrorCode::Timeout
                | ErrorCode::IdempotencyInProgress
        )
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain error that knows its place in the taxonomy.
///
/// Its `Display` text becomes the response message, so it must be safe to show to the client.
pub trait DomainError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// Structured detail for clients, e.g. the seat ids that were taken.
    fn details(&self) -> Option<Value> {
        None
    }
}

/// The error every adapter returns to a client: a code, a human message and optional details.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(rename = "error")]
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// What went wrong inside, for the log of an internal error; never sent to the client.
    #[serde(skip)]
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            cause: None,
        }
    }

    /// A body or parameter that could not be parsed; the message should name it.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A resource the path names that does not exist, e.g. `not_found("payment", 7)`.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} {id} does not exist"))
    }

    /// A dependency failure. The message names the dependency, never internal detail.
    pub fn unavailable(dependency: &str) -> Self {
        Self::new(
            ErrorCode::ServiceUnavailable,
            format!("{dependency} is unavailable, retry later"),
        )
    }

    /// A bug, with its `cause` for the log; the client sees only that the server failed.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::Internal, "the request failed inside the server")
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The JSON response body.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(r#"{{"error":"{}","message":"error"}}"#, self.code.as_str())
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl<E: DomainError> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError {
            code: error.code(),
            message: error.to_string(),
            details: error.details(),
            cause: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_has_a_distinct_name() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn every_status_the_taxonomy_promises_is_used_and_no_other() {
        let statuses: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.http_status()).collect();
        let promised: HashSet<u16> = [
            400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 500, 503, 504,
        ]
        .into();
        assert_eq!(statuses, promised);
    }

    #[test]
    fn the_body_has_the_error_code_and_message_and_omits_empty_details() {
        let body = ApiError::new(ErrorCode::NotFound, "no concert 7").to_json();
        assert_eq!(body, r#"{"error":"not_found","message":"no concert 7"}"#);
    }

    #[test]
    fn details_appear_in_the_body_when_present() {
        let error = ApiError::new(ErrorCode::SeatsUnavailable, "taken")
            .with_details(serde_json::json!({ "seatIds": [3, 4] }));
        let body: Value = serde_json::from_str(&error.to_json()).unwrap();
        assert_eq!(body["details"]["seatIds"], serde_json::json!([3, 4]));
        assert_eq!(error.http_status(), 409);
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(ErrorCode::ServiceUnavailable.is_retryable());
        assert!(ErrorCode::RateLimited.is_retryable());
        assert!(!ErrorCode::SeatsUnavailable.is_retryable());
        assert!(!ErrorCode::InsufficientBalance.is_retryable());
        assert!(!ErrorCode::Internal.is_retryable());
    }

    #[test]
    fn an_internal_error_keeps_its_cause_out_of_the_body() {
        let error = ApiError::internal("unreadable column seats.status");
        assert_eq!(error.http_status(), 500);
        assert_eq!(
            error.cause.as_deref(),
            Some("unreadable column seats.status")
        );
        assert!(
            !error.to_json().contains("seats.status"),
            "{}",
            error.to_json()
        );
    }
}
