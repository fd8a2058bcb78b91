//! The application under test: the project's own `spin.toml` and components, served by
//! `edge` on a loopback port against the local services, with test secrets and limits.
//! Redis state lives in a database of its own (number 9) and MySQL state in the database
//! `ticketing_test_e2e` (migrated on first use), so tests never touch the data of a running
//! `make up`. Tests make their own concerts, schedules and users with fresh ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use edge::instance::ReuseSettings;
use edge::mysql::MysqlSettings;
use edge::server::ServerSettings;
use edge_testkit::{
    Response, SpinServer, TestServer, build_wasm, database_url, migrate, mysql_host, repo_root,
    send, service_env, spin_binary,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, Semaphore};

pub const ADMIN_KEY: &str = "e2e-admin-key-0123456789";
pub const PASS_SIGNING_KEY: &str = "e2e-pass-signing-key-0123456789abcdef";
/// The Redis logical database of the tests.
const REDIS_DB: u32 = 9;

/// The Redis URL of the tests' database.
pub fn redis_url() -> String {
    format!("{}/{REDIS_DB}", service_env()["REDIS_URL"])
}

const MYSQL_DB: &str = "ticketing_test_e2e";

/// The URL of the tests' MySQL database, migrated to the current schema once per process.
pub async fn mysql_url() -> String {
    static MIGRATED: OnceCell<String> = OnceCell::const_new();
    MIGRATED
        .get_or_init(|| async {
            let url = database_url(MYSQL_DB);
            migrate(&url);
            url
        })
        .await
        .clone()
}

/// A pool on the tests' database, for fixtures and for checking what the app wrote.
pub async fn mysql() -> mysql_async::Pool {
    mysql_async::Pool::new(mysql_url().await.as_str())
}

/// Ids no other test of this run or an earlier one has used: one past the largest
/// concert or user id in the database, then counting up.
pub async fn fresh_id() -> u64 {
    static NEXT: OnceCell<AtomicU64> = OnceCell::const_new();
    let next = NEXT
        .get_or_init(|| async {
            let pool = mysql().await;
            let mut conn = pool.get_conn().await.expect("connecting to MySQL");
            let max: Option<u64> = conn
                .query_first(
                    "SELECT GREATEST((SELECT COALESCE(MAX(id), 0) FROM concerts), \
                     (SELECT COALESCE(MAX(id), 0) FROM users))",
                )
                .await
                .expect("reading concert ids");
            AtomicU64::new(max.unwrap_or(0) + 1)
        })
        .await;
    next.fetch_add(1, Ordering::Relaxed)
}

/// A concert with one schedule of `seats` seats at `price`, as the seed makes them
/// (schedule = concert * 100 + 1, seat = schedule * 10000 + n).
#[derive(Debug, Clone)]
pub struct Venue {
    pub concert: u64,
    pub schedule: u64,
    pub seats: Vec<u64>,
}

/// A user with `opening` won on their balance (and the OPENING ledger line), as the seed
/// makes them.
pub async fn user(opening: u64) -> u64 {
    let user = fresh_id().await;
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("connecting to MySQL");
    conn.exec_drop(
        "INSERT INTO users (id, name) VALUES (?, ?)",
        (user, format!("user {user}")),
    )
    .await
    .expect("inserting a user");
    conn.exec_drop(
        "INSERT INTO balances (user_id, amount) VALUES (?, ?)",
        (user, opening),
    )
    .await
    .expect("inserting a balance");
    conn.exec_drop(
        "INSERT INTO balance_ledger (user_id, entry_type, amount, balance_after) \
         VALUES (?, 'OPENING', ?, ?)",
        (user, opening, opening),
    )
    .await
    .expect("inserting the opening ledger line");
    drop(conn);
    pool.disconnect().await.ok();
    user
}

/// The payment gateway simulator on an ephemeral loopback port, on a runtime of its own
/// so that dropping it kills the gateway mid-request, connections and all.
#[derive(Debug)]
pub struct Gateway {
    pub url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Gateway {
    pub fn start(behaviour: payment_gateway::Behaviour) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the gateway");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the gateway");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            payment_gateway::run(listener, behaviour, std::future::pending()).await
        });
        Self {
            url,
            runtime: Some(runtime),
        }
    }

    /// What the gateway approved, declined and voided so far.
    pub async fn stats(&self) -> payment_gateway::Stats {
        let host = self.url.trim_start_matches("http://");
        let stream = tokio::net::TcpStream::connect(host).await.expect("gateway");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        let request = http::Request::get(format!("{}/v1/stats", self.url))
            .header("host", host)
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("stats");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&body).expect("stats JSON")
    }

    /// Kills the gateway: every connection drops, nothing answers any more.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn venue(seats: u64, price: u64) -> Venue {
    let concert = fresh_id().await;
    let schedule = concert * 100 + 1;
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("connecting to MySQL");
    conn.exec_drop(
        "INSERT INTO concerts (id, title, artist, venue) VALUES (?, ?, 'E2E Band', 'Test Hall')",
        (concert, format!("Concert {concert}")),
    )
    .await
    .expect("inserting a concert");
    conn.exec_drop(
        "INSERT INTO schedules (id, concert_id, starts_at, total_seats) \
         VALUES (?, ?, UTC_TIMESTAMP(3) + INTERVAL 30 DAY, ?)",
        (schedule, concert, seats),
    )
    .await
    .expect("inserting a schedule");
    let ids: Vec<u64> = (1..=seats).map(|n| schedule * 10_000 + n).collect();
    conn.exec_batch(
        "INSERT INTO seats (id, schedule_id, seat_no, label, price) VALUES (?, ?, ?, ?, ?)",
        ids.iter()
            .zip(1..)
            .map(|(id, n)| (*id, schedule, n, format!("A{n}"), price)),
    )
    .await
    .expect("inserting seats");
    drop(conn);
    pool.disconnect().await.ok();
    Venue {
        concert,
        schedule,
        seats: ids,
    }
}

