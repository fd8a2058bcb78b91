//! What a bridge process needs to know; `main` fills it from flags and environment.

use std::time::Duration;

use ticketing_core::events::Topic;
use ticketing_core::waitlist::OfferPolicy;

#[derive(Clone, Debug)]
pub struct Config {
    pub mysql_url: String,
    pub redis_url: String,
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Prefixed to every topic and consumer group name, so separate deployments (or test
    /// runs) can share one broker without seeing each other's events.
    pub namespace: String,
    /// Partitions of a topic the bridge creates (existing topics are left as they are).
    pub partitions: i32,
    /// Replication factor of a topic the bridge creates.
    pub replication: i32,
    pub relay: RelayConfig,
    pub consumers: ConsumerConfig,
    pub sweeper: SweeperConfig,
    pub waitlist: WaitlistConfig,
}

#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Outbox rows claimed and produced together.
    pub batch: usize,
    /// Pause before the next scan once the relay has caught up (the outbox was empty or
    /// gave less than a full batch), so rows gather into batches instead of trickling.
    pub idle_poll: Duration,
    /// How long the producer keeps trying to deliver one message before it reports a
    /// failure; the row then stays unsent and a later batch retries it.
    pub delivery_timeout: Duration,
    /// Longest pause between retries after failures (the pause doubles from 100 ms).
    pub max_backoff: Duration,
    /// Delivered rows are deleted after this long; zero keeps them forever.
    pub retention: Duration,
}

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Most messages applied in one effect (one transaction or one script call).
    pub batch: usize,
    /// A consumer that stops heartbeating for this long loses its partitions to the
    /// others in its group.
    pub session_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct SweeperConfig {
    /// Time between sweeps for lapsed holds.
    pub interval: Duration,
    /// Holds ended per transaction.
    pub batch: usize,
}

#[derive(Clone, Debug)]
pub struct WaitlistConfig {
    /// How long an offered seat waits for its fan's payment.
    pub offer: OfferPolicy,
    /// Waiting fans one round (one transaction) considers per concert.
    pub batch: usize,
}

impl Config {
    /// Local defaults matching `infra/local` (the ports `make up` uses).
    pub fn local(mysql_url: &str, redis_url: &str, brokers: &str) -> Self {
        Self {
            mysql_url: mysql_url.to_owned(),
            redis_url: redis_url.to_owned(),
            brokers: brokers.to_owned(),
            namespace: String::new(),
            partitions: 3,
            replication: 1,
            relay: RelayConfig {
                batch: 500,
                idle_poll: Duration::from_millis(20),
                delivery_timeout: Duration::from_secs(5),
                max_backoff: Duration::from_secs(5),
                retention: Duration::from_secs(24 * 3600),
            },
            consumers: ConsumerConfig {
                batch: 500,
                session_timeout: Duration::from_secs(6),
            },
            sweeper: SweeperConfig {
                interval: Duration::from_secs(1),
                batch: 200,
            },
            waitlist: WaitlistConfig {
                offer: OfferPolicy::default(),
                batch: 200,
            },
        }
    }

    /// The Kafka topic an event type travels on.
    pub fn topic(&self, topic: Topic) -> String {
        self.topic_named(topic.name())
    }

    /// The Kafka topic for an outbox row's topic column.
    pub fn topic_named(&self, name: &str) -> String {
        format!("{}{name}", self.namespace)
    }

    /// The consumer group of one of the bridge's consumers.
    pub fn group(&self, consumer: &str) -> String {
        format!("{}ticketing-{consumer}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_prefixes_topics_and_groups() {
        let mut config = Config::local("mysql://x", "redis://x", "b:1");
        assert_eq!(config.topic(Topic::PaymentCompleted), "payment.completed");
        assert_eq!(config.group("ranking"), "ticketing-ranking");
        config.namespace = "t42.".to_owned();
        assert_eq!(
            config.topic(Topic::PaymentCompleted),
            "t42.payment.completed"
        );
        assert_eq!(config.group("ranking"), "t42.ticketing-ranking");
    }
}
