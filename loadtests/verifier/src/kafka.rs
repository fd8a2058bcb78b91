//! What the Kafka topics hold: every event, read straight from the partitions (no consumer
//! group, nothing committed), so the check sees the topics as the bridge's consumers do and
//! not through their bookkeeping in MySQL or Redis.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use ticketing_core::events::Envelope;

/// Where the events travel: the brokers and the bridge's topic prefix (its namespace).
#[derive(Clone, Debug, clap::Args)]
pub struct KafkaSource {
    /// Kafka bootstrap servers.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub brokers: String,
    /// The bridge's topic prefix.
    #[arg(long = "kafka-namespace", env = "BRIDGE_NAMESPACE", default_value = "")]
    pub namespace: String,
}

/// One event id as the topics hold it: the topic (without namespace) and message key of
/// every message carrying it. More than one is a redelivery the consumers absorb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copies {
    pub placements: Vec<(String, String)>,
}

/// The events of `topics` (names without the namespace) by event id, every partition read
/// from its start to its end. A message that is not an event envelope is an error: nothing
/// but the relay writes to these topics.
pub async fn events(
    source: &KafkaSource,
    topics: &[String],
) -> anyhow::Result<HashMap<String, Copies>> {
    let source = source.clone();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut events = HashMap::new();
        for topic in &topics {
            read_topic(&source, topic, &mut events)?;
        }
        Ok(events)
    })
    .await
    .context("the Kafka reader panicked")?
}

/// How long one broker request may take, and how long the reader waits for the next message
/// or end of partition before giving up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the reader keeps listening after every partition reported its end. tansu's high
/// watermark lags its log (see [`read_topic`]), so an end reported right after a write can
/// come early; a message arriving in this window reopens its partition.
const SETTLE: Duration = Duration::from_secs(1);

/// Reads one topic until every partition reports its end and nothing more arrives for
/// [`SETTLE`]. The end is the one the fetch responses carry: tansu answers a watermark query
/// with a stale high watermark (checked: up to 8 offsets short of the last message), so
/// asking for the end up front would miss the newest events. A partition end names no
/// topic, hence one topic at a time.
fn read_topic(
    source: &KafkaSource,
    topic: &str,
    events: &mut HashMap<String, Copies>,
) -> anyhow::Result<()> {
    let name = format!("{}{topic}", source.namespace);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &source.brokers)
        .set("group.id", "ticketing-verifier")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_uncommitted")
        .create()
        .context("creating the Kafka reader")?;
    let metadata = consumer
        .fetch_metadata(Some(&name), BROKER_TIMEOUT)
        .with_context(|| format!("reading the metadata of {name}"))?;
    let mut assignment = TopicPartitionList::new();
    let mut unfinished = BTreeSet::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(&name, partition.id(), Offset::Beginning)?;
        unfinished.insert(partition.id());
    }
    consumer.assign(&assignment)?;
    let mut last_progress = Instant::now();
    while !unfinished.is_empty() || last_progress.elapsed() < SETTLE {
        let message = match consumer.poll(Duration::from_millis(200)) {
            None if last_progress.elapsed() > BROKER_TIMEOUT => {
                bail!("Kafka stopped answering; partitions of {name} unread: {unfinished:?}")
            }
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                unfinished.remove(&partition);
                last_progress = Instant::now();
                continue;
            }
            Some(other) => other.with_context(|| format!("reading {name}"))?,
        };
        last_progress = Instant::now();
        unfinished.insert(message.partition());
        let envelope =
            Envelope::from_json(message.payload().unwrap_or_default()).with_context(|| {
                format!(
                    "{name}/{} offset {} is not an event",
                    message.partition(),
                    message.offset()
                )
            })?;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let copies = events.entry(envelope.event_id.to_string()).or_default();
        copies.placements.push((topic.to_owned(), key));
    }
    Ok(())
}
