//! The bridge's `/metrics` (Prometheus text format), read for the three figures the
//! console shows.

use std::time::Duration;

use serde::Serialize;
use spin_sdk::http::{self, body::IncomingBodyExt};

/// One consumer partition's lag: messages in Kafka its group has not consumed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartitionLag {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) lag: u64,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct BridgeMetrics {
    pub(crate) outbox_backlog: u64,
    pub(crate) outbox_oldest_age_seconds: f64,
    pub(crate) consumer_lag: Vec<PartitionLag>,
}

/// The bridge's figures, or `None` when it does not answer in `timeout` or answers
/// something else than its metrics.
pub(crate) async fn metrics(base: &str, timeout: Duration) -> Option<BridgeMetrics> {
    let request = http::Request::builder()
        .method("GET")
        .uri(format!("{base}/metrics"))
        .body(String::new())
        .ok()?;
    let exchange = async {
        let response = http::send(request).await.ok()?;
        if response.status().as_u16() != 200 {
            return None;
        }
        let bytes = response.into_body().bytes().await.ok()?;
        parse(std::str::from_utf8(&bytes).ok()?)
    };
    http_kit::within(timeout, exchange).await
}

/// The figures in a metrics text; `None` unless it has the outbox backlog, so a wrong
/// address answering something else is not taken for an idle pipeline.
fn parse(text: &str) -> Option<BridgeMetrics> {
    let mut metrics = BridgeMetrics::default();
    let mut saw_backlog = false;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        match name {
            "bridge_outbox_backlog" => {
                metrics.outbox_backlog = value.parse::<f64>().ok()? as u64;
                saw_backlog = true;
            }
            "bridge_outbox_oldest_age_seconds" => {
                metrics.outbox_oldest_age_seconds = value.parse().ok()?;
            }
            "bridge_consumer_lag" => {
                let label = |key: &str| {
                    labels.split(',').find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
                    })
                };
                metrics.consumer_lag.push(PartitionLag {
                    group: label("group")?,
                    topic: label("topic")?,
                    partition: label("partition")?.parse().ok()?,
                    lag: value.parse::<f64>().ok()? as u64,
                });
            }
            _ => {}
        }
    }
    saw_backlog.then_some(metrics)
}
