//! Where catalog reads are cached in Redis. Every writer that changes seats (a hold, a
//! release, a payment, a refund, the bridge's hold-expiry sweeper) must make the same keys
//! stale, so the layout lives here, once, for the components and the bridge alike.
//!
//! Seat maps are versioned per schedule: a writer bumps the version after its commit and
//! deletes the map, and a reader only stores a map read under the version still current.

use crate::ids::{ConcertId, ScheduleId};

pub fn concerts_key() -> String {
    "catalog:concerts".to_owned()
}

pub fn concert_key(concert: ConcertId) -> String {
    format!("catalog:concert:{concert}")
}

/// A concert's schedule list, with availability counts.
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

/// The lease a reader takes to rebuild `key` after a miss, so a burst of readers of a cold
/// key costs one database read instead of one each. It extends the key's name, so it keeps
/// the key's hash tag and slot.
pub fn rebuild_lease_key(key: &str) -> String {
    format!("{key}:rebuild")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_map_and_its_version_share_a_hash_tag() {
        let (map, version) = seat_map_keys(ScheduleId::new(101).unwrap());
        assert_eq!(map, "{sch:101}:seats");
        assert_eq!(version, "{sch:101}:version");
        assert_eq!(
            schedules_key(ConcertId::new(7).unwrap()),
            "catalog:concert:7:schedules"
        );
    }

    #[test]
    fn a_rebuild_lease_stays_in_the_slot_of_its_key() {
        let (map, _) = seat_map_keys(ScheduleId::new(101).unwrap());
        assert_eq!(rebuild_lease_key(&map), "{sch:101}:seats:rebuild");
    }
}
