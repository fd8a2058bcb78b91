//! The invariants whose evidence is in Redis: the waiting rooms' order (5 of
//! docs/INVARIANTS.md), the ranking effect of every payment event (4) and the fairness of
//! every scheduled queue's draw (10).

use std::collections::{BTreeMap, BTreeSet};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use ticketing_core::draw::{Commitment, DrawSeed, check_draw};
use ticketing_core::events::EventId;
use ticketing_core::ids::UserId;
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

impl Place {
    /// The user the place was given to, whatever became of it.
    fn user(&self) -> &str {
        match self {
            Place::Waiting { user } | Place::Admitted { user } | Place::Abandoned { user } => user,
        }
    }
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

/// The meta hash of every waiting room in Redis.
async fn queue_metas(redis: &mut MultiplexedConnection) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> = redis.scan_match("{q:*}:meta").await?;
    while let Some(key) = iter.next_item().await {
        keys.push(key?);
    }
    Ok(keys)
}

/// A scheduled queue's draw as stored: `None` for a queue without an opening.
struct StoredDraw {
    opens_at: u64,
    commitment: String,
    seed: String,
    entrants: u64,
    drawn: u64,
}

async fn stored_draw(
    redis: &mut MultiplexedConnection,
    meta: &str,
) -> anyhow::Result<Option<StoredDraw>> {
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(meta)
        .arg(&["opens_at", "commitment", "seed", "entrants", "drawn"])
        .query_async(redis)
        .await?;
    let [opens_at, commitment, seed, entrants, drawn] = <[Option<String>; 5]>::try_from(fields)
        .map_err(|_| anyhow::anyhow!("{meta}: HMGET of 5 fields answered otherwise"))?;
    let count = |field: Option<String>| field.and_then(|n| n.parse().ok()).unwrap_or(0);
    let opens_at = opens_at.and_then(|millis| millis.parse::<u64>().ok());
    Ok(opens_at.map(|opens_at| StoredDraw {
        opens_at,
        commitment: commitment.unwrap_or_default(),
        seed: seed.unwrap_or_default(),
        entrants: count(entrants),
        drawn: count(drawn),
    }))
}

/// Positions of every queue are 1..=seq with no gap, one per user, and no one was admitted
/// after an earlier position that is still waiting. A scheduled queue's positions
/// 1..=entrants are the draw's: while the draw has not run they are not checked, and its
/// entrants (users not placed yet) hold no position.
pub(crate) async fn queue_order(redis: &mut MultiplexedConnection) -> anyhow::Result<Check> {
    let mut examined = 0;
    let mut violations = Vec::new();
    for meta in queue_metas(redis).await? {
        let queue = meta.trim_end_matches(":meta");
        let Some(keys) = QueueKeys::of_meta_key(&meta) else {
            violations.push(format!("{meta}: not a waiting room's key"));
            continue;
        };
        let seq: Option<u64> = redis.hget(&meta, "seq").await?;
        let seq = seq.unwrap_or(0);
        let pending_draw = match stored_draw(redis, &meta).await? {
            Some(draw) if draw.drawn < draw.entrants => draw.entrants,
            _ => 0,
        };
        let place_hashes = (0..seq.div_ceil(PLACES_PER_KEY))
            .map(|index| keys.places_of(index * PLACES_PER_KEY + 1));
        let places: BTreeMap<u64, String> = hashes(redis, place_hashes).await?;
        let users: BTreeMap<String, String> = hashes(redis, keys.all_users()).await?;
        let users: BTreeMap<String, u64> = users
            .into_iter()
            .filter_map(|(user, value)| Some((user, value.parse().ok()?)))
            .collect();
        examined += seq - pending_draw.min(seq);
        violations.extend(check_queue(queue, pending_draw, seq, &places, &users));
    }
    Ok(Check::new(
        "queue_order",
        "queue positions are unique and gap-free; no one admitted before an earlier waiter",
        examined,
        violations,
    ))
}

/// Every scheduled queue whose draw ran placed its entrants exactly as the draw orders
/// them: the seed in Redis hashes to the commitment published at creation, and the users at
/// positions 1..=entrants are the entrants sorted by `DrawSeed::order`.
pub(crate) async fn draws_fair(redis: &mut MultiplexedConnection) -> anyhow::Result<Check> {
    let mut examined = 0;
    let mut violations = Vec::new();
    for meta in queue_metas(redis).await? {
        let queue = meta.trim_end_matches(":meta");
        let (Some(keys), Some(draw)) = (
            QueueKeys::of_meta_key(&meta),
            stored_draw(redis, &meta).await?,
        ) else {
            continue;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        // Not opened, or not drawn yet: nothing is published to hold it to.
        if draw.opens_at > now_ms || draw.drawn < draw.entrants {
            continue;
        }
        let parse_users = |values: Vec<String>| -> anyhow::Result<Vec<UserId>> {
            values
                .iter()
                .map(|value| Ok(UserId::parse(value)?))
                .collect()
        };
        let entrants = parse_users(redis.lrange(keys.entrants(), 0, -1).await?)?;
        let place_hashes = (0..draw.entrants.div_ceil(PLACES_PER_KEY))
            .map(|index| keys.places_of(index * PLACES_PER_KEY + 1));
        let places: BTreeMap<u64, String> = hashes(redis, place_hashes).await?;
        let placed: Vec<String> = (1..=draw.entrants)
            .map(|position| {
                places
                    .get(&position)
                    .and_then(|value| parse_place(value))
                    .map(|place| place.user().to_owned())
                    .unwrap_or_default()
            })
            .collect();
        examined += draw.entrants;
        let checked = (|| -> anyhow::Result<()> {
            let commitment = Commitment::parse_hex(&draw.commitment)?;
            let seed = DrawSeed::parse_hex(&draw.seed)?;
            check_draw(&commitment, &seed, &entrants, &parse_users(placed)?)?;
            Ok(())
        })();
        if let Err(error) = checked {
            violations.push(format!("{queue}: {error:#}"));
        }
    }
    Ok(Check::new(
        "draws_fair",
        "each scheduled queue placed its entrants in the order its committed seed draws",
        examined,
        violations,
    ))
}

fn check_queue(
    queue: &str,
    pending_draw: u64,
    seq: u64,
    places: &BTreeMap<u64, String>,
    users: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut violations = Vec::new();
    let parsed: BTreeMap<u64, Option<Place>> =
        places.iter().map(|(p, v)| (*p, parse_place(v))).collect();
    for position in pending_draw + 1..=seq {
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
        let owner = parsed
            .get(&position)
            .and_then(|place| place.as_ref().map(Place::user));
        if owner != Some(user.as_str()) {
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
        assert!(check_queue("{q:a}", 0, 4, &places, &users).is_empty());
    }

    #[test]
    fn the_positions_of_a_draw_that_has_not_run_are_not_missing() {
        let places = places(&[(3, "W:10:150:140")]);
        let users = users(&[("10", 3)]);
        assert!(check_queue("{q:a}", 2, 3, &places, &users).is_empty());
        let found = check_queue("{q:a}", 0, 3, &places, &users);
        assert!(
            found.iter().any(|v| v.contains("position 1 missing")),
            "{found:?}"
        );
    }

    #[test]
    fn a_gap_a_jump_ahead_and_a_shared_place_are_each_reported() {
        let places = places(&[
            (1, "W:7:100:90"),
            (2, "A:8:100:700:90"),
            (4, "W:10:150:140"),
        ]);
        let users = users(&[("7", 1), ("8", 2), ("10", 2)]);
        let found = check_queue("{q:a}", 0, 4, &places, &users);
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
