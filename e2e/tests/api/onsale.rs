//! A scheduled on-sale through the host against real Redis: fans gather before the opening,
//! the first poll after it runs the draw, and the published draw checks out against the
//! commitment made at creation (functions/queue, the waiting-room script, core::draw); and
//! the whole on-sale, from the gathering to the waitlist's offers, with the bridge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use e2e::{App, Gateway, capped_venue, hold, pay_until_done, user};
use serde_json::{Value, json};
use ticketing_core::draw::{Commitment, DrawSeed, PublishedDraw};
use ticketing_core::ids::UserId;
use ticketing_core::time::Timestamp;

use crate::events::{Bridge, count, eventually, offer_of, offered_once};
use crate::payment::approving;
use crate::queue::{NO_LIMITS, fresh_queue, join, now_ms, status_response};

const ENTRANTS: u64 = 40;
const PRICE: u64 = 50_000;
const OPENING: u64 = 1_000_000;

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

/// The whole on-sale of issue 25 in one sitting, through edge, the bridge, the broker,
/// MariaDB and Redis, with every fan's view checked: fans gather before the opening, the
/// draw puts them in line and checks out with `draw-check` from public data alone, the first
/// fans drawn buy every seat (at most two each), the rest are told `SOLD_OUT` and join the
/// concert's waitlist, and the seats that come back (a released hold, a refund) are offered
/// to the waitlist in order, once each, while the line stays sold out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_sale_draws_its_gathered_fans_sells_out_and_offers_seats_that_come_back_to_its_waitlist_in_order()
 {
    const SEATS: usize = 4;
    const FANS: usize = 12;
    let gateway = Gateway::start(approving());
    let app = App::start(&[
        ("GATEWAY_URL", gateway.url.as_str()),
        ("QUEUE_STATUS_LIMIT_PER_USER", "0"),
        ("QUEUE_STATUS_LIMIT_PER_ADDRESS", "0"),
    ])
    .await;
    let bridge = Bridge::start().await;
    let venue = capped_venue(SEATS as u64, PRICE, 2).await;
    let queue = fresh_queue("whole-onsale");
    let settings = format!("/api/admin/queue?queueId={queue}");
    // One pass per seat at a time: a fan let in speaks for a seat until they hold it.
    let opens_at = Timestamp::from_unix_millis(now_ms() + 6_000);
    let created = put_queue(
        &app,
        &queue,
        json!({ "ratePerSec": 1000, "maxActive": SEATS, "concertId": venue.concert,
                "opensAt": opens_at.to_rfc3339() }),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let commitment = created.json()["commitment"]
        .as_str()
        .expect("a commitment")
        .to_owned();
    eventually("the bridge counts the concert's seats", async || {
        app.admin("GET", &settings, None).await.json()["holdableSeats"] == SEATS
    })
    .await;

    // Fans gather: an entry each, no place in line yet.
    let mut tickets = BTreeMap::new();
    for _ in 0..FANS {
        let fan = user(OPENING).await;
        let (status, body) = join(&app, &queue, fan).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["entry"], tickets.len() + 1, "{body}");
        tickets.insert(fan, body["token"].as_str().expect("token").to_owned());
    }
    let status = |fan: u64| {
        let (app, ticket) = (&app, tickets[&fan].clone());
        async move { status_response(app, &ticket).await.json() }
    };
    let first_fan = *tickets.keys().next().expect("a fan");
    assert_eq!(status(first_fan).await["status"], "GATHERING");
    tokio::time::sleep(Duration::from_millis(
        opens_at.unix_millis().saturating_sub(now_ms()) + 50,
    ))
    .await;

    // The opening: the first poll draws. The seed revealed keeps the commitment made at
    // creation, and the order follows from it and the entrants alone.
    let mut admitted = BTreeMap::new();
    for &fan in tickets.keys() {
        let answer = status(fan).await;
        if answer["status"] == "ACTIVE" {
            admitted.insert(fan, answer["pass"].as_str().expect("pass").to_owned());
        }
    }
    let draw = published(&app, &queue, first_fan).await;
    assert_eq!(draw.status, 200, "{}", draw.body);
    let checked = draw_check::check(&draw.body, Some(&commitment), Some(&first_fan.to_string()))
        .expect("the published draw checks out");
    assert!(checked.contains(&format!("{FANS} entrants")), "{checked}");
    let order: Vec<u64> = serde_json::from_str::<PublishedDraw>(&draw.body)
        .expect("a published draw")
        .order
        .iter()
        .map(|fan| fan.get())
        .collect();
    let (drawn_first, rest) = order.split_at(SEATS);
    assert_eq!(
        admitted.keys().copied().collect::<Vec<_>>(),
        drawn_first
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "the fans let in are the first drawn"
    );

    // They buy every seat, one each. Three pay; one only holds, for now.
    let mut paid = Vec::new();
    let mut hold_of = BTreeMap::new();
    for (&fan, seat) in drawn_first.iter().zip(&venue.seats) {
        let reservation = hold(&app, &admitted[&fan], venue.schedule, &[*seat]).await;
        hold_of.insert(fan, reservation);
    }
    for &fan in &drawn_first[..SEATS - 1] {
        let (payment, _) = pay_until_done(&app, &admitted[&fan], hold_of[&fan]).await;
        paid.push((fan, payment));
    }

    // Sold out: everyone else is told so, with the concert to find its waitlist by.
    for &fan in rest {
        eventually("a fan still in line is told SOLD_OUT", async || {
            let answer = status(fan).await;
            answer["status"] == "SOLD_OUT" && answer["concertId"] == venue.concert
        })
        .await;
    }
    // They join the concert's waitlist in the order they were drawn.
    let waitlist = format!("/api/concerts/{}/waitlist", venue.concert);
    let entry = async |ticket: &str| {
        let auth = format!("Bearer {ticket}");
        app.call("GET", &waitlist, None, &[("authorization", &auth)])
            .await
    };
    for (ahead, fan) in rest.iter().enumerate() {
        let auth = format!("Bearer {}", tickets[fan]);
        let joined = app
            .call("POST", &waitlist, None, &[("authorization", &auth)])
            .await;
        assert_eq!(joined.status, 201, "{}", joined.body);
        assert_eq!(joined.json()["ahead"], ahead, "{}", joined.body);
    }

    // Two seats come back: the holder lets theirs go, a buyer is refunded.
    let holder = drawn_first[SEATS - 1];
    e2e::release(&app, &admitted[&holder], hold_of[&holder]).await;
    let (refunded, payment) = paid[0];
    let (status_code, body) = e2e::post(
        &app,
        &format!("/api/payments/{payment}/refund"),
        &admitted[&refunded],
        None,
        json!({}),
    )
    .await;
    assert_eq!(
        (status_code, &body["status"]),
        (200, &json!("REFUNDED")),
        "{body}"
    );

    // They go to the first two on the waitlist, who pay with their tickets; nobody else is
    // offered one, and the line stays sold out while fans wait on the list.
    let mut offers = Vec::new();
    for fan in &rest[..2] {
        let offer = offer_of(&entry, &tickets[fan]).await;
        let reservation = offer["reservationId"].as_u64().expect("reservation id");
        pay_until_done(&app, &tickets[fan], reservation).await;
        offers.push(reservation);
    }
    for fan in &rest[2..] {
        let listed = entry(&tickets[fan]).await.json();
        assert_eq!(listed["state"], "WAITING", "{listed}");
    }
    let late = status(rest[FANS - SEATS - 1]).await;
    assert_eq!(late["status"], "SOLD_OUT", "{late}");

    // Every seat is sold once, to a different fan; each offer was announced and notified once.
    assert_eq!(
        count(
            "SELECT COUNT(DISTINCT r.user_id) FROM seats s JOIN reservations r \
             ON r.id = s.reservation_id AND r.status = 'CONFIRMED' \
             WHERE s.schedule_id = ? AND s.status = 'SOLD'",
            (venue.schedule,)
        )
        .await,
        SEATS as u64
    );
    for reservation in offers {
        offered_once(reservation).await;
    }
    bridge.stop().await;
    app.stop().await;
}
