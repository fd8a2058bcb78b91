//! `GET /api/admin/pipeline` with `Authorization: Bearer <admin key>`: the event
//! pipeline as the operator's console shows it, the outbox rows not yet in Kafka, the age
//! of the oldest, and each consumer partition's lag. The bridge measures all of it already
//! (its `/metrics`); this component reads that and answers JSON, so the console needs
//! neither the bridge's address nor a way past the browser's same-origin rule.

mod bridge;

use std::sync::OnceLock;
use std::time::Duration;

use http_kit::config::{admin_key, once, text};
use http_kit::{Reply, bearer_token, json, now};
use serde::Serialize;
use spin_sdk::http::{Method, Request, StatusCode};
use ticketing_core::ApiError;
use ticketing_core::admin::AdminKey;
use ticketing_core::time::Timestamp;

http_kit::serve!(route);

/// The bridge answers its metrics in milliseconds; a console refresh never waits long.
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Config {
    admin_key: AdminKey,
    /// Base URL of the bridge's metrics, e.g. `http://127.0.0.1:9091`.
    bridge_url: String,
}

async fn config() -> Result<&'static Config, ApiError> {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    once(&CONFIG, "operations", async {
        Ok(Config {
            admin_key: admin_key().await?,
            bridge_url: text("bridge_url").await?.trim_end_matches('/').to_owned(),
        })
    })
    .await
}

async fn route(request: Request) -> Result<Reply, ApiError> {
    match request.uri().path().trim_end_matches('/') {
        "/api/admin/pipeline" => {
            http_kit::only(&request, Method::GET)?;
            pipeline(&request).await
        }
        _ => Err(http_kit::no_route(&request)),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PipelineReply {
    outbox_backlog: u64,
    outbox_oldest_age_seconds: f64,
    consumer_lag: Vec<bridge::PartitionLag>,
    as_of: Timestamp,
}

async fn pipeline(request: &Request) -> Result<Reply, ApiError> {
    let config = config().await?;
    config.admin_key.check(bearer_token(request)?)?;
    let metrics = bridge::metrics(&config.bridge_url, BRIDGE_TIMEOUT)
        .await
        .ok_or_else(|| ApiError::unavailable("bridge"))?;
    Ok(json(
        StatusCode::OK,
        &PipelineReply {
            outbox_backlog: metrics.outbox_backlog,
            outbox_oldest_age_seconds: metrics.outbox_oldest_age_seconds,
            consumer_lag: metrics.consumer_lag,
            as_of: now(),
        },
    ))
}
