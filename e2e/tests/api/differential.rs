//! The differential check of the conformance run (`e2e/spin/run`): the same requests to the
//! application served by `edge` and by real Spin (`SPIN=/path/to/spin`), each side on its own
//! copy of the same data, and their answers compared: status, content type and body, with
//! only what differs by nature masked (tokens and passes, which sign the time they were
//! made; times; the client's port). The host probe's MySQL column table and the request
//! headers a guest sees are compared the same way. `cargo test` alone lists these tests as
//! ignored; the conformance run writes the table to `target/spin-e2e/differential.md`.

use std::fmt::Write as _;

use e2e::{ADMIN_KEY, App, Gateway, Runtime};
use edge_testkit::{
    Response, SpinServer, TestServer, probe_application, repo_root, scratch_database, service_env,
    spin_binary,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const NEEDS_SPIN: &str = "needs SPIN=/path/to/spin: run e2e/spin/run";

/// Body fields whose values differ between any two runs, whatever the runtime.
const VOLATILE: &[&str] = &[
    "token",
    "pass",
    "joinedAt",
    "expiresAt",
    "createdAt",
    "refundedAt",
    "heldUntil",
    "passExpiresAt",
    "tokenExpiresAt",
    "etaSeconds",
    // Jittered on purpose, so fans who joined together do not poll together.
    "pollAfterMs",
    // Abuse limits count in windows aligned to the clock: the wait is what is left of the
    // window when the run happens to hit the limit.
    "retryAfterSeconds",
];

/// One exchange: what was asked and what came back, masked.
#[derive(Debug, PartialEq)]
struct Exchange {
    request: String,
    status: u16,
    content_type: String,
    body: Value,
}

fn mask(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            // A rate-limited answer says the wait in its message too.
            if fields.get("error") == Some(&json!("rate_limited")) {
                fields.insert("message".into(), json!("<varies>"));
            }
            for (name, field) in fields.iter_mut() {
                if VOLATILE.contains(&name.as_str()) && !field.is_null() {
                    *field = json!("<varies>");
                } else {
                    mask(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

fn exchange(request: String, response: &Response) -> Exchange {
    let mut body = serde_json::from_str(&response.body).unwrap_or_else(|_| json!(response.body));
    mask(&mut body);
    Exchange {
        request,
        status: response.status,
        content_type: response
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body,
    }
}

/// A record of one side's answers.
struct Transcript<'a> {
    app: &'a App,
    exchanges: Vec<Exchange>,
}

impl Transcript<'_> {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Value {
        let response = self.app.call(method, path, body.as_ref(), headers).await;
        let shown = match &body {
            Some(body) => format!("{method} {path} {body}"),
            None => format!("{method} {path}"),
        };
        let json = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        self.exchanges.push(exchange(shown, &response));
        json
    }
}

/// The same data on both sides: one concert (three seats per fan) with one schedule of four
/// seats, and two users.
async fn fixtures(mysql_url: &str) {
    let pool = mysql_async::Pool::new(mysql_url);
    let mut conn = pool.get_conn().await.expect("connecting to MySQL");
    for statement in [
        "INSERT INTO concerts (id, title, artist, venue, seats_per_fan) \
         VALUES (1, 'Diff Live', 'The Twins', 'Hall', 3)",
        "INSERT INTO schedules (id, concert_id, starts_at, total_seats) \
         VALUES (101, 1, '2031-01-02 19:30:00.000', 4)",
        "INSERT INTO seats (id, schedule_id, seat_no, label, price) VALUES \
         (1010001, 101, 1, 'A1', 50000), (1010002, 101, 2, 'A2', 50000), \
         (1010003, 101, 3, 'A3', 50000), (1010004, 101, 4, 'A4', 50000)",
        "INSERT INTO users (id, name) VALUES (1, 'one'), (2, 'two')",
        "INSERT INTO balances (user_id, amount) VALUES (1, 200000), (2, 0)",
        "INSERT INTO balance_ledger (user_id, entry_type, amount, balance_after) \
         VALUES (1, 'OPENING', 200000, 200000), (2, 'OPENING', 0, 0)",
    ] {
        conn.query_drop(statement).await.expect(statement);
    }
    drop(conn);
    pool.disconnect().await.ok();
}

/// The application under `runtime` on fresh copies of the fixtures (MySQL database
/// `ticketing_test_diff_<side>`, Redis database `redis_db`), with a gateway that never declines.
async fn side(runtime: &Runtime, name: &str, redis_db: u32, gateway: &Gateway) -> App {
    let env = service_env();
    let mysql_url = scratch_database(&format!("ticketing_test_diff_{name}")).await;
    fixtures(&mysql_url).await;
    let redis_url = format!("{}/{redis_db}", env["REDIS_URL"]);
    let mut redis = redis::Client::open(redis_url.as_str())
        .and_then(|client| client.get_connection())
        .expect("connecting to Redis");
    redis::cmd("FLUSHDB")
        .query::<()>(&mut redis)
        .expect("emptying the Redis database");
    App::start_on(
        runtime,
        &[
            ("MYSQL_URL", &mysql_url),
            ("REDIS_URL", &redis_url),
            ("GATEWAY_URL", &gateway.url),
            ("QUEUE_JOIN_LIMIT_PER_USER", "2"),
        ],
    )
    .await
}

/// Every route of the API, its answers and its refusals, in an order that makes each
/// answer depend only on the requests before it.
async fn journey(app: &App) -> Vec<Exchange> {
    let mut t = Transcript {
        app,
        exchanges: Vec::new(),
    };
    let admin = format!("Bearer {ADMIN_KEY}");
    let admin = [("authorization", admin.as_str())];
    t.send("GET", "/health", None, &[]).await;
    t.send("POST", "/health", None, &[]).await;
    t.send("GET", "/api/concerts", None, &[]).await;
    t.send("GET", "/api/concerts/1", None, &[]).await;
    t.send("GET", "/api/concerts/999999", None, &[]).await;
    t.send("GET", "/api/concerts/abc", None, &[]).await;
    t.send("GET", "/api/concerts/1/schedules", None, &[]).await;
    t.send("GET", "/api/schedules/101/seats", None, &[]).await;
    t.send("GET", "/api/concerts/ranking?window=all", None, &[])
        .await;
    t.send("GET", "/api/concerts/ranking?window=soon", None, &[])
        .await;
    t.send("GET", "/api/admin/queue?queueId=diff", None, &[])
        .await;
    for page in ["/", "/console", "/assets/fan.js", "/assets/none.js"] {
        t.send("GET", page, None, &[]).await;
    }
    t.send("POST", "/", None, &[]).await;
    t.send("GET", "/api/admin/queues", None, &[]).await;
    t.send("GET", "/api/admin/schedules?concertId=x", None, &admin)
        .await;
    // The tests' bridge address answers nothing: the console's pipeline is unavailable.
    t.send("GET", "/api/admin/pipeline", None, &admin).await;
    let wide_open = json!({ "ratePerSec": 1000, "maxActive": 1000 });
    t.send(
        "PUT",
        "/api/admin/queue?queueId=diff",
        Some(wide_open),
        &admin,
    )
    .await;
    t.send("GET", "/api/admin/queue?queueId=diff", None, &admin)
        .await;
    t.send("DELETE", "/api/admin/queue?queueId=diff", None, &admin)
        .await;
    // A queue without an opening has no draw; an opening in the past is refused.
    t.send("GET", "/api/queue/draw?queueId=diff", None, &[])
        .await;
    t.send("GET", "/api/queue/draw?queueId=diff&userId=x", None, &[])
        .await;
    t.send(
        "PUT",
        "/api/admin/queue?queueId=diff-past",
        Some(json!({ "opensAt": "2020-01-01T00:00:00.000Z" })),
        &admin,
    )
    .await;
    // A queue selling the concert (no bridge counts it here: not sold out).
    t.send(
        "PUT",
        "/api/admin/queue?queueId=diff-selling",
        Some(json!({ "concertId": 1 })),
        &admin,
    )
    .await;
    let join = |user: u64| json!({ "userId": user, "queueId": "diff" });
    let ticket = t
        .send("POST", "/api/queue/tokens", Some(join(1)), &[])
        .await;
    t.send("POST", "/api/queue/tokens", Some(join(1)), &[])
        .await;
    t.send("POST", "/api/queue/tokens", Some(join(1)), &[])
        .await;
    // The waitlist: a ticket of a queue that does not sell the concert is refused, a fan
    // not on the list is not found, no token is unauthenticated, and PUT is not a method.
    let ticket_bearer = format!("Bearer {}", ticket["token"].as_str().unwrap_or_default());
    let ticket_auth = [("authorization", ticket_bearer.as_str())];
    for (method, auth) in [
        ("POST", &ticket_auth[..]),
        ("GET", &ticket_auth[..]),
        ("POST", &[]),
        ("PUT", &ticket_auth[..]),
    ] {
        t.send(method, "/api/concerts/1/waitlist", None, auth).await;
    }
    t.send(
        "POST",
        "/api/queue/tokens",
        Some(json!({ "userId": -1 })),
        &[],
    )
    .await;
    t.send("GET", "/api/queue/status", None, &[]).await;
    let first = admitted(&mut t, &ticket).await;
    let other = t
        .send("POST", "/api/queue/tokens", Some(join(2)), &[])
        .await;
    let other = admitted(&mut t, &other).await;
    let bearer = format!("Bearer {first}");
    let auth = [("authorization", bearer.as_str())];
    let other_bearer = format!("Bearer {other}");
    let other_auth = [("authorization", other_bearer.as_str())];
    let hold = json!({ "scheduleId": 101, "seatIds": [1010001, 1010002] });
    let held = t.send("POST", "/api/reservations", Some(hold), &auth).await;
    let taken = json!({ "scheduleId": 101, "seatIds": [1010002, 1010003] });
    t.send("POST", "/api/reservations", Some(taken), &other_auth)
        .await;
    // Two more seats would take the first fan past the concert's cap of three.
    let past_cap = json!({ "scheduleId": 101, "seatIds": [1010003, 1010004] });
    t.send("POST", "/api/reservations", Some(past_cap), &auth)
        .await;
    t.send(
        "POST",
        "/api/reservations",
        Some(json!({ "scheduleId": 101 })),
        &auth,
    )
    .await;
    let reservation = held["reservationId"].as_u64().unwrap_or(0);
    // A queue ticket pays or lets go only a waitlist offer: this hold is not one.
    t.send(
        "POST",
        "/api/payments",
        Some(json!({ "reservationId": reservation })),
        &[ticket_auth[0], ("idempotency-key", "ticket-pays")],
    )
    .await;
    t.send(
        "DELETE",
        &format!("/api/reservations/{reservation}"),
        None,
        &ticket_auth,
    )
    .await;
    t.send(
        "GET",
        &format!("/api/reservations/{reservation}"),
        None,
        &auth,
    )
    .await;
    t.send(
        "GET",
        &format!("/api/reservations/{reservation}"),
        None,
        &other_auth,
    )
    .await;
    t.send("GET", "/api/schedules/101/seats", None, &[]).await;
    let lone = json!({ "scheduleId": 101, "seatIds": [1010004] });
    let released = t
        .send("POST", "/api/reservations", Some(lone), &other_auth)
        .await;
    let released = released["reservationId"].as_u64().unwrap_or(0);
    t.send(
        "DELETE",
        &format!("/api/reservations/{released}"),
        None,
        &other_auth,
    )
    .await;
    t.send("GET", "/api/users/1/balance", None, &auth).await;
    t.send("GET", "/api/users/2/balance", None, &auth).await;
    let charge = json!({ "amount": 1000 });
    let keyed = |key: &'static str| [auth[0], ("idempotency-key", key)];
    t.send(
        "POST",
        "/api/users/1/balance/charge",
        Some(charge.clone()),
        &keyed("charge-1"),
    )
    .await;
    t.send("POST", "/api/users/1/balance/charge", Some(charge), &auth)
        .await;
    let payment = json!({ "reservationId": reservation });
    let paid = t
        .send(
            "POST",
            "/api/payments",
            Some(payment.clone()),
            &keyed("pay-1"),
        )
        .await;
    t.send(
        "POST",
        "/api/payments",
        Some(payment.clone()),
        &keyed("pay-1"),
    )
    .await;
    t.send("POST", "/api/payments", Some(payment), &keyed("pay-2"))
        .await;
    let payment_id = paid["paymentId"].as_u64().unwrap_or(0);
    t.send("GET", &format!("/api/payments/{payment_id}"), None, &auth)
        .await;
    t.send("GET", "/api/payments/987654", None, &auth).await;
    t.send("GET", "/api/schedules/101/seats", None, &[]).await;
    t.send(
        "POST",
        &format!("/api/payments/{payment_id}/refund"),
        None,
        &keyed("refund-1"),
    )
    .await;
    t.send("GET", "/api/users/1/balance", None, &auth).await;
    t.send("GET", "/api/schedules/101/seats", None, &[]).await;
    t.exchanges
}

/// Polls the queue with `joined`'s ticket until admitted, recording the last answer; the pass.
async fn admitted(t: &mut Transcript<'_>, joined: &Value) -> String {
    let ticket = format!("Bearer {}", joined["token"].as_str().unwrap_or_default());
    for _ in 0..100 {
        let response = t
            .app
            .call(
                "GET",
                "/api/queue/status",
                None,
                &[("authorization", &ticket)],
            )
            .await;
        let status = response.json();
        if status["status"] == "ACTIVE" {
            t.exchanges
                .push(exchange("GET /api/queue/status".to_owned(), &response));
            return status["pass"].as_str().unwrap_or_default().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("not admitted: {joined}");
}

/// The table of both transcripts, and the rows where they differ.
fn compare(edge: &[Exchange], spin: &[Exchange]) -> (String, Vec<String>) {
    let mut table = String::from("| request | edge | spin | same |\n|---|---|---|---|\n");
    let mut differences = Vec::new();
    for (edge, spin) in edge.iter().zip(spin) {
        let same = edge == spin;
        let _ = writeln!(
            table,
            "| `{}` | {} | {} | {} |",
            edge.request,
            edge.status,
            spin.status,
            if same { "yes" } else { "**no**" }
        );
        if !same {
            differences.push(format!("{edge:#?}\n  vs Spin\n{spin:#?}"));
        }
    }
    if edge.len() != spin.len() {
        differences.push(format!("{} exchanges vs {}", edge.len(), spin.len()));
    }
    (table, differences)
}

fn write_report(name: &str, table: &str) {
    let dir = repo_root().join("target/spin-e2e");
    std::fs::create_dir_all(&dir).expect("target/spin-e2e");
    std::fs::write(dir.join(name), table).expect("writing the table");
    println!("{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIN=/path/to/spin: run e2e/spin/run"]
async fn every_route_answers_the_same_under_edge_and_under_spin() {
    let spin = spin_binary().expect(NEEDS_SPIN);
    let quiet = payment_gateway::Behaviour {
        decline_rate: 0.0,
        ..Default::default()
    };
    let edge_gateway = Gateway::start(quiet.clone());
    let spin_gateway = Gateway::start(quiet);
    let edge = side(&Runtime::Edge, "edge", 10, &edge_gateway).await;
    let edge_answers = journey(&edge).await;
    edge.stop().await;
    let spin = side(&Runtime::Spin(spin), "spin", 11, &spin_gateway).await;
    let spin_answers = journey(&spin).await;
    spin.stop().await;
    let (table, differences) = compare(&edge_answers, &spin_answers);
    write_report("differential.md", &table);
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
}

/// The probe application (host/tests/fixtures/probe.toml) under both runtimes: the WIT
/// type and value (or error) of every MySQL column type, the `spin-*` headers a guest sees
/// when the client sent its own, and every Redis function's results and errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIN=/path/to/spin: run e2e/spin/run"]
async fn mysql_columns_redis_replies_and_request_headers_reach_a_guest_the_same_under_both() {
    let spin = spin_binary().expect(NEEDS_SPIN);
    let mysql_url = scratch_database("ticketing_test_diff_probe").await;
    let (manifest, variables) = probe_application(mysql_url);
    let forged = [
        ("spin-client-addr", "203.0.113.9:1"),
        ("spin-path-info", "/forged"),
    ];
    let ask = |addr| async move {
        let columns =
            edge_testkit::send(addr, "GET", "/probe/mysql/columns", Default::default(), &[]).await;
        let headers =
            edge_testkit::send(addr, "GET", "/probe/headers", Default::default(), &forged).await;
        let mut headers: Value = serde_json::from_str(&headers.body).expect("headers JSON");
        // The client's port and the server's own port differ by nature.
        headers["headers"]["spin-client-addr"][1] = json!("<the client's address>");
        headers["headers"]["spin-full-url"] = json!("<the server's URL>");
        headers["uri"] = json!("<the server's URL>");
        let redis = edge_testkit::send(
            addr,
            "GET",
            "/probe/redis?prefix=differential",
            Default::default(),
            &[],
        )
        .await;
        let mut redis: Value = serde_json::from_str(&redis.body).expect("redis JSON");
        // The variant only: the message is the client library's wording.
        if let Some(text) = redis["wrong_type"].as_str() {
            redis["wrong_type"] = json!(text.split('(').take(2).collect::<Vec<_>>().join("("));
        }
        (columns.status, columns.body, headers, redis)
    };
    let edge = TestServer::serve(
        &manifest,
        &variables,
        Default::default(),
        Default::default(),
        Default::default(),
    )
    .await;
    let edge_answers = ask(edge.addr).await;
    edge.stop().await;
    let spin = SpinServer::serve(&spin, &manifest, &variables).await;
    let spin_answers = ask(spin.addr).await;
    drop(spin);

    let edge_columns: Value = serde_json::from_str(&edge_answers.1).expect("columns JSON");
    let spin_columns: Value = serde_json::from_str(&spin_answers.1).expect("columns JSON");
    let mut table = String::from("| read | edge | spin |\n|---|---|---|\n");
    for (read, answer) in edge_columns.as_object().into_iter().flatten() {
        let _ = writeln!(table, "| `{read}` | {answer} | {} |", spin_columns[read]);
    }
    write_report("differential-probe.md", &table);
    assert_eq!(edge_answers.0, 200, "{}", edge_answers.1);
    assert_eq!(edge_columns, spin_columns);
    assert_eq!(edge_answers.2, spin_answers.2);
    assert_eq!(edge_answers.3, spin_answers.3);
}
