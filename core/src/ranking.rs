//! The popularity ranking: seats sold per concert, kept by the bridge in one Redis sorted
//! set per UTC day plus an all-time set, and read over a window of days. Daily sets make a
//! window a union of a few keys, and old days simply expire.

use crate::error::{DomainError, ErrorCode};
use crate::time::Timestamp;

/// How many concerts a ranking lists.
pub const TOP: usize = 10;

const MILLIS_PER_DAY: u64 = 86_400_000;

/// The period a ranking covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankingWindow {
    AllTime,
    /// The last `n` UTC days, today included.
    Days(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window must be one of all, 3d, 7d")]
pub struct RankingWindowError;

impl DomainError for RankingWindowError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidField
    }
}

impl RankingWindow {
    pub fn parse(text: &str) -> Result<Self, RankingWindowError> {
        match text {
            "all" => Ok(Self::AllTime),
            "3d" => Ok(Self::Days(3)),
            "7d" => Ok(Self::Days(7)),
            _ => Err(RankingWindowError),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AllTime => "all",
            Self::Days(3) => "3d",
            Self::Days(_) => "7d",
        }
    }

    /// The sorted sets to add up for this window at `now`, newest day first.
    pub fn keys(self, now: Timestamp) -> Vec<String> {
        match self {
            Self::AllTime => vec![ALL_TIME_KEY.to_owned()],
            Self::Days(days) => (0..u64::from(days))
                .map(|back| {
                    let day = Timestamp::from_unix_millis(
                        now.unix_millis().saturating_sub(back * MILLIS_PER_DAY),
                    );
                    daily_key(day)
                })
                .collect(),
        }
    }
}

/// The all-time set.
pub const ALL_TIME_KEY: &str = "ranking:all";

/// The set of the UTC day that contains `at`, e.g. `ranking:day:2026-11-21`.
pub fn daily_key(at: Timestamp) -> String {
    let civil = at.to_civil();
    format!(
        "ranking:day:{:04}-{:02}-{:02}",
        civil.year, civil.month, civil.day
    )
}

/// A daily set is kept a little longer than the widest window reads it.
pub const DAILY_RETENTION_DAYS: u64 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_from_their_query_names_only() {
        assert_eq!(RankingWindow::parse("all"), Ok(RankingWindow::AllTime));
        assert_eq!(RankingWindow::parse("7d"), Ok(RankingWindow::Days(7)));
        assert!(RankingWindow::parse("30d").is_err());
        assert!(RankingWindow::parse("").is_err());
        assert_eq!(RankingWindow::Days(3).as_str(), "3d");
    }

    #[test]
    fn a_three_day_window_reads_today_and_the_two_days_before() {
        let now = Timestamp::parse_rfc3339("2026-03-01T00:30:00Z").unwrap();
        assert_eq!(
            RankingWindow::Days(3).keys(now),
            [
                "ranking:day:2026-03-01",
                "ranking:day:2026-02-28",
                "ranking:day:2026-02-27"
            ]
        );
        assert_eq!(RankingWindow::AllTime.keys(now), ["ranking:all"]);
    }
}