/// A venue whose concert allows each fan at most `seats_per_fan` seats.
pub async fn capped_venue(seats: u64, price: u64, seats_per_fan: u32) -> Venue {
    let capped = venue(seats, price).await;
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("connecting to MySQL");
    conn.exec_drop(
        "UPDATE concerts SET seats_per_fan = ? WHERE id = ?",
        (seats_per_fan, capped.concert),
    )
    .await
    .expect("capping the concert");
    drop(conn);
    pool.disconnect().await.ok();
    capped
}

/// What runs the application: `edge`, or the `spin` binary at the path.
#[derive(Debug, Clone)]
pub enum Runtime {
    Edge,
    Spin(std::path::PathBuf),
}

/// What serves the application: `edge` in this process, or, when `SPIN` names a `spin`
/// binary, real Spin in a process of its own (the conformance run, `e2e/spin/run`).
#[derive(Debug)]
pub enum Server {
    Edge(TestServer),
    Spin(SpinServer),
}

impl Server {
    pub fn addr(&self) -> std::net::SocketAddr {
        match self {
            Self::Edge(server) => server.addr,
            Self::Spin(server) => server.addr,
        }
    }
}

/// The running application plus a bounded client.
#[derive(Debug)]
pub struct App {
    pub server: Server,
    /// Caps requests in flight, like a load generator's virtual users.
    in_flight: Arc<Semaphore>,
    /// Queues [`App::pass`] has opened wide already.
    configured_queues: tokio::sync::Mutex<std::collections::HashSet<String>>,
}

