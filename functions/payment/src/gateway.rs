//! The client of the external payment gateway: authorize under the attempt's merchant
//! reference (the gateway answers a repeated reference with its first decision), and void an
//! authorization that our transaction could not use.

use std::time::Duration;

use spin_sdk::http::{self, body::IncomingBodyExt};
use ticketing_core::money::Amount;
use ticketing_core::payment::GatewayReference;

/// What the gateway said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Authorization {
    Approved {
        authorization_id: String,
    },
    Declined {
        reason: String,
    },
    /// No answer in time, or no answer at all: whether it approved is unknown.
    Unavailable,
}

async fn post(url: String, body: String, timeout: Duration) -> Option<(u16, serde_json::Value)> {
    let request = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .body(body)
        .ok()?;
    let exchange = async {
        let response = http::send(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().bytes().await.ok()?;
        Some((status, serde_json::from_slice(&bytes).ok()?))
    };
    http_kit::within(timeout, exchange).await
}

pub(crate) async fn authorize(
    base: &str,
    reference: &GatewayReference,
    amount: Amount,
    timeout: Duration,
) -> Authorization {
    let body = serde_json::json!({ "reference": reference.as_str(), "amount": amount });
    match post(
        format!("{base}/v1/authorizations"),
        body.to_string(),
        timeout,
    )
    .await
    {
        Some((201, answer)) if answer["status"] == "APPROVED" => Authorization::Approved {
            authorization_id: answer["authorizationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        Some((402, answer)) => Authorization::Declined {
            reason: answer["reason"].as_str().unwrap_or("declined").to_owned(),
        },
        _ => Authorization::Unavailable,
    }
}

/// Releases whatever the gateway approved under `reference`. Best effort: an authorization
/// that is never captured lapses at the gateway on its own, and no money moved in our books.
pub(crate) async fn void(base: &str, reference: &GatewayReference, timeout: Duration) {
    let url = format!("{base}/v1/references/{reference}/void");
    if post(url, String::new(), timeout).await.is_none() {
        eprintln!("payment: voiding the authorization {reference} failed");
    }
}
