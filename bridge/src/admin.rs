//! The admin listener: `/metrics` (Prometheus text) and `/health` (JSON, 503 while any loop
//! of the bridge is failing).

use std::sync::Arc;

use admin_http::Reply;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::Metrics;

pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    admin_http::serve(
        listener,
        move |path| respond(&metrics, &health, path),
        shutdown,
    )
    .await
}

fn respond(metrics: &Metrics, health: &Health, path: &str) -> Reply {
    let response = match path {
        "/metrics" => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(metrics.encode()))),
        "/health" => {
            let (healthy, body) = health.report();
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"error":"not_found","message":"try /metrics or /health"}"#,
            ))),
    };
    response.unwrap_or_default()
}
