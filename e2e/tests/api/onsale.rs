//! A scheduled on-sale through the host against real Redis: fans gather before the opening,
//! the first poll after it runs the draw, and the published draw checks out against the
//! commitment made at creation (functions/queue, the waiting-room script, core::draw).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use e2e::App;
use serde_json::{Value, json};
use ticketing_core::draw::{Commitment, DrawSeed, PublishedDraw};
use ticketing_core::ids::UserId;
use ticketing_core::time::Timestamp;

use crate::queue::{NO_LIMITS, fresh_queue, join, now_ms, status_response};

const ENTRANTS: u64 = 40;

async fn put_queue(app: &App, queue: &str, settings: Value) -> edge_testkit::Response {
    app.admin(
        "PUT",
        &format!("/api/admin/queue?queueId={queue}"),
        Some(&settings),
    )
    .await
}

async fn published(app: &App, queue: &str, user: u64) -> edge_testkit::Response {
    app.call(
        "GET",
        &format!("/api/queue/draw?queueId={queue}&userId={user}"),
        None,
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_who_gather_before_the_opening_are_drawn_into_line_ahead_of_latecomers_and_the_draw_checks_out()
 {
    let app = Arc::new(App::start(&NO_LIMITS).await);
    let queue = fresh_queue("onsale");
    let opens_at = Timestamp::from_unix_millis(now_ms() + 4_000);
    let created = put_queue(
        &app,
        &queue,
        json!({ "ratePerSec": 1000, "maxActive": 1000, "opensAt": opens_at.to_rfc3339() }),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let created = created.json();
    assert_eq!(created["opensAt"], opens_at.to_rfc3339());
    let commitment = Commitment::parse_hex(created["commitment"].as_str().unwrap())
        .expect("a commitment in hex");

    // The opening and the draw are fixed once the queue exists.
    let moved = put_queue(&app, &queue, json!({ "opensAt": opens_at.to_rfc3339() })).await;
    assert_eq!(moved.status, 409, "{}", moved.body);
    assert!(moved.body.contains("opensAt"), "{}", moved.body);

    // Before the opening: entries, numbered in arrival order, no positions.
    let mut entries = BTreeMap::new();
    for user in 1..=ENTRANTS {
        let (status, body) = join(&app, &queue, user).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["entry"], user, "{body}");
        assert!(body.get("position").is_none(), "{body}");
        assert_eq!(body["commitment"], commitment.to_string());
        entries.insert(user, body["token"].as_str().unwrap().to_owned());
    }
    let (again, body) = join(&app, &queue, 1).await;
    assert_eq!(again, 200, "{body}");
    assert_eq!(body["token"], entries[&1].as_str());

    let gathering = status_response(&app, &entries[&7]).await;
    assert_eq!(gathering.status, 200, "{}", gathering.body);
    let body = gathering.json();
    assert_eq!(body["status"], "GATHERING", "{body}");
    assert_eq!(body["entry"], 7);
    assert_eq!(body["entrants"], ENTRANTS);
    let poll_after = body["pollAfterMs"].as_u64().unwrap();
    assert!((1..=6_000).contains(&poll_after), "{body}");
    assert!(gathering.headers.contains_key("retry-after"));

    let before = published(&app, &queue, 7).await;
    assert_eq!(before.status, 200, "{}", before.body);
    let before: PublishedDraw = serde_json::from_str(&before.body).unwrap();
    assert_eq!(before.seed, None, "the seed stays secret until the opening");
    assert!(before.order.is_empty());

    tokio::time::sleep(Duration::from_millis(
        opens_at.unix_millis() - now_ms() + 50,
    ))
    .await;

    // A latecomer lines up behind every entrant, whoever polls first.
    let (status, late) = join(&app, &queue, 1_000).await;
    assert_eq!(status, 201, "{late}");
    assert_eq!(late["position"], ENTRANTS + 1, "{late}");

    // Every entrant polls at once: the draw runs once and places each at one position.
    let polls: Vec<_> = entries
        .iter()
        .map(|(&user, token)| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                loop {
                    let response = status_response(&app, &token).await;
                    assert_eq!(response.status, 200, "{}", response.body);
                    let body = response.json();
                    if body["status"] == "GATHERING" {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    return (user, body);
                }
            })
        })
        .collect();
    let mut drawn = BTreeMap::new();
    for poll in polls {
        let (user, body) = poll.await.unwrap();
        let position = match body["status"].as_str().unwrap() {
            "WAITING" => body["position"].as_u64().unwrap(),
            "ACTIVE" => {
                let pass = body["pass"].as_str().unwrap();
                let claims = crate::queue::pass_key()
                    .verify_any_queue(
                        pass,
                        ticketing_core::pass::TokenKind::Pass,
                        Timestamp::from_unix_millis(now_ms()),
                    )
                    .expect("a valid pass");
                claims.position.get()
            }
            other => panic!("unexpected status {other}: {body}"),
        };
        assert!(
            drawn.insert(position, user).is_none(),
            "position {position} given twice"
        );
    }
    assert_eq!(
        drawn.keys().copied().collect::<Vec<_>>(),
        (1..=ENTRANTS).collect::<Vec<_>>()
    );

    // The published draw: the seed keeps the commitment and orders the entrants exactly as
    // the queue placed them.
    let after = published(&app, &queue, 7).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        after.headers.get("cache-control").unwrap(),
        "public, max-age=3600, immutable"
    );
    let body = after.json();
    let draw: PublishedDraw = serde_json::from_str(&after.body).unwrap();
    assert_eq!(draw.check(Some(&commitment)), Ok(()));
    let placed: Vec<UserId> = drawn.values().map(|&u| UserId::new(u).unwrap()).collect();
    assert_eq!(draw.order, placed);
    let seed: DrawSeed = draw.seed.clone().unwrap();
    let everyone: Vec<UserId> = (1..=ENTRANTS).map(|u| UserId::new(u).unwrap()).collect();
    assert_eq!(seed.order(&everyone), placed);
    let rank = drawn
        .iter()
        .find(|&(_, &u)| u == 7)
        .map(|(&p, _)| p)
        .unwrap();
    assert_eq!(body["rank"], rank);

    let overview = app
        .admin("GET", &format!("/api/admin/queue?queueId={queue}"), None)
        .await
        .json();
    assert_eq!(overview["entrants"], ENTRANTS);
    assert_eq!(overview["drawn"], ENTRANTS);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_in_the_past_or_on_an_unscheduled_queue_is_refused_with_a_reason() {
    let app = App::start(&NO_LIMITS).await;
    let queue = fresh_queue("onsale-bad");
    let past = Timestamp::from_unix_millis(now_ms() - 1_000).to_rfc3339();
    let refused = put_queue(&app, &queue, json!({ "opensAt": past })).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("opensAt must be in the future"),
        "{}",
        refused.body
    );

    let created = put_queue(&app, &queue, json!({ "ratePerSec": 10 })).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.json().get("commitment").is_none());
    let no_draw = published(&app, &queue, 1).await;
    assert_eq!(no_draw.status, 404, "{}", no_draw.body);
    assert!(no_draw.body.contains("no opening time"), "{}", no_draw.body);
    app.stop().await;
}
