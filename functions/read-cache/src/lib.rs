//! Where the seats component caches catalog reads in Redis, and how a writer that changes
//! seats (a hold, a release, a refund) makes them stale. Seat maps are versioned per
//! schedule: the writer bumps the version after its commit, and a reader only stores a map
//! read under the version that is still current.

use spin_sdk::redis;
use ticketing_core::ids::{ConcertId, ScheduleId};

pub fn concerts_key() -> String {
    "catalog:concerts".to_owned()
}

pub fn concert_key(concert: ConcertId) -> String {
    format!("catalog:concert:{concert}")
}

pub fn schedules_key(concert: ConcertId) -> String {
    format!("catalog:concert:{concert}:schedules")
}

/// A schedule's seat map and its version; they share a hash tag, so one slot on Redis
/// Cluster.
pub fn seat_map_keys(schedule: ScheduleId) -> (String, String) {
    (
        format!("{{sch:{schedule}}}:seats"),
        format!("{{sch:{schedule}}}:version"),
    )
}

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
