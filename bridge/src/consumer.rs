//! The consumer loop the ranking and notification consumers share.
//!
//! Each is its own consumer group, so every bridge process runs a member of each and Kafka
//! spreads the partitions among them. Delivery is at least once: offsets are committed only
//! after the effect of the messages before them is applied, and the effect itself skips
//! events it has already applied (by event id), so a redelivery changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use ticketing_core::events::{Envelope, Topic};

use crate::kafka;
use crate::metrics::{ConsumedLabels, ConsumerLabels, Metrics, PartitionLabels};
use crate::shutdown::Backoff;
use crate::task::Task;

/// What applying a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) applied: usize,
    /// Events the deduplication layer had seen before.
    pub(crate) duplicates: usize,
    /// Events whose payload does not decode; logged and skipped, never retried.
    pub(crate) rejected: usize,
}

/// What a consumer does with events. `apply` must be idempotent per event id and either
/// apply the whole batch or fail (then the batch is retried, offsets uncommitted).
pub(crate) trait Effect: Send + Sync + 'static {
    /// The consumer's name: its group suffix, its processed-events key, its metric label.
    fn name(&self) -> &'static str;
    fn topics(&self) -> &'static [Topic];
    fn apply(&self, events: &[Envelope]) -> impl Future<Output = anyhow::Result<Tally>> + Send;
}

/// Publishes librdkafka's per-partition consumer lag as a gauge.
struct LagContext {
    metrics: Arc<Metrics>,
    group: String,
    namespace: String,
}

impl LagContext {
    fn labels(&self, topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels {
            group: self.group.clone(),
            topic: unprefixed(topic, &self.namespace),
            partition,
        }
    }
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (&partition, partition_stats) in &stats.partitions {
                // Partition -1 is librdkafka's internal queue; a lag of -1 means unknown yet.
                if partition >= 0 && partition_stats.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&self.labels(topic, partition))
                        .set(partition_stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    /// A revoked partition's lag is another member's to report now.
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(partitions) = rebalance {
            for element in partitions.elements() {
                self.metrics
                    .consumer_lag
                    .remove(&self.labels(element.topic(), element.partition()));
            }
        }
    }
}

/// One message, copied out of librdkafka's buffer.
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Option<Vec<u8>>,
}

pub(crate) async fn run<E: Effect>(effect: E, mut task: Task) -> anyhow::Result<()> {
    let name = effect.name();
    let group = task.config.group(name);
    let context = LagContext {
        metrics: task.metrics.clone(),
        group: group.clone(),
        namespace: task.config.namespace.clone(),
    };
    let consumer: StreamConsumer<LagContext> =
        kafka::consumer_config(&task.config, &group).create_with_context(context)?;
    let topics: Vec<String> = effect
        .topics()
        .iter()
        .map(|t| task.config.topic(*t))
        .collect();
    let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_names)?;
    let mut backoff = Backoff::new(Duration::from_secs(5));
    while let Some(batch) = next_batch(&consumer, &mut task, name, &mut backoff).await {
        let envelopes = decode(&batch, name, &task.config.namespace, &task.metrics);
        let tally = loop {
            match effect.apply(&envelopes).await {
                Ok(tally) => break tally,
                Err(error) => {
                    tracing::warn!(consumer = name, error = format!("{error:#}"), "retrying");
                    task.health.failing(name, &error);
                    // Stopping here leaves the batch uncommitted: it is redelivered.
                    if !task.shutdown.sleep(backoff.failed()).await {
                        return Ok(());
                    }
                }
            }
        };
        backoff.succeeded();
        task.health.ok(name);
        record(
            &task.metrics,
            name,
            &task.config.namespace,
            &batch,
            &envelopes,
            tally,
        );
        if let Err(error) = consumer.commit(&next_offsets(&batch)?, CommitMode::Async) {
            // The effect is applied; a lost commit only means a redelivery, which is skipped.
            tracing::warn!(consumer = name, %error, "offset commit failed");
        }
    }
    Ok(())
}

