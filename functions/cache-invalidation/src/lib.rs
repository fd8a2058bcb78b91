//! How a component that changes seats (a hold, a release, a refund) makes the read cache
//! stale. The key layout is `ticketing_core::cache`, shared with the bridge's sweeper.

use redis_kit::KeptConnection;
use spin_sdk::redis::{self, RedisParameter};
use ticketing_core::cache::{MARK_STALE_MS, schedules_key, seat_map_keys};
use ticketing_core::ids::{ConcertId, ScheduleId};

/// After a committed change to seats of `schedule` (of `concert`): its seat map is gone
/// and the concert's schedule list (with availability counts) is marked stale.
pub async fn invalidate_schedule(
    connection: &KeptConnection,
    schedule: ScheduleId,
    concert: ConcertId,
) -> Result<(), redis::Error> {
    let (map, version) = seat_map_keys(schedule);
    connection.incr(&version).await?;
    connection.del([map]).await?;
    connection
        .execute(
            "PEXPIRE",
            [
                RedisParameter::Binary(schedules_key(concert).into_bytes()),
                RedisParameter::Binary(MARK_STALE_MS.to_string().into_bytes()),
                RedisParameter::Binary(b"LT".to_vec()),
            ],
        )
        .await?;
    Ok(())
}
