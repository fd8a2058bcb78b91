//! How a component that changes seats (a hold, a release, a refund) makes the read cache
//! stale. The key layout is `ticketing_core::cache`, shared with the bridge's sweeper.

use spin_sdk::redis;
use ticketing_core::cache::{schedules_key, seat_map_keys};
use ticketing_core::ids::{ConcertId, ScheduleId};

/// After a committed change to seats of `schedule` (of `concert`): its seat map and the
/// concert's schedule list (with availability counts) are stale.
pub async fn invalidate_schedule(
    connection: &redis::Connection,
    schedule: ScheduleId,
    concert: ConcertId,
) -> Result<(), redis::Error> {
    let (map, version) = seat_map_keys(schedule);
    connection.incr(&version).await?;
    connection.del([map, schedules_key(concert)]).await?;
    Ok(())
}
