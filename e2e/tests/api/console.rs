//! What the fan's page and the operator's console read: the pages themselves, the queue
//! list with its admission counts, the schedules' seats and sales, the event pipeline.

use std::time::Duration;

use e2e::{App, venue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::queue::{fresh_queue, join};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_with_their_types_a_strict_policy_and_revalidation() {
    let app = App::start(&[]).await;
    for (path, content_type, marker) in [
        ("/", "text/html; charset=utf-8", "/assets/fan.js"),
        ("/console", "text/html; charset=utf-8", "/assets/console.js"),
        ("/assets/fan.js", "text/javascript; charset=utf-8", "import"),
        ("/assets/api.js", "text/javascript; charset=utf-8", "export"),
        (
            "/assets/console.js",
            "text/javascript; charset=utf-8",
            "import",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", "{"),
    ] {
        let page = app.call("GET", path, None, &[]).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.headers["content-type"], content_type, "{path}");
        assert_eq!(page.headers["cache-control"], "no-cache", "{path}");
        assert_eq!(page.headers["x-content-type-options"], "nosniff", "{path}");
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{path}: {policy}");
        assert!(page.body.contains(marker), "{path} lacks {marker}");
        // A copy the browser holds is confirmed without the body.
        let etag = page.headers["etag"].to_str().unwrap().to_owned();
        let again = app
            .call("GET", path, None, &[("if-none-match", &etag)])
            .await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty(), "{path}");
    }
    let missing = app.call("GET", "/assets/nothing.js", None, &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    let post = app.call("POST", "/", Some(&json!({})), &[]).await;
    assert_eq!(post.status, 405);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_queues_with_what_they_admitted_and_lost() {
    let app = App::start(&[]).await;
    let queue = fresh_queue("console");
    let configured = app
        .admin(
            "PUT",
            &format!("/api/admin/queue?queueId={queue}"),
            Some(&json!({ "ratePerSec": 1000, "maxActive": 2, "idleTimeoutSeconds": 10 })),
        )
        .await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    let mut tickets = Vec::new();
    for user in 1..=3 {
        let (status, joined) = join(&app, &queue, user).await;
        assert_eq!(status, 201, "{joined}");
        tickets.push(format!("Bearer {}", joined["token"].as_str().unwrap()));
    }
    // A round after a second of tokens admits the first two (the cap); the third waits.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for ticket in &tickets {
        let status = app
            .call(
                "GET",
                "/api/queue/status",
                None,
                &[("authorization", ticket)],
            )
            .await;
        assert_eq!(status.status, 200, "{}", status.body);
    }
    // A registered queue whose data expired is not listed, and leaves the registry.
    let mut redis = redis::Client::open(e2e::redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let gone = fresh_queue("console-gone");
    let _: () = redis::cmd("SADD")
        .arg("waiting-rooms")
        .arg(&gone)
        .query_async(&mut redis)
        .await
        .expect("sadd");
    let listed = app.admin("GET", "/api/admin/queues", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let queues = listed.json()["queues"].as_array().unwrap().clone();
    let mine: &Value = queues
        .iter()
        .find(|q| q["queueId"] == queue.as_str())
        .unwrap_or_else(|| panic!("{queue} not listed in {queues:?}"));
    assert_eq!(mine["admittedTotal"], 2, "{mine}");
    assert_eq!(mine["abandonedTotal"], 0, "{mine}");
    assert_eq!(mine["waiting"], 1, "{mine}");
    assert!(!queues.iter().any(|q| q["queueId"] == gone.as_str()));
    let registered: bool = redis::cmd("SISMEMBER")
        .arg("waiting-rooms")
        .arg(&gone)
        .query_async(&mut redis)
        .await
        .expect("sismember");
    assert!(!registered, "{gone} still registered");

    let wrong = app
        .call(
            "GET",
            "/api/admin/queues",
            None,
            &[("authorization", "Bearer not-the-admin-key-at-all")],
        )
        .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_shows_as_taken_on_the_map_and_as_held_in_the_console() {
    let app = App::start(&[]).await;
    let hall = venue(4, 30_000).await;
    let pass = app
        .pass(&fresh_queue("console-seats"), hall.schedule * 10_000 + 1)
        .await;
    let held = app
        .call(
            "POST",
            "/api/reservations",
            Some(&json!({ "scheduleId": hall.schedule, "seatIds": [hall.seats[1]] })),
            &[("authorization", &format!("Bearer {pass}"))],
        )
        .await;
    assert_eq!(held.status, 201, "{}", held.body);
    let map = app
        .call(
            "GET",
            &format!("/api/schedules/{}/seats", hall.schedule),
            None,
            &[],
        )
        .await
        .json();
    let ids = |list: &Value| -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|seat| seat["seatId"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&map["takenSeats"]), [hall.seats[1]]);
    assert_eq!(
        ids(&map["seats"]),
        [hall.seats[0], hall.seats[2], hall.seats[3]]
    );

    let sales = app
        .admin(
            "GET",
            &format!("/api/admin/schedules?concertId={}", hall.concert),
            None,
        )
        .await;
    assert_eq!(sales.status, 200, "{}", sales.body);
    let schedules = sales.json()["schedules"].clone();
    assert_eq!(
        schedules,
        json!([{
            "scheduleId": hall.schedule,
            "concertId": hall.concert,
            "title": format!("Concert {}", hall.concert),
            "startsAt": schedules[0]["startsAt"],
            "totalSeats": 4, "free": 3, "held": 1, "sold": 0, "salesWon": 0,
        }])
    );
    let bad = app
        .admin("GET", "/api/admin/schedules?concertId=x", None)
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    app.stop().await;
}

/// Serves `body` as the bridge's `/metrics` to every connection.
async fn bridge_metrics(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 2048];
                let _ = socket.read(&mut request).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_the_outbox_backlog_and_consumer_lag_from_the_bridge() {
    let bridge = bridge_metrics(
        "# HELP bridge_outbox_backlog Outbox rows not yet delivered to Kafka.\n\
         # TYPE bridge_outbox_backlog gauge\n\
         bridge_outbox_backlog 17\n\
         bridge_outbox_oldest_age_seconds 2.5\n\
         bridge_consumer_lag{group=\"ranking\",topic=\"payment.completed\",partition=\"1\"} 42\n\
         bridge_produced_total 9\n",
    )
    .await;
    let app = App::start(&[("BRIDGE_URL", &bridge)]).await;
    let pipeline = app.admin("GET", "/api/admin/pipeline", None).await;
    assert_eq!(pipeline.status, 200, "{}", pipeline.body);
    let body = pipeline.json();
    assert_eq!(body["outboxBacklog"], 17);
    assert_eq!(body["outboxOldestAgeSeconds"], 2.5);
    assert_eq!(
        body["consumerLag"],
        json!([{ "group": "ranking", "topic": "payment.completed", "partition": 1, "lag": 42 }])
    );
    app.stop().await;

    // A bridge that does not answer is the console's 503, not an idle pipeline.
    let app = App::start(&[]).await;
    let down = app.admin("GET", "/api/admin/pipeline", None).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.json()["error"], "service_unavailable");
    app.stop().await;
}
