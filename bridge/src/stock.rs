//! The stock counter: about once a second it counts, in MySQL, the seats open to a hold of
//! every concert a queue sells, less those its waitlist's fans have first claim on, and
//! hands each count to those queues' waiting rooms (`core::sale::Stock`,
//! `core::waitlist::open_to_queue`). A concert counted at zero stops its queues' admission and tells
//! their waiting fans it is sold out; a seat that comes back (a release, a lapsed hold, a
//! refund) opens it again at the next count. Counting the truth each time makes the signal
//! indifferent to missed or repeated events, and several bridges counting at once harmless:
//! a queue keeps only the newest count.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;
use ticketing_core::ids::{ConcertId, QueueId};
use ticketing_core::sale::{SOLD_CONCERTS_KEY, Stock, selling_queues_key};
use ticketing_core::time::Timestamp;
use waiting_room_script::{SCRIPT, ScriptCall};

use crate::store::Store;
use crate::task::Task;

pub(crate) async fn run(store: Store, redis: ConnectionManager, task: Task) {
    let script = redis::Script::new(SCRIPT);
    task.repeat("stock", Stock::COUNT_EVERY, || {
        count(&store, &redis, &script)
    })
    .await;
}

/// One count of every concert some queue sells, handed to each of those queues. A concert
/// no queue sells any more is not counted.
async fn count(
    store: &Store,
    redis: &ConnectionManager,
    script: &redis::Script,
) -> anyhow::Result<()> {
    let mut redis = redis.clone();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(SOLD_CONCERTS_KEY)
        .query_async(&mut redis)
        .await?;
    let mut selling = BTreeMap::new();
    for concert in members.iter().filter_map(|m| ConcertId::parse(m).ok()) {
        let queues: Vec<String> = redis::cmd("SMEMBERS")
            .arg(selling_queues_key(concert))
            .query_async(&mut redis)
            .await?;
        if !queues.is_empty() {
            selling.insert(concert, queues);
        }
    }
    let concerts: Vec<ConcertId> = selling.keys().copied().collect();
    let now = crate::now();
    for (concert, open) in store.open_to_queues(&concerts, now).await? {
        for queue in &selling[&concert] {
            if !hand_over(&mut redis, script, queue, concert, open.holdable, now).await? {
                let _: () = redis::cmd("SREM")
                    .arg(selling_queues_key(concert))
                    .arg(queue)
                    .query_async(&mut redis)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Gives `queue` the count; false when the queue is gone or sells another concert now, so
/// it leaves the concert's set. A queue that sells nothing yet stays: an operator is making
/// it sell this concert, and its script call follows the set's.
async fn hand_over(
    redis: &mut ConnectionManager,
    script: &redis::Script,
    queue: &str,
    concert: ConcertId,
    holdable: u64,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let Ok(queue) = QueueId::parse(queue) else {
        return Ok(false);
    };
    let call = ScriptCall::new(&queue, "stock", now)
        .arg(concert)
        .arg(holdable)
        .arg(now.unix_millis());
    let mut invocation = script.prepare_invoke();
    for key in &call.keys {
        invocation.key(key);
    }
    for arg in &call.args {
        invocation.arg(arg);
    }
    let reply: Vec<redis::Value> = invocation.invoke_async(redis).await?;
    let text = |index: usize| match reply.get(index) {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    };
    Ok(match text(0).as_str() {
        "UNKNOWN_QUEUE" => false,
        "NOT_SELLING" => text(1).is_empty(),
        _ => true,
    })
}
