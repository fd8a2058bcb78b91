//! The application under test: the project's own `spin.toml` and components, served by
//! `edge` on a loopback port against the local services, with test secrets and limits.
//! Redis state lives in a database of its own (number 9), so tests never touch the data of
//! a running `make up`.

use std::sync::Arc;

use bytes::Bytes;
use edge::instance::ReuseSettings;
use edge::server::ServerSettings;
use edge_testkit::{Response, TestServer, build_wasm, mysql_host, repo_root, service_env};
use serde_json::Value;
use tokio::sync::Semaphore;

pub const ADMIN_KEY: &str = "e2e-admin-key-0123456789";
pub const PASS_SIGNING_KEY: &str = "e2e-pass-signing-key-0123456789abcdef";
/// The Redis logical database of the tests.
const REDIS_DB: u32 = 9;

/// The Redis URL of the tests' database.
pub fn redis_url() -> String {
    format!("{}/{REDIS_DB}", service_env()["REDIS_URL"])
}

/// The running application plus a bounded client.
#[derive(Debug)]
pub struct App {
    pub server: TestServer,
    /// Caps requests in flight, like a load generator's virtual users.
    in_flight: Arc<Semaphore>,
}

impl App {
    /// Serves spin.toml with the given `SPIN_VARIABLE_*` overrides (upper-case names
    /// without the prefix, e.g. `("QUEUE_RATE_PER_SEC", "5")`).
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        build_wasm("functions/Cargo.toml", None);
        let env = service_env();
        let mut variables: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis_url()),
            ("REDIS_HOST".into(), env["REDIS_URL"].clone()),
            ("MYSQL_URL".into(), env["MYSQL_URL"].clone()),
            ("MYSQL_HOST".into(), mysql_host(&env["MYSQL_URL"])),
            ("PASS_SIGNING_KEY".into(), PASS_SIGNING_KEY.into()),
            ("ADMIN_KEY".into(), ADMIN_KEY.into()),
        ];
        for (name, value) in overrides {
            variables.retain(|(existing, _)| existing != name);
            variables.push(((*name).to_owned(), (*value).to_owned()));
        }
        let variables: Vec<(String, String)> = variables
            .into_iter()
            .map(|(name, value)| (format!("SPIN_VARIABLE_{name}"), value))
            .collect();
        let borrowed: Vec<(&str, String)> = variables
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let server = TestServer::serve(
            &repo_root().join("spin.toml"),
            &borrowed,
            ReuseSettings::default(),
            ServerSettings::default(),
        )
        .await;
        Self {
            server,
            in_flight: Arc::new(Semaphore::new(256)),
        }
    }

    /// Sends a request; `body` is JSON when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let _permit = self.in_flight.acquire().await.expect("semaphore");
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let response = self.server.send(method, path, body, &all).await;
        assert_well_formed(method, path, &response);
        response
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let auth = format!("Bearer {ADMIN_KEY}");
        self.call(method, path, body, &[("authorization", &auth)])
            .await
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Invariant 6 on every response: no 5xx but a clean 503, and every error is a JSON body
/// with an error code and a message.
fn assert_well_formed(method: &str, path: &str, response: &Response) {
    let status = response.status;
    assert!(
        status < 500 || status == 503,
        "{method} {path}: {status} {}",
        response.body
    );
    if status >= 400 {
        let body = response.json();
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{method} {path}: {status} without an error body: {}",
            response.body
        );
    }
}
