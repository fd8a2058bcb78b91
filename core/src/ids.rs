//! Identifier newtypes with parse constructors: once a value has one of these types it is
//! valid, so handlers parse at the edge and the rules never re-check.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{DomainError, ErrorCode};

/// Why a raw value is not a valid identifier. `what` names the field for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {reason}")]
pub struct IdError {
    pub what: &'static str,
    pub reason: &'static str,
}

impl DomainError for IdError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidField
    }
}

/// Largest numeric id: MySQL's signed `BIGINT` range, so ids survive any client or column.
pub const MAX_NUMERIC_ID: u64 = i64::MAX as u64;

/// Defines a positive numeric id. JSON accepts the number or its decimal string, because
/// JavaScript clients routinely send ids as strings.
macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// What the id is called in error messages.
            pub const WHAT: &'static str = $what;

            pub fn new(value: u64) -> Result<Self, IdError> {
                match value {
                    0 => Err(IdError { what: $what, reason: "must be a positive integer" }),
                    v if v > MAX_NUMERIC_ID => Err(IdError { what: $what, reason: "is too large" }),
                    v => Ok(Self(v)),
                }
            }

            /// Parses the decimal form used in paths and headers.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let valid_digits = !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
                if !valid_digits {
                    return Err(IdError { what: $what, reason: "must be a positive integer" });
                }
                text.parse::<u64>()
                    .map_err(|_| IdError { what: $what, reason: "is too large" })
                    .and_then(Self::new)
            }

            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_u64(self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(IdVisitor {
                    what: $what,
                    new: Self::new,
                    parse: Self::parse,
                })
            }
        }
    };
}

/// Reads a numeric id from a JSON number or a decimal string, so every wrong value (negative,
/// fractional, not a number) is reported with the field's name and rule.
struct IdVisitor<T> {
    what: &'static str,
    new: fn(u64) -> Result<T, IdError>,
    parse: fn(&str) -> Result<T, IdError>,
}

impl<T> IdVisitor<T> {
    fn not_positive<E: serde::de::Error>(&self) -> E {
        E::custom(IdError {
            what: self.what,
            reason: "must be a positive integer",
        })
    }
}

impl<T> serde::de::Visitor<'_> for IdVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as a positive integer", self.what)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<T, E> {
        (self.new)(value).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<T, E> {
        let value = u64::try_from(value).map_err(|_| self.not_positive())?;
        self.visit_u64(value)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<T, E> {
        Err(self.not_positive())
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }
}

numeric_id!(
    /// A user (fan) account.
    UserId,
    "userId"
);
numeric_id!(ConcertId, "concertId");
numeric_id!(
    /// One performance (date) of a concert; seats belong to a schedule.
    ScheduleId,
    "scheduleId"
);
numeric_id!(SeatId, "seatId");
numeric_id!(ReservationId, "reservationId");
numeric_id!(PaymentId, "paymentId");

/// Validates a short identifier made of the characters allowed by `allowed`.
fn parse_token<'a>(
    text: &'a str,
    what: &'static str,
    max_len: usize,
    allowed: impl Fn(u8) -> bool,
) -> Result<&'a str, IdError> {
    if text.is_empty() {
        return Err(IdError {
            what,
            reason: "must not be empty",
        });
    }
    if text.len() > max_len {
        return Err(IdError {
            what,
            reason: "is too long",
        });
    }
    if !text.bytes().all(allowed) {
        return Err(IdError {
            what,
            reason: "contains characters that are not allowed",
        });
    }
    Ok(text)
}

/// A waiting room. Lowercase letters, digits, `-` and `_`, at most 48 characters, so it can
/// sit inside Redis hash tags (`{q:ID}`) and signed passes without escaping.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct QueueId(String);

impl QueueId {
    pub const MAX_LEN: usize = 48;
    const DEFAULT: &'static str = "default";

    pub fn parse(text: &str) -> Result<Self, IdError> {
        parse_token(text, "queueId", Self::MAX_LEN, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
        })
        .map(|t| Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The single queue used when a request names none.
impl Default for QueueId {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QueueId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A client-chosen key that makes a money-moving request safe to retry. Visible ASCII, at
/// most 64 characters (the column width), e.g. a UUID.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 64;

    pub fn parse(text: &str) -> Result<Self, IdError> {
        parse_token(text, "Idempotency-Key", Self::MAX_LEN, |b| {
            b.is_ascii_graphic()
        })
        .map(|t| Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_positive_decimal_parses_as_an_id() {
        assert_eq!(UserId::parse("42").unwrap().get(), 42);
    }

    #[test]
    fn zero_negative_signed_or_non_numeric_ids_are_rejected_with_the_field_name() {
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "abc",
            " 1",
            "1 ",
            "99999999999999999999",
        ] {
            let error = UserId::parse(bad).unwrap_err();
            assert_eq!(error.what, "userId", "{bad:?}");
        }
    }

    #[test]
    fn ids_beyond_the_bigint_range_are_rejected() {
        assert!(SeatId::new(MAX_NUMERIC_ID).is_ok());
        assert!(SeatId::new(MAX_NUMERIC_ID + 1).is_err());
        assert!(SeatId::parse("9223372036854775808").is_err());
    }

    #[test]
    fn json_ids_may_be_numbers_or_decimal_strings() {
        let from_number: UserId = serde_json::from_str("7").unwrap();
        let from_text: UserId = serde_json::from_str(r#""7""#).unwrap();
        assert_eq!(from_number, from_text);
        assert!(serde_json::from_str::<UserId>("-7").is_err());
        assert!(serde_json::from_str::<UserId>("7.5").is_err());
        assert!(serde_json::from_str::<UserId>(r#""seven""#).is_err());
        for bad in ["-7", "7.5", "true", "null", "[7]"] {
            let message = serde_json::from_str::<UserId>(bad).unwrap_err().to_string();
            assert!(message.contains("userId"), "{bad}: {message}");
        }
        assert_eq!(serde_json::to_string(&from_number).unwrap(), "7");
    }

    #[test]
    fn queue_ids_are_lowercase_slugs() {
        assert!(QueueId::parse("concert-7_main").is_ok());
        for bad in ["", "Main", "a b", "a}b", "a:b", &"x".repeat(49)] {
            assert!(QueueId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(QueueId::default().as_str(), "default");
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_64_characters() {
        assert!(IdempotencyKey::parse("3f1c2a9e-6a4b-4cc1-9c55-0e4e1b1d2f3a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(64)).is_ok());
        for bad in ["", "has space", "tab\t", "é", &"k".repeat(65)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_invalid_id_maps_to_a_400_naming_the_field() {
        let api: crate::ApiError = UserId::parse("x").unwrap_err().into();
        assert_eq!(api.http_status(), 400);
        assert!(api.message.starts_with("userId"));
    }
}
