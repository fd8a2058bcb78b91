//! The host end to end: the probe component (tests/probe) served through `edge` against the
//! real local Redis and MariaDB that `infra/local/up` starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge::admission::AdmissionSettings;
use edge::instance::ReuseSettings;
use edge::mysql::MysqlSettings;
use edge::server::ServerSettings;
use edge_testkit::{TestServer, build_wasm, mysql_host, probe_application, repo_root, service_env};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const TEST_DB: &str = "ticketing_test_edge";

/// A throwaway database with the probe's table, and its URL.
async fn test_database(mysql_url: &str) -> String {
    let base = mysql_url
        .rsplit_once('/')
        .expect("a database in MYSQL_URL")
        .0;
    let pool = mysql_async::Pool::new(mysql_url);
    let mut conn = pool.get_conn().await.expect("connecting to MySQL");
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {TEST_DB}"))
        .await
        .expect("creating the test database");
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {TEST_DB}.edge_probe \
         (id BIGINT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(32) NOT NULL)"
    ))
    .await
    .expect("creating the probe table");
    drop(conn);
    pool.disconnect().await.ok();
    format!("{base}/{TEST_DB}")
}

/// The probe application (tests/fixtures/probe.toml) with its test database.
async fn probe_server(
    reuse: ReuseSettings,
    settings: ServerSettings,
    mysql: MysqlSettings,
) -> TestServer {
    let mysql_url = test_database(&service_env()["MYSQL_URL"]).await;
    let (manifest, variables) = probe_application(mysql_url);
    TestServer::serve(&manifest, &variables, reuse, settings, mysql).await
}

/// One pooled MySQL connection: every request gets the session the previous one left.
async fn one_connection_server() -> TestServer {
    let one = MysqlSettings {
        max_connections: 1,
        ..MysqlSettings::default()
    };
    probe_server(ReuseSettings::default(), ServerSettings::default(), one).await
}

