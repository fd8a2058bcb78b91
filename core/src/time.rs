//! Time as the domain sees it: a UTC instant in milliseconds, handed in by the adapter.
//!
//! The core never reads a clock, so every rule that depends on time is a pure function of
//! the `now` it is given and tests can walk time forward at will.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant, milliseconds since the Unix epoch. Serialized as RFC 3339
/// (`2026-11-21T12:00:00.000Z`), the form used in API bodies and event envelopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// A calendar breakdown of a [`Timestamp`] in UTC, for formats such as SQL `DATETIME(3)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected UTC RFC 3339 such as 2026-11-21T12:00:00.000Z")]
pub struct TimestampError {
    input: String,
}

const MILLIS_PER_DAY: u64 = 86_400_000;
/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const EPOCH_DAY_OFFSET: u64 = 719_468;
const DAYS_PER_ERA: u64 = 146_097;

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_millis(millis: u64) -> Self {
        Self(millis)
    }

    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// The instant of a wall-clock reading (adapters read the clock; the core never does).
    /// A reading before 1970 cannot happen on a running machine and saturates to the epoch.
    pub fn from_system_time(at: SystemTime) -> Self {
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(duration)))
    }

    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration_millis(duration)))
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future (clocks of different
    /// machines disagree a little; a negative interval must not wrap).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    pub fn to_civil(self) -> CivilTime {
        let days = self.0 / MILLIS_PER_DAY;
        let millis_of_day = self.0 % MILLIS_PER_DAY;
        let (year, month, day) = civil_from_days(days);
        // The casts below are of values bounded by a day's length.
        let ms = millis_of_day as u32;
        CivilTime {
            year,
            month,
            day,
            hour: ms / 3_600_000,
            minute: ms / 60_000 % 60,
            second: ms / 1000 % 60,
            millisecond: ms % 1000,
        }
    }

    /// The instant of a calendar time, or `None` for an impossible date or one before 1970.
    pub fn from_civil(civil: CivilTime) -> Option<Self> {
        let CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millisecond,
        } = civil;
        let valid = (1970..=9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60
            && millisecond < 1000;
        if !valid {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let millis_of_day = u64::from(((hour * 60 + minute) * 60 + second) * 1000 + millisecond);
        Some(Self(days * MILLIS_PER_DAY + millis_of_day))
    }

    /// `2026-11-21T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let c = self.to_civil();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.millisecond
        )
    }

    /// The SQL `DATETIME(3)` literal of this instant in UTC: `2026-11-21 12:00:00.000`. The
    /// schema stores UTC without a zone, so reads and writes never depend on a session's
    /// time zone.
    pub fn to_sql_datetime(self) -> String {
        let mut text = self.to_rfc3339();
        text.pop();
        text.replace('T', " ")
    }

    /// Parses a SQL `DATETIME` literal in UTC, with or without a fraction
    /// (`2026-11-21 12:00:00.000000`).
    pub fn parse_sql_datetime(input: &str) -> Result<Self, TimestampError> {
        Self::parse_rfc3339(&format!("{}Z", input.replacen(' ', "T", 1)))
    }

    /// Parses UTC RFC 3339 with a `Z` suffix and an optional fraction of 1 to 9 digits
    /// (truncated to milliseconds).
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimestampError> {
        parse_rfc3339_parts(input)
            .and_then(Self::from_civil)
            .ok_or_else(|| TimestampError {
                input: input.chars().take(64).collect(),
            })
    }
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn parse_rfc3339_parts(input: &str) -> Option<CivilTime> {
    let bytes = input.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let separators_ok = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes.last() == Some(&b'Z');
    if !separators_ok {
        return None;
    }
    let fraction = &bytes[19..bytes.len() - 1];
    let millisecond = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut padded = [b'0'; 3];
            for (slot, digit) in padded.iter_mut().zip(digits) {
                *slot = *digit;
            }
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            padded
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
        }
        _ => return None,
    };
    Some(CivilTime {
        year: number(0..4)?,
        month: number(5..7)?,
        day: number(8..10)?,
        hour: number(11..13)?,
        minute: number(14..16)?,
        second: number(17..19)?,
        millisecond,
    })
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-to-civil algorithm, restricted to dates on or after the epoch.
fn civil_from_days(days_since_epoch: u64) -> (u32, u32, u32) {
    let z = days_since_epoch + EPOCH_DAY_OFFSET;
    let era = z / DAYS_PER_ERA;
    let day_of_era = z % DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    // Bounded: years fit in u32 for any u64 millisecond timestamp.
    (year as u32, month as u32, day as u32)
}

fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let year = u64::from(year) - u64::from(month <= 2);
    let era = year / 400;
    let year_of_era = year % 400;
    let shifted_month = u64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5 + u64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_DAY_OFFSET
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_epoch_formats_as_rfc3339() {
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_known_instant_formats_with_milliseconds() {
        // 2026-11-21T12:34:56.789Z, computed independently.
        let t = Timestamp::from_unix_millis(1_795_264_496_789);
        assert_eq!(t.to_rfc3339(), "2026-11-21T12:34:56.789Z");
    }

    #[test]
    fn a_leap_day_is_a_valid_date() {
        let t = Timestamp::parse_rfc3339("2028-02-29T00:00:00Z").unwrap();
        assert_eq!(t.to_civil().day, 29);
        assert!(Timestamp::parse_rfc3339("2027-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn parsing_truncates_fractions_to_milliseconds() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:00:00.123999Z").unwrap();
        assert_eq!(t.unix_millis() % 1000, 123);
        let t = Timestamp::parse_rfc3339("2026-01-01T00:00:00.5Z").unwrap();
        assert_eq!(t.unix_millis() % 1000, 500);
    }

    #[test]
    fn sql_datetimes_round_trip_in_utc() {
        let at = Timestamp::parse_rfc3339("2026-11-21T12:34:56.789Z").unwrap();
        assert_eq!(at.to_sql_datetime(), "2026-11-21 12:34:56.789");
        assert_eq!(
            Timestamp::parse_sql_datetime("2026-11-21 12:34:56.789000"),
            Ok(at)
        );
        assert_eq!(
            Timestamp::parse_sql_datetime("2026-11-21 12:34:56").map(Timestamp::unix_millis),
            Ok(at.unix_millis() - 789)
        );
        assert!(Timestamp::parse_sql_datetime("yesterday").is_err());
    }

    #[test]
    fn malformed_timestamps_are_rejected() {
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+09:00",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "2026-01-01T00:00:00.1a3Z",
            "1969-12-31T23:59:59Z",
            "２026-01-01T00:00:00Z",
        ] {
            assert!(
                Timestamp::parse_rfc3339(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn time_since_a_future_instant_is_zero_not_a_wrap() {
        let earlier = Timestamp::from_unix_millis(1000);
        assert_eq!(
            earlier.since(Timestamp::from_unix_millis(5000)),
            Duration::ZERO
        );
    }

    #[test]
    fn timestamps_serialize_as_rfc3339_strings() {
        let t = Timestamp::from_unix_millis(1_000);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""1970-01-01T00:00:01.000Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_back_the_instant(millis in 0u64..253_402_300_799_999) {
            let t = Timestamp::from_unix_millis(millis);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
            prop_assert_eq!(Timestamp::from_civil(t.to_civil()), Some(t));
        }
    }

    #[test]
    fn a_system_time_converts_to_its_millisecond() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_264_496_789_999);
        assert_eq!(
            Timestamp::from_system_time(at),
            Timestamp::from_unix_millis(1_795_264_496_789)
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(Timestamp::from_system_time(before), Timestamp::UNIX_EPOCH);
    }
}
