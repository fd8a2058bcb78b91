//! Kafka clients as the bridge configures them, and the topics it needs.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;
use ticketing_core::events::Topic;

use crate::config::Config;

/// The idempotent producer: `acks=all`, and retries inside librdkafka that neither
/// duplicate nor reorder messages of a partition. A message it cannot deliver within the
/// delivery timeout is reported failed and the relay tries it again in a later batch.
pub(crate) fn producer(config: &Config) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "ticketing-bridge-relay")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            millis(config.relay.delivery_timeout).to_string(),
        )
        .create()
        .context("creating the Kafka producer")
}

/// A consumer-group member that commits offsets itself, only after the effect is applied,
/// and reports statistics (consumer lag) every second.
pub(crate) fn consumer_config(config: &Config, group: &str) -> ClientConfig {
    let session = millis(config.consumers.session_timeout);
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("ticketing-bridge-{group}"))
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
        // A broker that does not answer a waiting fetch as soon as data arrives (tansu)
        // answers at this bound, so it bounds the lag an idle partition adds.
        .set("fetch.wait.max.ms", "50")
        .set("statistics.interval.ms", "1000");
    client
}

/// Creates the event topics that do not exist yet.
pub(crate) async fn ensure_topics(config: &Config) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let names: Vec<String> = Topic::ALL.iter().map(|t| config.topic(*t)).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .context("creating the event topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

fn millis(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}