impl App {
    /// Serves spin.toml with the given `SPIN_VARIABLE_*` overrides (upper-case names
    /// without the prefix, e.g. `("QUEUE_RATE_PER_SEC", "5")`), under real Spin when `SPIN`
    /// names a binary, else under `edge`.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let runtime = spin_binary().map_or(Runtime::Edge, Runtime::Spin);
        Self::start_on(&runtime, overrides).await
    }

    /// Serves spin.toml under `runtime`, as [`App::start`] does.
    pub async fn start_on(runtime: &Runtime, overrides: &[(&str, &str)]) -> Self {
        build_wasm("functions/Cargo.toml", None);
        let env = service_env();
        let mut variables: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis_url()),
            ("REDIS_HOST".into(), env["REDIS_URL"].clone()),
            ("MYSQL_URL".into(), mysql_url().await),
            ("MYSQL_HOST".into(), mysql_host(&env["MYSQL_URL"])),
            ("PASS_SIGNING_KEY".into(), PASS_SIGNING_KEY.into()),
            ("ADMIN_KEY".into(), ADMIN_KEY.into()),
            // Every test client shares one loopback address, as with `make up`; tests of
            // the address limits set them explicitly.
            ("QUEUE_JOIN_LIMIT_PER_ADDRESS".into(), "0".into()),
            ("QUEUE_STATUS_LIMIT_PER_ADDRESS".into(), "0".into()),
            // Never the simulator of a running `make up`: payment tests start their own.
            ("GATEWAY_URL".into(), "http://127.0.0.1:1".into()),
            // Nor the bridge of `make up`: the console's tests serve its metrics themselves.
            ("BRIDGE_URL".into(), "http://127.0.0.1:1".into()),
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
        let manifest = repo_root().join("spin.toml");
        let server = match runtime {
            Runtime::Spin(spin) => {
                Server::Spin(SpinServer::serve(spin, &manifest, &borrowed).await)
            }
            Runtime::Edge => Server::Edge(
                TestServer::serve(
                    &manifest,
                    &borrowed,
                    ReuseSettings::default(),
                    ServerSettings::default(),
                    MysqlSettings::default(),
                )
                .await,
            ),
        };
        Self {
            server,
            in_flight: Arc::new(Semaphore::new(256)),
            configured_queues: Default::default(),
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
        let mut attempts = 0;
        loop {
            let response = send(self.server.addr(), method, path, body.clone(), &all).await;
            assert_well_formed(method, path, &response);
            // A burst on a cold component can find every instance slot taken; the host
            // then answers 503 at capacity with Retry-After before the guest runs, and a
            // well-behaved client comes back (sooner here than the header says).
            let at_capacity =
                response.status == 503 && response.body.contains("the server is at capacity");
            attempts += 1;
            if !at_capacity || attempts == 50 {
                return response;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let auth = format!("Bearer {ADMIN_KEY}");
        self.call(method, path, body, &[("authorization", &auth)])
            .await
    }

    /// Takes `user` through `queue` (created wide open if new) to an active pass.
    pub async fn pass(&self, queue: &str, user: u64) -> String {
        // Held across the PUT, so no user joins before the queue exists.
        let mut configured = self.configured_queues.lock().await;
        if configured.insert(queue.to_owned()) {
            let path = format!("/api/admin/queue?queueId={queue}");
            let wide_open = serde_json::json!({ "ratePerSec": 100000, "maxActive": 10000000 });
            let response = self.admin("PUT", &path, Some(&wide_open)).await;
            assert_eq!(response.status, 200, "{}", response.body);
        }
        drop(configured);
        let joined = self
            .call(
                "POST",
                "/api/queue/tokens",
                Some(&serde_json::json!({ "userId": user, "queueId": queue })),
                &[],
            )
            .await;
        assert!(
            joined.status == 201 || joined.status == 200,
            "{}",
            joined.body
        );
        let auth = format!("Bearer {}", joined.json()["token"].as_str().expect("token"));
        for _ in 0..200 {
            let status = self
                .call(
                    "GET",
                    "/api/queue/status",
                    None,
                    &[("authorization", &auth)],
                )
                .await
                .json();
            if status["status"] == "ACTIVE" {
                return status["pass"].as_str().expect("pass").to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("user {user} was not admitted to {queue}");
    }

    pub async fn stop(self) {
        if let Server::Edge(server) = self.server {
            server.stop().await;
        }
    }
}

/// Invariant 6 of docs/INVARIANTS.md on every response: no 5xx but a clean 503, and every
/// error is a JSON body with an error code and a message.
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
/// An idempotency key no other request of this run has used.
pub fn key() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "k-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// POSTs JSON with a bearer token (and an idempotency key): (status, body).
pub async fn post(
    app: &App,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    let response = app.call("POST", path, Some(&body), &headers).await;
    (response.status, response.json())
}

/// Pays for `reservation` with `pass` under `key`.
pub async fn pay(app: &App, pass: &str, reservation: u64, key: &str) -> (u16, Value) {
    post(
        app,
        "/api/payments",
        pass,
        Some(key),
        json!({ "reservationId": reservation }),
    )
    .await
}

/// GETs `path` with `auth` (an `Authorization` value), expecting JSON.
pub async fn get(app: &App, path: &str, auth: &str) -> Value {
    app.call("GET", path, None, &[("authorization", auth)])
        .await
        .json()
}

/// The seat map of `schedule` (no token needed).
pub async fn seat_map(app: &App, schedule: u64) -> Value {
    app.call(
        "GET",
        &format!("/api/schedules/{schedule}/seats"),
        None,
        &[],
    )
    .await
    .json()
}

/// Holds `seats` of `schedule` with `pass`; returns the reservation. Many holds at once on a busy
/// machine can outwait the host's MySQL pool, which sheds them with a clean 503 that wrote
/// nothing; like a client, this tries again after the `Retry-After` second, a few times.
pub async fn hold(app: &App, pass: &str, schedule: u64, seats: &[u64]) -> u64 {
    const SHED_RETRIES: u32 = 5;
    let request = json!({ "scheduleId": schedule, "seatIds": seats });
    let mut retries = 0;
    loop {
        let (status, body) = post(app, "/api/reservations", pass, None, request.clone()).await;
        if status == 503 && retries < SHED_RETRIES {
            assert_eq!(body["error"], "service_unavailable", "{body}");
            retries += 1;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        assert_eq!(status, 201, "{body}");
        return body["reservationId"].as_u64().expect("reservation id");
    }
}

/// Cancels the hold `reservation` with `pass`, as its holder: its seats go back on sale.
pub async fn release(app: &App, pass: &str, reservation: u64) {
    let auth = format!("Bearer {pass}");
    let released = app
        .call(
            "DELETE",
            &format!("/api/reservations/{reservation}"),
            None,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(released.status, 200, "{}", released.body);
}

/// Pays for `reservation`, with a new key after every decline or gateway timeout, as a user
/// would. Returns the payment and the number of declines.
pub async fn pay_until_done(app: &App, pass: &str, reservation: u64) -> (u64, u32) {
    let mut declines = 0;
    loop {
        let (status, body) = pay(app, pass, reservation, &key()).await;
        match status {
            201 => return (body["paymentId"].as_u64().expect("payment id"), declines),
            422 => {
                assert_eq!(body["error"], "payment_declined", "{body}");
                declines += 1;
            }
            // The gateway did not answer in time (a loaded machine): nothing was charged,
            // and the user tries again with a new key, as after a decline.
            503 => assert_eq!(body["error"], "service_unavailable", "{body}"),
            other => panic!("payment of {reservation}: {other} {body}"),
        }
    }
}
