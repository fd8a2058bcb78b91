//! Abuse limits: how many requests one user or one client address may make per window.
//!
//! A fixed window counted next to the data (one Redis counter with a TTL per subject) is
//! enough here: the limits stop floods, not shape traffic, and a fixed window costs one
//! increment per request.

use std::time::Duration;

use serde_json::json;

use crate::error::{DomainError, ErrorCode};

/// At most `max_requests` per `window`; zero requests means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    max_requests: u32,
    window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate limit window must be between 1 and 3600 seconds")]
pub struct RateLimitError;

impl DomainError for RateLimitError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidField
    }
}

impl RateLimit {
    pub const UNLIMITED: RateLimit = RateLimit {
        max_requests: 0,
        window: Duration::from_secs(1),
    };

    pub fn new(max_requests: u32, window: Duration) -> Result<Self, RateLimitError> {
        if (1..=3600).contains(&window.as_secs()) && window.subsec_nanos() == 0 {
            Ok(Self {
                max_requests,
                window,
            })
        } else {
            Err(RateLimitError)
        }
    }

    pub const fn max_requests(&self) -> u32 {
        self.max_requests
    }

    pub const fn window(&self) -> Duration {
        self.window
    }

    pub const fn is_unlimited(&self) -> bool {
        self.max_requests == 0
    }

    /// Whether the `count`-th request of a window goes through.
    pub const fn allows(&self, count: u64) -> bool {
        self.is_unlimited() || count <= self.max_requests as u64
    }
}

/// Too many requests: retry after the window resets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many requests, retry in {retry_after_secs} s")]
pub struct RateLimited {
    pub retry_after_secs: u64,
}

impl RateLimited {
    /// From the milliseconds left in the window, rounded up to whole seconds and at least one,
    /// because `Retry-After` counts seconds and zero would invite an instant retry.
    pub fn after_millis(remaining_ms: u64) -> Self {
        Self {
            retry_after_secs: remaining_ms.div_ceil(1000).max(1),
        }
    }
}

impl DomainError for RateLimited {
    fn code(&self) -> ErrorCode {
        ErrorCode::RateLimited
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(json!({ "retryAfterSeconds": self.retry_after_secs }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_allows_exactly_its_number_of_requests_per_window() {
        let limit = RateLimit::new(3, Duration::from_secs(10)).unwrap();
        assert!(limit.allows(3));
        assert!(!limit.allows(4));
        assert!(RateLimit::UNLIMITED.allows(u64::MAX));
    }

    #[test]
    fn windows_are_whole_seconds_up_to_an_hour() {
        assert!(RateLimit::new(1, Duration::ZERO).is_err());
        assert!(RateLimit::new(1, Duration::from_millis(1500)).is_err());
        assert!(RateLimit::new(1, Duration::from_secs(3601)).is_err());
        assert!(RateLimit::new(1, Duration::from_secs(3600)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(RateLimited::after_millis(0).retry_after_secs, 1);
        assert_eq!(RateLimited::after_millis(1001).retry_after_secs, 2);
        let api: crate::ApiError = RateLimited::after_millis(2000).into();
        assert_eq!(api.http_status(), 429);
        assert_eq!(api.details, Some(json!({ "retryAfterSeconds": 2 })));
    }
}
