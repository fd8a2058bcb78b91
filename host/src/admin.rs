//! The admin listener: `/metrics` (Prometheus text) and `/health`, kept off the public port.

use std::sync::Arc;

use admin_http::Reply;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    admin_http::serve(listener, move |path| respond(&metrics, path), shutdown).await
}

fn respond(metrics: &Metrics, path: &str) -> Reply {
    let response = match path {
        "/metrics" => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(metrics.encode()))),
        "/health" => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"status":"ok"}"#))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new())),
    };
    response.unwrap_or_default()
}
