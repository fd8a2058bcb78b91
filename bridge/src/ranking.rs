//! The ranking consumer: `payment.completed` adds a payment's seats to its concert in the
//! all-time set and the set of the day it happened; `payment.refunded` takes them back.
//! The seats component reads the sets (`ticketing_core::ranking`).
//!
//! Deduplication lives in Redis beside the effect: one script marks an event counted and
//! applies it atomically, so an event is counted once however often Kafka delivers it.

use redis::Script;
use redis::aio::ConnectionManager;
use ticketing_core::events::{Envelope, Topic};
use ticketing_core::ranking::{ALL_TIME_KEY, DAILY_RETENTION_DAYS, RankingChange, counted_key};

use crate::consumer::{Effect, Tally};

/// KEYS: per event its counted mark, its day set and the all-time set (all under the
/// `{ranking}` hash tag). ARGV: retention in seconds, then per event its concert and the
/// signed seat count. Returns how many events were applied (the rest were counted before).
const APPLY: &str = r"
local retention = ARGV[1]
local applied = 0
for i = 0, #KEYS / 3 - 1 do
  if redis.call('SET', KEYS[3 * i + 1], '1', 'NX', 'EX', retention) then
    local concert, seats = ARGV[2 * i + 2], ARGV[2 * i + 3]
    redis.call('ZINCRBY', KEYS[3 * i + 2], seats, concert)
    redis.call('EXPIRE', KEYS[3 * i + 2], retention)
    redis.call('ZINCRBY', KEYS[3 * i + 3], seats, concert)
    applied = applied + 1
  end
end
return applied
";

pub(crate) struct Ranking {
    redis: ConnectionManager,
    script: Script,
}

impl Ranking {
    pub(crate) fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            script: Script::new(APPLY),
        }
    }
}

impl Effect for Ranking {
    fn name(&self) -> &'static str {
        "ranking"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::PaymentCompleted, Topic::PaymentRefunded]
    }

    async fn apply(&self, events: &[Envelope]) -> anyhow::Result<Tally> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(DAILY_RETENTION_DAYS * 86_400);
        let mut changes = 0;
        let mut rejected = 0;
        for envelope in events {
            match RankingChange::of(envelope) {
                Ok(Some(change)) => {
                    invocation
                        .key(counted_key(&envelope.event_id))
                        .key(&change.day_key)
                        .key(ALL_TIME_KEY)
                        .arg(change.concert.get())
                        .arg(change.seats);
                    changes += 1;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(event = %envelope.event_id, %error, "skipping an undecodable payment event");
                    rejected += 1;
                }
            }
        }
        let applied: usize = if changes == 0 {
            0
        } else {
            invocation.invoke_async(&mut self.redis.clone()).await?
        };
        Ok(Tally {
            applied,
            duplicates: changes - applied,
            rejected,
        })
    }
}
