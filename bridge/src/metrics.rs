//! Prometheus metrics of the bridge, served at `/metrics` on its admin listener.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabels {
    pub(crate) topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConsumedLabels {
    pub(crate) consumer: &'static str,
    pub(crate) topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConsumerLabels {
    pub(crate) consumer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartitionLabels {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

/// Every metric of one bridge process.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) outbox_backlog: Gauge,
    pub(crate) outbox_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub(crate) outbox_purged: Counter,
    pub(crate) produced: Family<TopicLabels, Counter>,
    pub(crate) produce_failed: Family<TopicLabels, Counter>,
    pub(crate) produce_retried: Family<TopicLabels, Counter>,
    pub(crate) relay_batch_seconds: Histogram,
    pub(crate) consumed: Family<ConsumedLabels, Counter>,
    pub(crate) duplicates_skipped: Family<ConsumerLabels, Counter>,
    pub(crate) rejected: Family<ConsumedLabels, Counter>,
    pub(crate) effect_lag_seconds: Family<ConsumerLabels, Histogram>,
    pub(crate) consumer_lag: Family<PartitionLabels, Gauge>,
    pub(crate) holds_expired: Counter,
    pub(crate) seats_released: Counter,
    pub(crate) waitlist_offers: Counter,
    pub(crate) waitlist_passed_over: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("bridge"),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            outbox_purged: Counter::default(),
            produced: Family::default(),
            produce_failed: Family::default(),
            produce_retried: Family::default(),
            relay_batch_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            consumed: Family::default(),
            duplicates_skipped: Family::default(),
            rejected: Family::default(),
            // From 1 ms to ~9 min: normal lag is milliseconds, an outage's is minutes.
            effect_lag_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 20))
            }),
            consumer_lag: Family::default(),
            holds_expired: Counter::default(),
            seats_released: Counter::default(),
            waitlist_offers: Counter::default(),
            waitlist_passed_over: Counter::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet delivered to Kafka",
            metrics.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered outbox row",
            metrics.outbox_oldest_age_seconds.clone(),
        );
        registry.register(
            "outbox_purged",
            "Delivered outbox rows deleted after the retention period",
            metrics.outbox_purged.clone(),
        );
        registry.register(
            "produced",
            "Outbox rows delivered to Kafka (acknowledged by all in-sync replicas)",
            metrics.produced.clone(),
        );
        registry.register(
            "produce_failed",
            "Deliveries that failed; the row stays in the outbox and is retried",
            metrics.produce_failed.clone(),
        );
        registry.register(
            "produce_retried",
            "Deliveries of rows that had failed before",
            metrics.produce_retried.clone(),
        );
        registry.register(
            "relay_batch_seconds",
            "Time to claim, deliver and mark one outbox batch",
            metrics.relay_batch_seconds.clone(),
        );
        registry.register(
            "consumed",
            "Events whose effect was applied (or found already applied)",
            metrics.consumed.clone(),
        );
        registry.register(
            "duplicates_skipped",
            "Redelivered events the deduplication layer skipped",
            metrics.duplicates_skipped.clone(),
        );
        registry.register(
            "rejected",
            "Messages that are not a valid event; logged and skipped",
            metrics.rejected.clone(),
        );
        registry.register(
            "effect_lag_seconds",
            "From the commit that wrote an event to its effect downstream",
            metrics.effect_lag_seconds.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages behind the partition's end, per consumer group and partition",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "holds_expired",
            "Lapsed holds the sweeper ended",
            metrics.holds_expired.clone(),
        );
        registry.register(
            "seats_released",
            "Seats the sweeper put back on sale",
            metrics.seats_released.clone(),
        );
        registry.register(
            "waitlist_offers",
            "Seats offered to fans on a waitlist",
            metrics.waitlist_offers.clone(),
        );
        registry.register(
            "waitlist_passed_over",
            "Waitlisted fans passed over because they owned the concert's cap of seats",
            metrics.waitlist_passed_over.clone(),
        );
        metrics
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