async fn default_server() -> TestServer {
    probe_server(
        ReuseSettings::default(),
        ServerSettings::default(),
        MysqlSettings::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_answers_through_the_host() {
    let server = default_server().await;
    assert_eq!(server.get_json("/probe/hello").await, "hello");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_sees_spins_routing_headers_after_any_the_client_sent() {
    let server = default_server().await;
    let (status, body) = server
        .request_with(
            "GET",
            "/probe/headers?x=1",
            Bytes::new(),
            &[
                ("spin-path-info", "/forged"),
                ("spin-client-addr", "203.0.113.9:1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("json");
    let port = server.addr.port();
    let headers = &seen["headers"];
    assert_eq!(
        seen["uri"],
        format!("http://localhost:{port}/probe/headers?x=1")
    );
    let url = format!("http://localhost:{port}/probe/headers?x=1");
    assert_eq!(headers["spin-full-url"], json!([url]));
    // As under Spin: the client's copy stays, and the host's comes last.
    assert_eq!(headers["spin-path-info"], json!(["/forged", "/headers"]));
    assert_eq!(headers["spin-matched-route"], json!(["/probe/..."]));
    assert_eq!(headers["spin-component-route"], json!(["/probe"]));
    assert_eq!(headers["spin-raw-component-route"], json!(["/probe/..."]));
    assert_eq!(headers["spin-base-path"], json!(["/"]));
    let client_addr = headers["spin-client-addr"].as_array().expect("addresses");
    assert_eq!(client_addr[0], "203.0.113.9:1", "{headers}");
    assert!(
        client_addr.len() == 2
            && client_addr[1]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{headers}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_without_a_route_is_a_json_404() {
    let server = default_server().await;
    let (status, body) = server.get("/nowhere").await;
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redis_function_works_against_real_redis() {
    let server = default_server().await;
    let prefix = format!("edge-test-{}", std::process::id());
    let result = server
        .get_json(&format!("/probe/redis?prefix={prefix}"))
        .await;
    assert_eq!(result["get"], "value", "{result}");
    assert_eq!(result["missing"], true);
    assert_eq!(result["incr"], 1);
    assert_eq!(result["sadd"], 3);
    assert_eq!(result["srem"], 1);
    assert_eq!(result["smembers"], serde_json::json!(["a", "c"]));
    assert_eq!(result["evalsha"], serde_json::json!(["key1", "arg", 42]));
    // As under Spin: a server's WRONGTYPE is `other` with its text (only `sadd` maps a
    // reply of the wrong shape to `type-error`).
    let wrong_type = result["wrong_type"].as_str().unwrap_or_default();
    assert!(
        wrong_type.starts_with("Some(Error::Other(") && wrong_type.contains("WRONGTYPE"),
        "{result}"
    );
    assert_eq!(result["del"], 3);
    assert!(server.metric("edge_redis_calls_total") >= 10.0);
    assert_eq!(server.metric("edge_redis_connections"), 4.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_mysql_transaction_persists_and_a_rolled_back_one_does_not() {
    let server = default_server().await;
    let committed = server.get_json("/probe/mysql/commit").await;
    assert!(
        committed[0][0]
            .as_str()
            .is_some_and(|n| n != "DbValue::Int64(0)"),
        "{committed}"
    );
    let rolled_back = server.get_json("/probe/mysql/rollback").await;
    assert_eq!(rolled_back, serde_json::json!([["DbValue::Int64(0)"]]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_inside_a_transaction_is_rolled_back() {
    let server = default_server().await;
    for _ in 0..3 {
        server.get_json("/probe/mysql/abandon").await;
    }
    // The pooled connections come back reset: nothing of the open transactions survives,
    // and the next guest does not inherit them.
    assert_eq!(
        server.get_json("/probe/mysql/count?label=abandoned").await,
        0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guests_session_settings_and_variables_do_not_reach_the_next_guest() {
    let server = one_connection_server().await;
    // Carried: a guest setting the same value finds it in effect, and the host sent neither
    // its SET nor a restore (the server's count of SETs on the session stands still).
    let set = server.get_json("/probe/mysql/session/set").await;
    let again = server.get_json("/probe/mysql/session/set-again").await;
    let once_more = server.get_json("/probe/mysql/session/set-again").await;
    assert_eq!(again[0], set[0], "the same connection");
    assert_eq!(
        again[1],
        serde_json::json!(["DbValue::Str(\"7\")"]),
        "{again}"
    );
    assert_eq!(once_more[1], again[1]);
    assert_eq!(once_more[2], again[2], "no SET sent: {again} {once_more}");
    // Restored: the session variable goes back to the server's default before a guest that
    // does not set it runs anything.
    let shown = server.get_json("/probe/mysql/session/show").await;
    assert_eq!(shown[0], set[0], "the same connection");
    assert_eq!(
        shown[1], shown[2],
        "lock wait timeout back to the default: {shown}"
    );
    // Reset: a user variable only a reset can remove (`@leak IS NULL` is 1).
    let set = server.get_json("/probe/mysql/session/uservar").await;
    let shown = server.get_json("/probe/mysql/session/show").await;
    assert_eq!(shown[0], set[0], "the same connection");
    assert_eq!(
        shown[3],
        serde_json::json!(["DbValue::Int32(1)"]),
        "{shown}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_waiting_for_the_only_connection_get_it_when_its_session_is_parked() {
    // Every request leaves a setting, so its session is parked instead of going back to the
    // pool; the requests queued for the one connection must still get it, one after another,
    // instead of timing out on the pool.
    let server = one_connection_server().await;
    let started = std::time::Instant::now();
    let answers =
        futures::future::join_all((0..16).map(|_| server.get_json("/probe/mysql/session/set")))
            .await;
    assert!(answers.iter().all(|answer| answer[0] == answers[0][0]));
    assert!(
        started.elapsed() < MysqlSettings::default().acquire_timeout,
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_parameters_of_every_type_round_trip() {
    let server = default_server().await;
    let result = server.get_json("/probe/mysql/types").await;
    let values: Vec<&str> = result["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        values,
        [
            "DbValue::Int64(1)",
            "DbValue::Int64(-8)",
            "DbValue::Int64(-16)",
            "DbValue::Int64(-32)",
            "DbValue::Int64(-64)",
            "DbValue::Uint64(8)",
            "DbValue::Uint64(16)",
            "DbValue::Uint64(32)",
            "DbValue::Uint64(18446744073709551615)",
            "DbValue::Floating32(1.5)",
            "DbValue::Floating64(2.25)",
            "DbValue::Str(\"text é\")",
            "DbValue::Binary([0, 255])",
            "DbValue::DbNull",
        ],
        "{result}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mysql_column_type_reads_as_spin_reads_it() {
    let server = default_server().await;
    let read = server.get_json("/probe/mysql/columns").await;
    let refused = "MysqlError(Error::ValueConversionFailed";
    // Column or expression, its WIT type, and the value a guest gets (or the error that
    // fails the query). Spin 4.1 answers the same (e2e/tests/api/differential.rs checks it).
    let expected = [
        ("c_tinyint", "Int8", "DbValue::Int8(-8)"),
        ("c_boolean", "Int8", "DbValue::Int8(1)"),
        ("c_utinyint", "Uint8", "DbValue::Uint8(200)"),
        ("c_smallint", "Int16", "DbValue::Int16(-16)"),
        ("c_mediumint", "Int32", "DbValue::Int32(-24)"),
        ("c_int", "Uint32", "DbValue::Uint32(32)"),
        ("c_bigint", "Int64", "DbValue::Int64(-64)"),
        ("c_float", "Floating32", "DbValue::Floating32(1.5)"),
        ("c_double", "Floating64", "DbValue::Floating64(2.25)"),
        ("c_decimal", "Other", refused),
        ("c_year", "Other", refused),
        ("c_char", "Str", "DbValue::Str(\"abc\")"),
        ("c_varchar", "Str", "DbValue::Str(\"é\")"),
        ("c_varchar_bin", "Binary", "DbValue::Binary([98, 105, 110])"),
        ("c_binary", "Binary", "DbValue::Binary([0, 255])"),
        ("c_varbinary", "Binary", "DbValue::Binary([0, 255])"),
        ("c_text", "Str", "DbValue::Str(\"text\")"),
        ("c_mediumtext", "Str", "DbValue::Str(\"medium\")"),
        ("c_blob", "Binary", "DbValue::Binary([0, 255])"),
        ("c_enum", "Str", "DbValue::Str(\"B\")"),
        ("c_set", "Str", "DbValue::Str(\"x,y\")"),
        ("c_bit", "Other", refused),
        ("c_date", "Other", refused),
        ("c_time", "Other", refused),
        ("c_datetime", "Other", refused),
        ("c_timestamp", "Other", refused),
        (
            "CAST(c_datetime AS CHAR)",
            "Str",
            "DbValue::Str(\"2026-11-21 12:34:56.789\")",
        ),
        (
            "DATE_FORMAT(c_datetime, '%Y-%m-%d %H:%i:%s.%f')",
            "Str",
            "DbValue::Str(\"2026-11-21 12:34:56.789000\")",
        ),
        ("CAST(c_decimal AS CHAR)", "Str", "DbValue::Str(\"12.50\")"),
        ("SUM(c_int)", "Other", refused),
        (
            "CAST(SUM(c_int) AS UNSIGNED)",
            "Uint64",
            "DbValue::Uint64(32)",
        ),
        ("COUNT(*)", "Int64", "DbValue::Int64(1)"),
        ("GROUP_CONCAT(c_int)", "Str", "DbValue::Str(\"32\")"),
        ("NULL", "Other", "DbValue::DbNull"),
        ("c_enum = 'B'", "Int32", "DbValue::Int32(1)"),
    ];
    for (read_as, ty, value) in expected {
        assert_eq!(
            read[read_as],
            json!([format!("DbDataType::{ty}"), value]),
            "{read_as}"
        );
    }
    assert_eq!(read.as_object().map(|o| o.len()), Some(expected.len()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_rows_stream_to_the_guest() {
    let server = default_server().await;
    assert_eq!(
        server.get_json("/probe/mysql/stream?n=100").await["rows"],
        100
    );
    let error = server.get_json("/probe/mysql/error").await;
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("QueryFailed")),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_resolve_from_templates_env_and_defaults() {
    let server = default_server().await;
    let value = |name: &str| {
        let server = &server;
        let path = format!("/probe/var?name={name}");
        async move { server.get_json(&path).await }
    };
    assert_eq!(value("greeting").await["value"], "hello, world");
    assert_eq!(value("api_key").await["value"], "s3cret");
    assert!(
        value("nope").await["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Error::Undefined"))
    );
    assert!(
        value("Bad-Name").await["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Error::InvalidName"))
    );
    server.stop().await;
}

/// Asserts that a probe answer's `result` text names `expected` (an error the guest got).
fn assert_result_names(answer: &Value, expected: &str) {
    assert!(
        answer["result"]
            .as_str()
            .is_some_and(|r| r.contains(expected)),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_allowed_outbound_hosts_are_error_values_not_traps() {
    let server = default_server().await;
    let env = service_env();
    let redis = server
        .get_json(&format!("/locked/redis-open?address={}", env["REDIS_URL"]))
        .await;
    assert_eq!(redis["result"], "Err(Error::InvalidAddress)");
    let mysql = server.get_json("/locked/mysql-open").await;
    assert_result_names(&mysql, "not permitted");
    let http = server
        .get_json("/locked/outbound?url=http://127.0.0.1:9/x")
        .await;
    assert_result_names(&http, "HttpRequestDenied");
    // The allowed component reaches the same Redis.
    let allowed = server
        .get_json(&format!("/probe/redis-open?address={}", env["REDIS_URL"]))
        .await;
    assert_eq!(allowed["result"], "Ok(())");
    server.stop().await;
}

/// A keep-alive HTTP server on port 0 answering `ok`, and how many connections it accepted.
async fn counting_http_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"ok"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_reuse_one_pooled_connection_and_failures_are_error_values() {
    let server = default_server().await;
    let (address, accepted) = counting_http_server().await;
    for _ in 0..5 {
        let answer = server
            .get_json(&format!("/probe/outbound?url=http://{address}/x"))
            .await;
        assert_eq!(answer["result"], "status 200 OK: ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "five sequential requests travel on one kept-alive connection"
    );
    // A port nobody listens on: the guest gets the error code, not a trap.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let refused = server
        .get_json(&format!("/probe/outbound?url=http://{closed}/x"))
        .await;
    assert_result_names(&refused, "ConnectionRefused");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_500_without_internal_detail() {
    let server = default_server().await;
    let (status, body) = server.get("/probe/trap").await;
    assert_eq!(status, 500);
    assert!(!body.contains("probe was asked"), "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], "internal_error");
    // The host keeps serving.
    assert_eq!(server.get_json("/probe/hello").await, "hello");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_never_yields_is_stopped_with_a_504() {
    let reuse = ReuseSettings {
        request_timeout: Duration::from_millis(500),
        ..ReuseSettings::default()
    };
    let server = probe_server(reuse, ServerSettings::default(), MysqlSettings::default()).await;
    let started = std::time::Instant::now();
    let (status, _) = server.get("/probe/spin").await;
    assert_eq!(status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.get_json("/probe/hello").await, "hello");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_a_413_and_one_under_it_passes() {
    let settings = ServerSettings {
        max_request_body: 1024,
        ..ServerSettings::default()
    };
    let server = probe_server(ReuseSettings::default(), settings, MysqlSettings::default()).await;
    let (status, body) = server
        .request("POST", "/probe/echo", Bytes::from(vec![b'x'; 1000]))
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"length":1000}"#));
    let (status, body) = server
        .request("POST", "/probe/echo", Bytes::from(vec![b'x'; 2048]))
        .await;
    assert_eq!(status, 413);
    assert!(body.contains("payload_too_large"), "{body}");
    server.stop().await;
}

async fn instances_for_sequential_requests(reuse_count: usize, requests: usize) -> f64 {
    let reuse = ReuseSettings {
        max_requests_per_instance: reuse_count,
        ..ReuseSettings::default()
    };
    let server = probe_server(reuse, ServerSettings::default(), MysqlSettings::default()).await;
    for _ in 0..requests {
        assert_eq!(server.get_json("/probe/hello").await, "hello");
    }
    let created = server.metric("edge_instances_created_total");
    server.stop().await;
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reuse_on_one_instance_serves_many_requests() {
    assert_eq!(instances_for_sequential_requests(128, 20).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_reuse_count_of_one_every_request_gets_a_fresh_instance() {
    assert_eq!(instances_for_sequential_requests(1, 20).await, 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_own_spin_toml_serves_health_with_live_dependencies() {
    build_wasm("functions/Cargo.toml", None);
    let env = service_env();
    let variables = [
        ("SPIN_VARIABLE_REDIS_URL", env["REDIS_URL"].clone()),
        ("SPIN_VARIABLE_MYSQL_HOST", mysql_host(&env["MYSQL_URL"])),
        ("SPIN_VARIABLE_MYSQL_URL", env["MYSQL_URL"].clone()),
        ("SPIN_VARIABLE_PASS_SIGNING_KEY", "k".repeat(32)),
        ("SPIN_VARIABLE_ADMIN_KEY", "admin".to_owned()),
    ];
    let server = TestServer::serve(
        &repo_root().join("spin.toml"),
        &variables,
        ReuseSettings::default(),
        ServerSettings::default(),
        MysqlSettings::default(),
    )
    .await;
    assert_eq!(
        server.get_json("/health").await,
        serde_json::json!({ "status": "ok", "checks": { "redis": "ok", "mysql": "ok" } })
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_low_priority_component_stops_the_server_before_it_serves() {
    let settings = ServerSettings {
        low_priority_components: vec!["probe".to_owned(), "probbe".to_owned()],
        ..ServerSettings::default()
    };
    let server = probe_server(ReuseSettings::default(), settings, MysqlSettings::default()).await;
    let refused = server
        .ended()
        .await
        .expect_err("the server refused to start");
    assert!(refused.to_string().contains("probbe"), "{refused}");
}

/// The probe served with room for one request at a time and `max_wait` for a turn.
async fn one_at_a_time(max_wait: Duration) -> Arc<TestServer> {
    let settings = ServerSettings {
        admission: AdmissionSettings {
            max_concurrent: 1,
            max_waiting: 100,
            max_wait,
            ..AdmissionSettings::default()
        },
        ..ServerSettings::default()
    };
    Arc::new(probe_server(ReuseSettings::default(), settings, MysqlSettings::default()).await)
}

/// Sends `n` requests of `ms` each at once; their statuses and `Retry-After` values.
async fn at_once(server: &Arc<TestServer>, n: usize, ms: u64) -> Vec<(u16, Option<String>)> {
    let requests = (0..n).map(|_| {
        let server = server.clone();
        tokio::spawn(async move {
            let response = server
                .send("GET", &format!("/probe/sleep?ms={ms}"), Bytes::new(), &[])
                .await;
            let retry_after = response
                .headers
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            (response.status, retry_after)
        })
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|answer| answer.expect("a request task"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_concurrency_limit_wait_their_turn_instead_of_a_503() {
    let server = one_at_a_time(Duration::from_secs(5)).await;
    let answers = at_once(&server, 8, 100).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    Arc::into_inner(server).expect("one owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_start_in_time_is_a_503_with_retry_after() {
    let server = one_at_a_time(Duration::from_millis(100)).await;
    let answers = at_once(&server, 4, 500).await;
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    assert!(served >= 1, "{answers:?}");
    for (status, retry_after) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 503, "{answers:?}");
        let seconds: u64 = retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&seconds), "{answers:?}");
    }
    assert!(
        served < answers.len(),
        "someone waited past 100 ms: {answers:?}"
    );
    Arc::into_inner(server).expect("one owner").stop().await;
}
