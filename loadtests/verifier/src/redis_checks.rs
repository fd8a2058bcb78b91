//! The invariants whose evidence is in Redis: the waiting rooms' order (5 of
//! docs/INVARIANTS.md) and the ranking effect of every payment event (4).

use std::collections::{BTreeMap, BTreeSet};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use ticketing_core::events::EventId;
use ticketing_core::ranking::counted_key;
use waiting_room_script::{PLACES_PER_KEY, QueueKeys};

use crate::Check;

/// Every delivered payment event has its counted mark, which the bridge sets in the same
/// script as the ranking change (so at least once, and the mark makes it at most once).
pub(crate) async fn ranking_applied(
    redis: &mut MultiplexedConnection,
    event_ids: &[String],
) -> anyhow::Result<Check> {
    let mut missing = Vec::new();
    for chunk in event_ids.chunks(1_000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.exists(counted_key(&EventId::parse(id)?));
        }
        let found: Vec<bool> = pipe.query_async(redis).await?;
        missing.extend(
            chunk
                .iter()
                .zip(found)
                .filter(|(_, found)| !found)
                .map(|(id, _)| format!("event {id} did not reach the ranking")),
        );
    }
    Ok(Check::new(
        "ranking_applied",
        "each delivered payment event moved the ranking, once",
        event_ids.len() as u64,
        missing,
    ))
}

/// A place in a waiting room, as `waiting_room.lua` stores it.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Waiting {
        user: String,
    },
    /// Admitted: holds a pass, or held one (expired or consumed by a payment).
    Admitted {
        user: String,
    },
    Abandoned {
        user: String,
    },
}

fn parse_place(value: &str) -> Option<Place> {
    let mut fields = value.split(':');
    let (state, user, rest) = (fields.next()?, fields.next()?.to_owned(), fields.next()?);
    match state {
        "W" => Some(Place::Waiting { user }),
        "A" => Some(Place::Admitted { user }),
        "X" if rest == "ABANDONED" => Some(Place::Abandoned { user }),
        "X" => Some(Place::Admitted { user }),
        _ => None,
    }
}

/// Every field of each of `keys`, merged: the waiting rooms keep places and users in many
/// small hashes (`waiting_room_script::QueueKeys`), read here a pipelined batch at a time.
async fn hashes<K, V>(
    redis: &mut MultiplexedConnection,
    keys: impl Iterator<Item = String>,
) -> anyhow::Result<BTreeMap<K, V>>
where
    K: redis::FromRedisValue + Ord,
    V: redis::FromRedisValue,
{
    let keys: Vec<String> = keys.collect();
    let mut entries = BTreeMap::new();
    for batch in keys.chunks(16) {
        let mut pipe = redis::pipe();
        for key in batch {
            pipe.hgetall(key);
        }
        let replies: Vec<Vec<(K, V)>> = pipe.query_async(redis).await?;
        entries.extend(replies.into_iter().flatten());
    }
    Ok(entries)
}

/// Positions of every queue are 1..=seq with no gap, one per user, and no one was admitted
/// after an earlier position that is still waiting.
pub(crate) async fn queue_order(redis: &mut MultiplexedConnection) -> anyhow::Result<Check> {
    let metas: Vec<String> = {
        let mut keys = Vec::new();
        let mut iter: redis::AsyncIter<'_, String> = redis.scan_match("{q:*}:meta").await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        keys
    };
    let mut examined = 0;
    let mut violations = Vec::new();
    for meta in metas {
        let queue = meta.trim_end_matches(":meta");
        let Some(keys) = QueueKeys::of_meta_key(&meta) else {
            violations.push(format!("{meta}: not a waiting room's key"));
            continue;
        };
        let seq: Option<u64> = redis.hget(&meta, "seq").await?;
        let seq = seq.unwrap_or(0);
        let place_hashes = (0..seq.div_ceil(PLACES_PER_KEY))
            .map(|index| keys.places_of(index * PLACES_PER_KEY + 1));
        let places: BTreeMap<u64, String> = hashes(redis, place_hashes).await?;
        let users: BTreeMap<String, u64> = hashes(redis, keys.all_users()).await?;
        examined += seq;
        violations.extend(check_queue(queue, seq, &places, &users));
    }
    Ok(Check::new(
        "queue_order",
        "queue positions are unique and gap-free; no one admitted before an earlier waiter",
        examined,
        violations,
    ))
}

fn check_queue(
    queue: &str,
    seq: u64,
    places: &BTreeMap<u64, String>,
    users: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut violations = Vec::new();
    let parsed: BTreeMap<u64, Option<Place>> =
        places.iter().map(|(p, v)| (*p, parse_place(v))).collect();
    for position in 1..=seq {
        match parsed.get(&position) {
            None => violations.push(format!("{queue}: position {position} missing")),
            Some(None) => violations.push(format!("{queue}: position {position} unreadable")),
            Some(Some(_)) => {}
        }
    }
    if let Some(extra) = parsed.keys().find(|p| **p == 0 || **p > seq) {
        violations.push(format!(
            "{queue}: position {extra} beyond the sequence {seq}"
        ));
    }
    let first_waiting = parsed
        .iter()
        .find(|(_, place)| matches!(place, Some(Place::Waiting { .. })))
        .map(|(p, _)| *p);
    if let Some(first_waiting) = first_waiting {
        for (position, place) in parsed.range(first_waiting..) {
            if let Some(Place::Admitted { user }) = place {
                violations.push(format!(
                    "{queue}: user {user} at {position} admitted while {first_waiting} waits"
                ));
            }
        }
    }
    // Each user's current place names that user, and no two users share a place.
    let mut taken = BTreeSet::new();
    for (user, &position) in users {
        if !taken.insert(position) {
            violations.push(format!("{queue}: position {position} given to two users"));
        }
        let owner = match parsed.get(&position) {
            Some(Some(
                Place::Waiting { user } | Place::Admitted { user } | Place::Abandoned { user },
            )) => Some(user),
            _ => None,
        };
        if owner != Some(user) {
            violations.push(format!(
                "{queue}: user {user} points at position {position} of {owner:?}"
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(entries: &[(u64, &str)]) -> BTreeMap<u64, String> {
        entries.iter().map(|(p, v)| (*p, (*v).to_owned())).collect()
    }

    fn users(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
        entries.iter().map(|(u, p)| ((*u).to_owned(), *p)).collect()
    }

    #[test]
    fn a_queue_admitted_in_order_is_clean() {
        let places = places(&[
            (1, "X:7:CONSUMED"),
            (2, "A:8:100:700:90"),
            (3, "X:9:ABANDONED"),
            (4, "W:10:150:140"),
        ]);
        let users = users(&[("8", 2), ("10", 4)]);
        assert!(check_queue("{q:a}", 4, &places, &users).is_empty());
    }

    #[test]
    fn a_gap_a_jump_ahead_and_a_shared_place_are_each_reported() {
        let places = places(&[
            (1, "W:7:100:90"),
            (2, "A:8:100:700:90"),
            (4, "W:10:150:140"),
        ]);
        let users = users(&[("7", 1), ("8", 2), ("10", 2)]);
        let found = check_queue("{q:a}", 4, &places, &users);
        assert!(
            found.iter().any(|v| v.contains("position 3 missing")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|v| v.contains("admitted while 1 waits")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|v| v.contains("given to two users")),
            "{found:?}"
        );
    }
}
