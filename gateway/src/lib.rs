//! A payment gateway simulator that fails the way real ones do: it declines a configurable
//! share of authorizations, answers after a configurable latency, and hangs on another share
//! for longer than any sane client waits. Decisions are a pure function of the payment
//! reference and a seed, so a retried authorization gets the same answer (gateways are
//! idempotent by merchant reference), runs are reproducible, and tests can predict them.
//!
//! - `POST /v1/authorizations` `{ "reference", "amount" }` → `201 { authorizationId,
//!   status: "APPROVED" }` or `402 { status: "DECLINED", reason }`; the same reference with
//!   another amount is `409`.
//! - `POST /v1/authorizations/{id}/void` → `200 { status: "VOIDED" }` (idempotent).
//! - `POST /v1/references/{reference}/void`: the same, for a client that timed out before
//!   it learnt the authorization id.
//! - `GET /v1/stats`, `GET /health`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// How the simulated gateway behaves.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Share of authorizations declined, 0.0 to 1.0 (the seeds use 5 %).
    pub decline_rate: f64,
    /// Share that hang for `hang` before answering, 0.0 to 1.0.
    pub hang_rate: f64,
    pub hang: Duration,
    /// Time to answer every request.
    pub latency: Duration,
    /// Mixed into every decision, so separate runs can differ.
    pub seed: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            decline_rate: 0.05,
            hang_rate: 0.0,
            hang: Duration::from_secs(30),
            latency: Duration::from_millis(5),
            seed: 0,
        }
    }
}

/// What happens to an authorization with a given reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
    Hang,
}

impl Behaviour {
    /// The decision for `reference`, a pure function of it and the seed.
    pub fn decide(&self, reference: &str) -> Decision {
        let digest = Sha256::new()
            .chain_update(self.seed.to_be_bytes())
            .chain_update(reference.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        // A uniform draw in [0, 1) from 53 bits of the hash.
        let draw = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < self.hang_rate {
            Decision::Hang
        } else if draw < self.hang_rate + self.decline_rate {
            Decision::Decline
        } else {
            Decision::Approve
        }
    }
}

/// Counts of what the gateway did, for tests and operators.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub approved: u64,
    pub declined: u64,
    pub hung: u64,
    pub voided: u64,
    /// Approved, not voided.
    pub outstanding: u64,
}

#[derive(Debug)]
struct Authorization {
    id: String,
    amount: u64,
    approved: bool,
    voided: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    by_reference: HashMap<String, Authorization>,
    stats: Stats,
}

#[derive(Debug)]
struct Gateway {
    behaviour: Behaviour,
    ledger: Mutex<Ledger>,
}

#[derive(Deserialize)]
struct AuthorizeRequest {
    reference: String,
    amount: u64,
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl Gateway {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        if method == Method::GET && path == "/health" {
            return reply(StatusCode::OK, json!({ "status": "ok" }));
        }
        if method == Method::GET && path == "/v1/stats" {
            let stats = self
                .ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stats
                .clone();
            return reply(StatusCode::OK, json!(stats));
        }
        let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "unreadable body" }),
            );
        };
        tokio::time::sleep(self.behaviour.latency).await;
        match (method, path.split('/').collect::<Vec<_>>().as_slice()) {
            (Method::POST, ["", "v1", "authorizations"]) => {
                match serde_json::from_slice::<AuthorizeRequest>(&body) {
                    Ok(authorize) => self.authorize(authorize).await,
                    Err(error) => reply(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": error.to_string() }),
                    ),
                }
            }
            (Method::POST, ["", "v1", "authorizations", id, "void"]) => self.void(|a| a.id == *id),
            (Method::POST, ["", "v1", "references", reference, "void"]) => {
                let reference = (*reference).to_owned();
                self.void_reference(&reference)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({ "error": "no such endpoint" }),
            ),
        }
    }

    async fn authorize(&self, request: AuthorizeRequest) -> Response<Full<Bytes>> {
        let decision = self.behaviour.decide(&request.reference);
        if decision == Decision::Hang {
            self.ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stats
                .hung += 1;
            tokio::time::sleep(self.behaviour.hang).await;
        }
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let Ledger {
            by_reference,
            stats,
        } = &mut *ledger;
        let next_id = format!("auth_{}", by_reference.len() + 1);
        let authorization = by_reference
            .entry(request.reference.clone())
            .or_insert_with(|| {
                let approved = decision != Decision::Decline;
                if approved {
                    stats.approved += 1;
                    stats.outstanding += 1;
                } else {
                    stats.declined += 1;
                }
                Authorization {
                    id: next_id,
                    amount: request.amount,
                    approved,
                    voided: false,
                }
            });
        if authorization.amount != request.amount {
            return reply(
                StatusCode::CONFLICT,
                json!({ "error": "reference already used with another amount" }),
            );
        }
        if authorization.approved {
            reply(
                StatusCode::CREATED,
                json!({ "authorizationId": authorization.id, "reference": request.reference,
                        "status": if authorization.voided { "VOIDED" } else { "APPROVED" } }),
            )
        } else {
            reply(
                StatusCode::PAYMENT_REQUIRED,
                json!({ "reference": request.reference, "status": "DECLINED",
                        "reason": "card_declined" }),
            )
        }
    }

    fn void_reference(&self, reference: &str) -> Response<Full<Bytes>> {
        let id = self
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_reference
            .get(reference)
            .map(|a| a.id.clone());
        match id {
            Some(id) => self.void(|a| a.id == id),
            // Never authorized (or declined): nothing to release.
            None => reply(
                StatusCode::OK,
                json!({ "reference": reference, "status": "NONE" }),
            ),
        }
    }

    fn void(&self, matches: impl Fn(&Authorization) -> bool) -> Response<Full<Bytes>> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let Ledger {
            by_reference,
            stats,
        } = &mut *ledger;
        match by_reference.values_mut().find(|a| a.approved && matches(a)) {
            Some(authorization) => {
                if !authorization.voided {
                    authorization.voided = true;
                    stats.voided += 1;
                    stats.outstanding -= 1;
                }
                reply(
                    StatusCode::OK,
                    json!({ "authorizationId": authorization.id, "status": "VOIDED" }),
                )
            }
            None => reply(
                StatusCode::NOT_FOUND,
                json!({ "error": "no such authorization" }),
            ),
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    behaviour: Behaviour,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let gateway = Arc::new(Gateway {
        behaviour,
        ledger: Mutex::default(),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(gateway.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_rates_and_repeat_for_a_reference() {
        let behaviour = Behaviour {
            decline_rate: 0.05,
            hang_rate: 0.01,
            ..Behaviour::default()
        };
        let decisions: Vec<Decision> = (0..100_000)
            .map(|i| behaviour.decide(&format!("pay-{i}")))
            .collect();
        let declined = decisions
            .iter()
            .filter(|d| **d == Decision::Decline)
            .count();
        let hung = decisions.iter().filter(|d| **d == Decision::Hang).count();
        assert!((4_500..5_500).contains(&declined), "{declined}");
        assert!((800..1_200).contains(&hung), "{hung}");
        assert_eq!(behaviour.decide("pay-7"), decisions[7]);
    }

    #[test]
    fn a_seed_changes_the_decisions() {
        let a = Behaviour::default();
        let b = Behaviour {
            seed: 1,
            ..Behaviour::default()
        };
        let differ = (0..1000)
            .filter(|i| a.decide(&i.to_string()) != b.decide(&i.to_string()))
            .count();
        assert!(differ > 0);
    }
}