/// The next batch: one message waited for, then whatever else has already arrived, up to
/// the batch size; `None` when the bridge stops first.
async fn next_batch(
    consumer: &StreamConsumer<LagContext>,
    task: &mut Task,
    name: &'static str,
    backoff: &mut Backoff,
) -> Option<Vec<Received>> {
    let first = loop {
        let first = tokio::select! {
            message = consumer.recv() => message.map(|m| received(&m)),
            () = task.shutdown.wait() => return None,
        };
        match first {
            Ok(first) => break first,
            Err(error) => {
                let error = anyhow::Error::new(error).context("receiving from Kafka");
                tracing::warn!(consumer = name, error = format!("{error:#}"));
                task.health.failing(name, &error);
                if !task.shutdown.sleep(backoff.failed()).await {
                    return None;
                }
            }
        }
    };
    let mut batch = vec![first];
    while batch.len() < task.config.consumers.batch {
        match consumer.recv().now_or_never() {
            Some(Ok(message)) => batch.push(received(&message)),
            _ => break,
        }
    }
    Some(batch)
}

fn received(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    Received {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        payload: message.payload().map(<[u8]>::to_vec),
    }
}

fn decode(
    batch: &[Received],
    name: &'static str,
    namespace: &str,
    metrics: &Metrics,
) -> Vec<Envelope> {
    batch
        .iter()
        .filter_map(|message| {
            let decoded = message
                .payload
                .as_deref()
                .map(Envelope::from_json)
                .transpose();
            match decoded {
                Ok(Some(envelope)) => Some(envelope),
                outcome => {
                    let error = outcome.err().map(|e| e.to_string());
                    tracing::warn!(
                        consumer = name,
                        topic = message.topic,
                        partition = message.partition,
                        offset = message.offset,
                        error,
                        "skipping a message that is not an event"
                    );
                    metrics
                        .rejected
                        .get_or_create(&ConsumedLabels {
                            consumer: name,
                            topic: unprefixed(&message.topic, namespace),
                        })
                        .inc();
                    None
                }
            }
        })
        .collect()
}

fn record(
    metrics: &Metrics,
    name: &'static str,
    namespace: &str,
    batch: &[Received],
    envelopes: &[Envelope],
    tally: Tally,
) {
    let consumer = ConsumerLabels { consumer: name };
    metrics
        .duplicates_skipped
        .get_or_create(&consumer)
        .inc_by(tally.duplicates as u64);
    let now = crate::now();
    let lag = metrics.effect_lag_seconds.get_or_create(&consumer);
    for envelope in envelopes {
        lag.observe(now.since(envelope.occurred_at).as_secs_f64());
    }
    for message in batch {
        metrics
            .consumed
            .get_or_create(&ConsumedLabels {
                consumer: name,
                topic: unprefixed(&message.topic, namespace),
            })
            .inc();
    }
}

fn unprefixed(topic: &str, namespace: &str) -> String {
    topic.strip_prefix(namespace).unwrap_or(topic).to_owned()
}

/// For each partition in the batch, the offset after its last message.
fn next_offsets(batch: &[Received]) -> anyhow::Result<TopicPartitionList> {
    let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for message in batch {
        let offset = last
            .entry((message.topic.as_str(), message.partition))
            .or_insert(message.offset);
        *offset = (*offset).max(message.offset);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in last {
        offsets.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, partition: i32, offset: i64) -> Received {
        Received {
            topic: topic.to_owned(),
            partition,
            offset,
            payload: None,
        }
    }

    #[test]
    fn the_committed_offset_is_one_past_the_last_message_of_each_partition() {
        let batch = [
            message("a", 0, 7),
            message("a", 1, 3),
            message("a", 0, 9),
            message("b", 0, 1),
        ];
        let offsets = next_offsets(&batch).unwrap();
        let committed: Vec<(String, i32, Offset)> = offsets
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition(), e.offset()))
            .collect();
        assert_eq!(
            committed,
            [
                ("a".to_owned(), 0, Offset::Offset(10)),
                ("a".to_owned(), 1, Offset::Offset(4)),
                ("b".to_owned(), 0, Offset::Offset(2)),
            ]
        );
    }

    #[test]
    fn a_message_that_is_not_an_event_is_counted_and_skipped() {
        let metrics = Metrics::new();
        let mut garbage = message("t.payment.completed", 0, 1);
        garbage.payload = Some(b"{not json".to_vec());
        let envelopes = decode(
            &[garbage, message("t.payment.completed", 0, 2)],
            "ranking",
            "t.",
            &metrics,
        );
        assert!(envelopes.is_empty());
        let labels = ConsumedLabels {
            consumer: "ranking",
            topic: "payment.completed".to_owned(),
        };
        assert_eq!(metrics.rejected.get_or_create(&labels).get(), 2);
    }
}
