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

/// A concert's schedule list, with availability counts. A writer does not delete it but
/// marks it stale ([`MARK_STALE_MS`]): during a sale every hold changes a count, and a
/// deleted list sends each of its readers to wait for MySQL, where a stale one is served
/// at once while one reader rebuilds it. The seat map, not this count, decides a hold.
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

/// A schedule's seats as they never change (number, label, price), cached apart from its
/// map so that a map's rebuild reads only which seats are free. Same hash tag as the map.
pub fn seat_layout_key(schedule: ScheduleId) -> String {
    format!("{{sch:{schedule}}}:layout")
}

/// The lease a reader takes to rebuild `key` after a miss, so a burst of readers of a cold
/// key costs one database read instead of one each. It extends the key's name, so it keeps
/// the key's hash tag and slot.
pub fn rebuild_lease_key(key: &str) -> String {
    format!("{key}:rebuild")
}

/// How long a cached body outlives its time to live. In that grace a reader that finds
/// the rebuild already taken answers with the stale body at once instead of waiting for it,
/// so a popular key's expiry never queues its readers; staleness past the time to live is
/// bounded by one rebuild. A writer's invalidation deletes the body: it is never served.
pub const STALE_GRACE_MS: u64 = 10_000;

/// The expiry a writer sets on a body it makes stale (`PEXPIRE key MARK_STALE_MS LT`): the
/// body is left with only the grace, so the next reader rebuilds it and the rest are
/// served the stale body meanwhile.
pub const MARK_STALE_MS: u64 = STALE_GRACE_MS;

/// The expiry to store a body under when it is fresh for `ttl_ms`.
pub fn stored_ttl_ms(ttl_ms: u64) -> u64 {
    ttl_ms + STALE_GRACE_MS
}

/// Whether a cached body is within its time to live or only within the grace after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Stale,
}

impl Freshness {
    /// From what Redis' `PTTL` answers for a body's key: the milliseconds it has left, or
    /// -1 when it never expires (a body stored by hand: fresh).
    pub fn of_remaining_ms(remaining_ms: i64) -> Self {
        match u64::try_from(remaining_ms) {
            Ok(left) if left <= STALE_GRACE_MS => Self::Stale,
            _ => Self::Fresh,
        }
    }
}

/// How long a reader of a missing key, whose rebuild another reader holds, sleeps between
/// looks at the cache: short at first (a rebuild takes milliseconds), then backing off so a
/// crowd of waiters costs few Redis commands. After the last sleep (0.95 s in all) it reads
/// the database itself, as the rebuilder may be slow or gone.
pub const REBUILD_POLL_MS: [u64; 9] = [10, 20, 40, 80, 160, 160, 160, 160, 160];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_map_and_its_version_share_a_hash_tag() {
        let (map, version) = seat_map_keys(ScheduleId::new(101).unwrap());
        assert_eq!(map, "{sch:101}:seats");
        assert_eq!(version, "{sch:101}:version");
        assert_eq!(
            seat_layout_key(ScheduleId::new(101).unwrap()),
            "{sch:101}:layout"
        );
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

    #[test]
    fn a_body_is_fresh_until_only_the_grace_is_left_of_its_expiry() {
        let stored = stored_ttl_ms(10_000) as i64;
        assert_eq!(Freshness::of_remaining_ms(stored), Freshness::Fresh);
        assert_eq!(
            Freshness::of_remaining_ms(STALE_GRACE_MS as i64 + 1),
            Freshness::Fresh
        );
        assert_eq!(
            Freshness::of_remaining_ms(STALE_GRACE_MS as i64),
            Freshness::Stale
        );
        assert_eq!(Freshness::of_remaining_ms(0), Freshness::Stale);
    }

    #[test]
    fn a_body_a_writer_marked_stale_is_rebuilt_by_its_next_reader() {
        assert_eq!(
            Freshness::of_remaining_ms(MARK_STALE_MS as i64),
            Freshness::Stale
        );
    }

    #[test]
    fn a_body_that_never_expires_is_fresh() {
        assert_eq!(Freshness::of_remaining_ms(-1), Freshness::Fresh);
    }

    #[test]
    fn a_waiter_gives_up_on_another_readers_rebuild_within_a_second() {
        let waited: u64 = REBUILD_POLL_MS.iter().sum();
        assert!((900..1_000).contains(&waited), "waits {waited} ms");
        assert!(REBUILD_POLL_MS.windows(2).all(|pair| pair[0] <= pair[1]));
    }
}
