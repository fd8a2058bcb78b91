//! Concerts, seat maps and holds through the host against real MariaDB and Redis
//! (functions/seats).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{App, Venue, capped_venue, mysql, venue};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use ticketing_core::cache::{STALE_GRACE_MS, rebuild_lease_key, schedules_key, seat_map_keys};
use ticketing_core::ids::{ConcertId, ScheduleId};
use ticketing_core::ranking::RankingWindow;

const PRICE: u64 = 50_000;

async fn reserve(app: &App, pass: &str, schedule: u64, seats: &[u64]) -> (u16, Value) {
    let auth = format!("Bearer {pass}");
    let response = app
        .call(
            "POST",
            "/api/reservations",
            Some(&json!({ "scheduleId": schedule, "seatIds": seats })),
            &[("authorization", &auth)],
        )
        .await;
    (response.status, response.json())
}

async fn seat_map(app: &App, schedule: u64) -> Vec<u64> {
    seat_map_from_cache(app, schedule).await.0
}

/// The free seats, and where the component got them from (its `x-cache` header).
async fn seat_map_from_cache(app: &App, schedule: u64) -> (Vec<u64>, String) {
    let response = app
        .call(
            "GET",
            &format!("/api/schedules/{schedule}/seats"),
            None,
            &[],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let source = response.headers["x-cache"]
        .to_str()
        .expect("x-cache")
        .to_owned();
    let seats = response.json()["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["seatId"].as_u64().expect("seat id"))
        .collect();
    (seats, source)
}

async fn schedules_of(app: &App, concert: u64) -> Value {
    schedules_from_cache(app, concert).await.0
}

/// The concert's schedule list and where the component got it (its `x-cache` header).
async fn schedules_from_cache(app: &App, concert: u64) -> (Value, String) {
    let response = app
        .call(
            "GET",
            &format!("/api/concerts/{concert}/schedules"),
            None,
            &[],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let source = response.headers["x-cache"]
        .to_str()
        .expect("x-cache")
        .to_owned();
    (response.json(), source)
}

/// Database facts about a schedule after a run.
struct Holdings {
    held_seats: u64,
    held_reservations: u64,
    seats_in_two_live_reservations: u64,
    seats_whose_owner_disagrees: u64,
}

async fn holdings(schedule: u64) -> Holdings {
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let held_seats: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = ? AND status = 'HELD'",
            (schedule,),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    let held_reservations: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservations WHERE schedule_id = ? AND status = 'HELD'",
            (schedule,),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    let seats_in_two_live_reservations: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM (SELECT rs.seat_id FROM reservation_seats rs \
             JOIN seats s ON s.id = rs.seat_id WHERE s.schedule_id = ? AND rs.released_at IS NULL \
             GROUP BY rs.seat_id HAVING COUNT(*) > 1) twice",
            (schedule,),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    let seats_whose_owner_disagrees: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM seats s WHERE s.schedule_id = ? AND s.status = 'HELD' \
             AND NOT EXISTS (SELECT 1 FROM reservation_seats rs JOIN reservations r \
               ON r.id = rs.reservation_id WHERE rs.seat_id = s.id AND rs.released_at IS NULL \
               AND r.id = s.reservation_id AND r.status = 'HELD')",
            (schedule,),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    drop(conn);
    pool.disconnect().await.ok();
    Holdings {
        held_seats,
        held_reservations,
        seats_in_two_live_reservations,
        seats_whose_owner_disagrees,
    }
}

/// How often one rushing user retries a 503 before the test calls it a failure.
const OVERLOAD_RETRIES: u32 = 5;

/// 1,000 users, each wanting one seat chosen by `pick`, all at once.
async fn rush(app: &Arc<App>, venue: &Venue, pick: fn(usize) -> usize) -> (usize, usize) {
    let queue = format!("rush-{}", venue.schedule);
    let mut passes = Vec::new();
    for user in 0..1000u64 {
        passes.push(app.pass(&queue, venue.schedule * 10_000 + user).await);
    }
    let attempts: Vec<_> = passes
        .into_iter()
        .enumerate()
        .map(|(i, pass)| {
            let app = app.clone();
            let seat = venue.seats[pick(i)];
            let schedule = venue.schedule;
            tokio::spawn(async move {
                let mut retries = 0;
                loop {
                    let (status, body) = reserve(&app, &pass, schedule, &[seat]).await;
                    // A thousand requests at once can outwait the host's MySQL pool on a
                    // busy machine; it sheds them with a clean 503 that wrote nothing, and a
                    // client tries again after its Retry-After (1 s).
                    if status != 503 || retries == OVERLOAD_RETRIES {
                        break (status, body);
                    }
                    assert_eq!(body["error"], "service_unavailable", "{body}");
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            })
        })
        .collect();
    let (mut held, mut refused) = (0, 0);
    for attempt in attempts {
        let (status, body) = attempt.await.expect("task");
        match status {
            201 => held += 1,
            409 => {
                assert_eq!(body["error"], "seats_unavailable", "{body}");
                assert!(body["details"]["seatIds"].is_array(), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (held, refused)
}

/// A rush on a 50-seat schedule ends with exactly `winners` holds and clean 409s for
/// everyone else, and the database agrees: no seat in two live reservations, every held
/// seat owned by a live hold, the seat map short of exactly the held seats.
async fn rush_holds_exactly(pick: fn(usize) -> usize, winners: usize) {
    let app = Arc::new(App::start(&[]).await);
    let venue = venue(50, PRICE).await;
    let (held, refused) = rush(&app, &venue, pick).await;
    assert_eq!((held, refused), (winners, 1000 - winners));
    let facts = holdings(venue.schedule).await;
    assert_eq!(facts.held_seats, winners as u64);
    assert_eq!(facts.held_reservations, winners as u64);
    assert_eq!(facts.seats_in_two_live_reservations, 0);
    assert_eq!(facts.seats_whose_owner_disagrees, 0);
    assert_eq!(seat_map(&app, venue.schedule).await.len(), 50 - winners);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_rushing_fifty_seats_hold_exactly_fifty() {
    rush_holds_exactly(|i| i % 50, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_wanting_the_same_five_seats_hold_exactly_five() {
    rush_holds_exactly(|i| i % 5, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seat_map_reflects_a_hold_and_a_release_on_the_next_read() {
    let app = App::start(&[]).await;
    let venue = venue(10, PRICE).await;
    let before = seat_map_from_cache(&app, venue.schedule).await;
    assert_eq!(before, (venue.seats.clone(), "miss".to_owned()));
    let cached = seat_map_from_cache(&app, venue.schedule).await;
    assert_eq!(
        cached,
        (venue.seats.clone(), "hit".to_owned()),
        "all ten, cached now"
    );
    let pass = app.pass("map", venue.schedule * 10_000 + 1).await;
    let (status, held) = reserve(&app, &pass, venue.schedule, &venue.seats[2..4]).await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["amount"], 2 * PRICE);
    assert_eq!(held["status"], "HELD");
    assert_eq!(held["seats"][0]["label"], "A3");
    let after: HashSet<u64> = seat_map(&app, venue.schedule).await.into_iter().collect();
    assert_eq!(after.len(), 8);
    assert!(!after.contains(&venue.seats[2]) && !after.contains(&venue.seats[3]));

    let schedules = schedules_of(&app, venue.concert).await;
    assert_eq!(
        schedules["schedules"][0]["availableSeats"], 8,
        "{schedules}"
    );

    let path = format!("/api/reservations/{}", held["reservationId"]);
    let auth = format!("Bearer {pass}");
    let cancelled = app
        .call("DELETE", &path, None, &[("authorization", &auth)])
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "CANCELLED");
    assert_eq!(seat_map(&app, venue.schedule).await, venue.seats);
    let again = app
        .call("DELETE", &path, None, &[("authorization", &auth)])
        .await;
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (409, json!("invalid_state"))
    );

    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let events: Vec<String> = conn
        .exec(
            "SELECT topic FROM outbox WHERE event_key = ? ORDER BY id",
            (held["reservationId"].to_string(),),
        )
        .await
        .expect("outbox");
    assert_eq!(events, ["reservation.held", "reservation.released"]);
    app.stop().await;
}

/// Moves a hold and its seats' expiry into the past, as if five minutes went by.
async fn lapse(conn: &mut mysql_async::Conn, reservation: u64) {
    conn.exec_drop(
        "UPDATE reservations SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND WHERE id = ?",
        (reservation,),
    )
    .await
    .expect("ageing the reservation");
    conn.exec_drop(
        "UPDATE seats SET held_until = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND WHERE reservation_id = ?",
        (reservation,),
    )
    .await
    .expect("ageing the seats");
}

/// A reservation's status, and how many `reservation.expired` events it has in the outbox.
async fn expiry_of(conn: &mut mysql_async::Conn, reservation: u64) -> (String, u64) {
    let status: String = conn
        .exec_first(
            "SELECT status FROM reservations WHERE id = ?",
            (reservation,),
        )
        .await
        .expect("query")
        .expect("row");
    let events: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM outbox WHERE topic = 'reservation.expired' AND event_key = ?",
            (reservation.to_string(),),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    (status, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_hold_frees_its_seats_for_the_next_buyer() {
    let app = App::start(&[]).await;
    let venue = venue(4, PRICE).await;
    let first = app.pass("lapse", venue.schedule * 10_000 + 1).await;
    let (status, old) = reserve(&app, &first, venue.schedule, &venue.seats[..2]).await;
    assert_eq!(status, 201, "{old}");
    let second = app.pass("lapse", venue.schedule * 10_000 + 2).await;
    let (status, body) = reserve(&app, &second, venue.schedule, &venue.seats[1..3]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["details"]["seatIds"], json!([venue.seats[1]]));

    // Five minutes pass: move the hold into the past.
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let old_id = old["reservationId"].as_u64().expect("id");
    lapse(&mut conn, old_id).await;

    let (status, new) = reserve(&app, &second, venue.schedule, &venue.seats[1..3]).await;
    assert_eq!(status, 201, "{new}");
    let (old_status, expired) = expiry_of(&mut conn, old_id).await;
    assert_eq!(old_status, "EXPIRED");
    let facts = holdings(venue.schedule).await;
    assert_eq!(
        facts.held_seats, 2,
        "the old hold's other seat is free again"
    );
    assert_eq!(facts.seats_in_two_live_reservations, 0);
    assert_eq!(facts.seats_whose_owner_disagrees, 0);
    assert_eq!(expired, 1);
    let auth = format!("Bearer {first}");
    let shown = app
        .call(
            "GET",
            &format!("/api/reservations/{old_id}"),
            None,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(shown.json()["status"], "EXPIRED");
    app.stop().await;
}

/// The seats of `user` still live in holds or purchases of `concert`, by the database.
async fn seats_owned(user: u64, concert: u64) -> u64 {
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let owned: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservation_seats rs JOIN reservations r \
             ON r.id = rs.reservation_id JOIN schedules sc ON sc.id = r.schedule_id \
             WHERE r.user_id = ? AND sc.concert_id = ? AND rs.released_at IS NULL \
             AND r.status IN ('HELD', 'CONFIRMED')",
            (user, concert),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    drop(conn);
    pool.disconnect().await.ok();
    owned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fan_holding_from_many_tabs_at_once_gets_no_more_seats_than_the_concert_allows() {
    let app = Arc::new(App::start(&[]).await);
    let venue = capped_venue(6, PRICE, 4).await;
    // A second schedule of the same concert: the cap spans the concert, not a date.
    let later = venue.schedule + 1;
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    conn.exec_drop(
        "INSERT INTO schedules (id, concert_id, starts_at, total_seats) \
         VALUES (?, ?, UTC_TIMESTAMP(3) + INTERVAL 37 DAY, 6)",
        (later, venue.concert),
    )
    .await
    .expect("a second schedule");
    conn.exec_batch(
        "INSERT INTO seats (id, schedule_id, seat_no, label, price) VALUES (?, ?, ?, ?, ?)",
        (1..=6u64).map(|n| (later * 10_000 + n, later, n, format!("A{n}"), PRICE)),
    )
    .await
    .expect("its seats");
    drop(conn);
    pool.disconnect().await.ok();

    let fan = venue.schedule * 10_000 + 1;
    let pass = app.pass("capped", fan).await;
    let wanted: Vec<(u64, u64)> = venue
        .seats
        .iter()
        .map(|&seat| (venue.schedule, seat))
        .chain((1..=6).map(|n| (later, later * 10_000 + n)))
        .collect();
    let attempts: Vec<_> = wanted
        .into_iter()
        .map(|(schedule, seat)| {
            let (app, pass) = (app.clone(), pass.clone());
            tokio::spawn(async move { reserve(&app, &pass, schedule, &[seat]).await })
        })
        .collect();
    let (mut held, mut capped) = (0, 0);
    for attempt in attempts {
        let (status, body) = attempt.await.expect("task");
        match status {
            201 => held += 1,
            422 => {
                assert_eq!(body["error"], "limit_exceeded", "{body}");
                assert_eq!(body["details"]["cap"], 4, "{body}");
                assert_eq!(body["details"]["owned"], 4, "{body}");
                capped += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((held, capped), (4, 8));
    assert_eq!(seats_owned(fan, venue.concert).await, 4);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_at_the_cap_holds_again_once_their_hold_lapsed_and_the_hold_ends_the_lapsed_one() {
    let app = App::start(&[]).await;
    let venue = capped_venue(8, PRICE, 4).await;
    let fan = venue.schedule * 10_000 + 1;
    let pass = app.pass("capped-lapse", fan).await;
    let (status, old) = reserve(&app, &pass, venue.schedule, &venue.seats[..4]).await;
    assert_eq!(status, 201, "{old}");
    let (status, body) = reserve(&app, &pass, venue.schedule, &venue.seats[4..5]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["details"],
        json!({ "cap": 4, "owned": 4, "requested": 1 })
    );

    // The hold lapses before any sweeper sees it.
    let old_id = old["reservationId"].as_u64().expect("id");
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    lapse(&mut conn, old_id).await;

    let (status, new) = reserve(&app, &pass, venue.schedule, &venue.seats[4..8]).await;
    assert_eq!(status, 201, "{new}");
    let (old_status, expired) = expiry_of(&mut conn, old_id).await;
    assert_eq!(old_status, "EXPIRED", "the new hold ended the lapsed one");
    assert_eq!(expired, 1);
    assert_eq!(seats_owned(fan, venue.concert).await, 4);
    assert_eq!(seat_map(&app, venue.schedule).await.len(), 4);
    drop(conn);
    pool.disconnect().await.ok();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reservations_get_a_json_4xx_that_names_the_problem() {
    let app = App::start(&[]).await;
    let venue = venue(6, PRICE).await;
    let other = venue_other().await;
    let pass = app.pass("bad", venue.schedule * 10_000 + 1).await;
    let s = &venue.seats;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "scheduleId": 999_999_999, "seatIds": [s[0]] }),
            404,
            "not_found",
        ),
        (
            json!({ "scheduleId": venue.schedule, "seatIds": [] }),
            400,
            "invalid_field",
        ),
        (
            json!({ "scheduleId": venue.schedule, "seatIds": [s[0], s[0]] }),
            400,
            "invalid_field",
        ),
        (
            json!({ "scheduleId": venue.schedule, "seatIds": &s[..5] }),
            422,
            "limit_exceeded",
        ),
        (
            json!({ "scheduleId": venue.schedule, "seatIds": [other.seats[0]] }),
            400,
            "invalid_field",
        ),
        (
            json!({ "scheduleId": venue.schedule, "seatIds": [1] }),
            404,
            "not_found",
        ),
        (json!({ "scheduleId": venue.schedule }), 400, "bad_request"),
        (
            json!({ "scheduleId": "x", "seatIds": [s[0]] }),
            400,
            "invalid_field",
        ),
        (
            json!({ "scheduleId": venue.schedule, "seatIds": [s[0]], "userId": 7 }),
            400,
            "bad_request",
        ),
    ];
    let auth = format!("Bearer {pass}");
    for (body, status, code) in cases {
        let response = app
            .call(
                "POST",
                "/api/reservations",
                Some(&body),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert_eq!(response.json()["error"], code, "{body}: {}", response.body);
    }
    let body = json!({ "scheduleId": venue.schedule, "seatIds": [s[0]] });
    let response = app
        .call("POST", "/api/reservations", Some(&body), &[])
        .await;
    assert_eq!(response.status, 401);
    let ticket = app
        .call(
            "POST",
            "/api/queue/tokens",
            Some(&json!({ "userId": 5, "queueId": "bad" })),
            &[],
        )
        .await
        .json();
    let with_ticket = format!("Bearer {}", ticket["token"].as_str().expect("token"));
    let response = app
        .call(
            "POST",
            "/api/reservations",
            Some(&body),
            &[("authorization", &with_ticket)],
        )
        .await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (401, json!("token_wrong_kind"))
    );
    for path in [
        "/api/schedules/0/seats",
        "/api/concerts/abc",
        "/api/reservations/x",
    ] {
        let response = app
            .call("GET", path, None, &[("authorization", &auth)])
            .await;
        assert_eq!(response.status, 400, "{path}: {}", response.body);
    }
    let response = app
        .call("GET", "/api/schedules/999999999/seats", None, &[])
        .await;
    assert_eq!(response.status, 404);
    app.stop().await;
}

async fn venue_other() -> Venue {
    venue(2, PRICE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_may_see_or_cancel_a_reservation() {
    let app = App::start(&[]).await;
    let venue = venue(2, PRICE).await;
    let owner = app.pass("owner", venue.schedule * 10_000 + 1).await;
    let stranger = app.pass("owner", venue.schedule * 10_000 + 2).await;
    let (_, held) = reserve(&app, &owner, venue.schedule, &venue.seats[..1]).await;
    let path = format!("/api/reservations/{}", held["reservationId"]);
    let as_stranger = format!("Bearer {stranger}");
    for method in ["GET", "DELETE"] {
        let response = app
            .call(method, &path, None, &[("authorization", &as_stranger)])
            .await;
        assert_eq!(
            (response.status, response.json()["error"].clone()),
            (403, json!("forbidden"))
        );
    }
    let response = app
        .call("PUT", &path, None, &[("authorization", &as_stranger)])
        .await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (405, json!("method_not_allowed"))
    );
    assert_eq!(response.headers["allow"], "GET, DELETE");
    let response = app.call("POST", "/api/concerts", None, &[]).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.headers["allow"], "GET");
    let as_owner = format!("Bearer {owner}");
    let shown = app
        .call("GET", &path, None, &[("authorization", &as_owner)])
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["status"], "HELD");
    let missing = app
        .call(
            "GET",
            "/api/reservations/999999999",
            None,
            &[("authorization", &as_owner)],
        )
        .await;
    assert_eq!(missing.status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_reads_concerts_schedules_and_the_ranking() {
    let app = App::start(&[]).await;
    let venue = venue(3, PRICE).await;
    let list = app.call("GET", "/api/concerts", None, &[]).await.json();
    // The list is cached for up to five minutes, so a concert made by this very test may
    // not be in it yet; the single concert is read through.
    assert!(list["concerts"].is_array(), "{list}");
    let one = app
        .call(
            "GET",
            &format!("/api/concerts/{}", venue.concert),
            None,
            &[],
        )
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["title"], format!("Concert {}", venue.concert));
    assert_eq!(
        one.json()["seatsPerFan"],
        Value::Null,
        "no cap: {}",
        one.body
    );
    let capped = capped_venue(1, PRICE, 4).await;
    let path = format!("/api/concerts/{}", capped.concert);
    assert_eq!(
        app.call("GET", &path, None, &[]).await.json()["seatsPerFan"],
        4
    );
    let missing = app.call("GET", "/api/concerts/999999999", None, &[]).await;
    assert_eq!(missing.status, 404);
    let schedules = schedules_of(&app, venue.concert).await;
    assert_eq!(schedules["schedules"][0]["scheduleId"], venue.schedule);
    assert_eq!(schedules["schedules"][0]["totalSeats"], 3);

    let mut redis = tests_redis().await;
    // Only this test touches the ranking sets of the tests' Redis database: start empty.
    let now = ticketing_core::time::Timestamp::from_system_time(std::time::SystemTime::now());
    let mut keys = RankingWindow::Days(7).keys(now);
    keys.push(ticketing_core::ranking::ALL_TIME_KEY.to_owned());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .expect("del");
    let empty = app
        .call("GET", "/api/concerts/ranking?window=all", None, &[])
        .await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json()["ranking"], json!([]));
    let today = ticketing_core::ranking::daily_key(now);
    for key in [ticketing_core::ranking::ALL_TIME_KEY, today.as_str()] {
        let _: () = redis::cmd("ZADD")
            .arg(key)
            .arg(7)
            .arg(venue.concert)
            .arg(3)
            .arg(venue.concert + 1_000_000)
            .query_async(&mut redis)
            .await
            .expect("zadd");
    }
    for window in ["all", "3d", "7d"] {
        let ranking = app
            .call(
                "GET",
                &format!("/api/concerts/ranking?window={window}"),
                None,
                &[],
            )
            .await
            .json();
        let first = &ranking["ranking"][0];
        assert_eq!(first["concertId"], venue.concert, "{ranking}");
        assert_eq!(first["rank"], 1);
        assert!(first["seatsSold"].as_u64().expect("sold") >= 7, "{ranking}");
    }
    let bad = app
        .call("GET", "/api/concerts/ranking?window=30d", None, &[])
        .await;
    assert_eq!(bad.status, 400);
    app.stop().await;
}

async fn tests_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(e2e::redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

/// Marks the rebuild of `schedule`'s seat map as taken by another reader for `ms`.
async fn lease_seat_map_rebuild(
    redis: &mut redis::aio::MultiplexedConnection,
    schedule: u64,
    ms: u64,
) {
    let (map, _) = seat_map_keys(ScheduleId::new(schedule).expect("schedule"));
    let _: () = redis::cmd("SET")
        .arg(rebuild_lease_key(&map))
        .arg("1")
        .arg("PX")
        .arg(ms)
        .query_async(redis)
        .await
        .expect("set lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_a_seat_a_fresh_seat_map_shows_taken_is_refused_without_asking_mysql() {
    let app = App::start(&[]).await;
    let venue = venue(3, PRICE).await;
    assert_eq!(seat_map(&app, venue.schedule).await.len(), 3);
    // The cached map is made to show the first seat taken, which MySQL still has free: only
    // a refusal read from the map can name it.
    let mut redis = tests_redis().await;
    let (map_key, _) = seat_map_keys(ScheduleId::new(venue.schedule).expect("schedule"));
    let cached: String = redis::cmd("GET")
        .arg(&map_key)
        .query_async(&mut redis)
        .await
        .expect("cached map");
    let mut map: Value = serde_json::from_str(&cached).expect("map json");
    map["seats"]
        .as_array_mut()
        .expect("seats")
        .retain(|s| s["seatId"] != json!(venue.seats[0]));
    let _: () = redis::cmd("SET")
        .arg(&map_key)
        .arg(map.to_string())
        .arg("KEEPTTL")
        .query_async(&mut redis)
        .await
        .expect("rewrite the map");

    let pass = app.pass("onmap", venue.schedule * 10_000 + 1).await;
    let (status, body) = reserve(&app, &pass, venue.schedule, &venue.seats[..2]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["details"]["seatIds"], json!([venue.seats[0]]));
    assert_eq!(holdings(venue.schedule).await.held_seats, 0);

    // Seats the map shows free, and any hold once the map is gone, are MySQL's to decide.
    let (status, body) = reserve(&app, &pass, venue.schedule, &venue.seats[1..2]).await;
    assert_eq!(status, 201, "{body}");
    let _: () = redis::cmd("DEL")
        .arg(&map_key)
        .query_async(&mut redis)
        .await
        .expect("drop the map");
    let other = app.pass("onmap", venue.schedule * 10_000 + 2).await;
    let (status, body) = reserve(&app, &other, venue.schedule, &venue.seats[..1]).await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_cold_seat_map_takes_the_rebuild_in_flight_instead_of_querying_mysql() {
    let app = Arc::new(App::start(&[]).await);
    let venue = venue(10, PRICE).await;
    let mut redis = tests_redis().await;
    lease_seat_map_rebuild(&mut redis, venue.schedule, 5_000).await;
    let reader = tokio::spawn({
        let app = app.clone();
        async move { seat_map_from_cache(&app, venue.schedule).await }
    });
    // The rebuilder stores its map a moment later; it differs from the database on purpose
    // (one seat, where MySQL has ten), so the answer shows where the reader got it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (map, _) = seat_map_keys(ScheduleId::new(venue.schedule).expect("schedule"));
    let rebuilt = json!({
        "scheduleId": venue.schedule, "concertId": venue.concert, "totalSeats": 10,
        "availableSeats": 1,
        "seats": [{ "seatId": venue.seats[0], "seatNo": 1, "label": "A1", "price": PRICE }],
    });
    let _: () = redis::cmd("SET")
        .arg(&map)
        .arg(rebuilt.to_string())
        .query_async(&mut redis)
        .await
        .expect("set map");
    assert_eq!(
        reader.await.expect("reader"),
        (vec![venue.seats[0]], "shared".to_owned())
    );
    Arc::into_inner(app).expect("one app").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_leaves_the_schedule_list_served_stale_while_another_reader_rebuilds_it() {
    let app = App::start(&[]).await;
    let venue = venue(10, PRICE).await;
    let (listed, _) = schedules_from_cache(&app, venue.concert).await;
    assert_eq!(listed["schedules"][0]["availableSeats"], 10, "{listed}");
    let pass = app.pass("stale", venue.schedule * 10_000 + 1).await;
    let (status, held) = reserve(&app, &pass, venue.schedule, &venue.seats[..2]).await;
    assert_eq!(status, 201, "{held}");

    // Mid-sale, a reader finds another one rebuilding the list: it is answered at once with
    // the list from before the hold, not made to wait for MySQL.
    let mut redis = tests_redis().await;
    let lease = rebuild_lease_key(&schedules_key(
        ConcertId::new(venue.concert).expect("concert"),
    ));
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("1")
        .arg("PX")
        .arg(5_000)
        .query_async(&mut redis)
        .await
        .expect("set lease");
    let started = Instant::now();
    let (stale, source) = schedules_from_cache(&app, venue.concert).await;
    let waited = started.elapsed();
    assert_eq!(
        (
            stale["schedules"][0]["availableSeats"].clone(),
            source.as_str()
        ),
        (json!(10), "stale"),
        "{stale}"
    );
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");

    // The rebuilder done, the next reader rebuilds from MySQL and the list counts the hold.
    let _: () = redis::cmd("DEL")
        .arg(&lease)
        .query_async(&mut redis)
        .await
        .expect("end lease");
    let (fresh, source) = schedules_from_cache(&app, venue.concert).await;
    assert_eq!(
        (
            fresh["schedules"][0]["availableSeats"].clone(),
            source.as_str()
        ),
        (json!(8), "miss"),
        "{fresh}"
    );
    app.stop().await;
}

/// An app and a venue whose cached seat map expires in `ms` and lists only the first seat,
/// where MySQL has all ten, so an answer shows whether it came from the cache.
async fn venue_with_cached_first_seat(ms: u64) -> (App, Venue, redis::aio::MultiplexedConnection) {
    let app = App::start(&[]).await;
    let venue = venue(10, PRICE).await;
    let mut redis = tests_redis().await;
    let (key, _) = seat_map_keys(ScheduleId::new(venue.schedule).expect("schedule"));
    let map = json!({
        "scheduleId": venue.schedule, "concertId": venue.concert, "totalSeats": 10,
        "availableSeats": 1,
        "seats": [{ "seatId": venue.seats[0], "seatNo": 1, "label": "A1", "price": PRICE }],
    });
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(map.to_string())
        .arg("PX")
        .arg(ms)
        .query_async(&mut redis)
        .await
        .expect("set map");
    (app, venue, redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_map_past_its_ttl_is_answered_at_once_while_another_reader_rebuilds_it() {
    // 5 s left of the stored expiry: inside the grace, so past its time to live.
    let (app, venue, mut redis) = venue_with_cached_first_seat(5_000).await;
    lease_seat_map_rebuild(&mut redis, venue.schedule, 5_000).await;
    let started = Instant::now();
    assert_eq!(
        seat_map_from_cache(&app, venue.schedule).await,
        (vec![venue.seats[0]], "stale".to_owned())
    );
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_that_takes_the_rebuild_of_a_stale_seat_map_answers_from_mysql() {
    let (app, venue, _redis) = venue_with_cached_first_seat(5_000).await;
    assert_eq!(
        seat_map_from_cache(&app, venue.schedule).await,
        (venue.seats.clone(), "miss".to_owned())
    );
    // The rebuilt map is fresh again: the next reader hits it.
    assert_eq!(
        seat_map_from_cache(&app, venue.schedule).await,
        (venue.seats.clone(), "hit".to_owned())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_map_within_its_ttl_is_a_hit() {
    let (app, venue, _redis) = venue_with_cached_first_seat(10_000 + STALE_GRACE_MS).await;
    assert_eq!(
        seat_map_from_cache(&app, venue.schedule).await,
        (vec![venue.seats[0]], "hit".to_owned())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_reader_vanished_holds_others_back_about_a_second_at_most() {
    let app = App::start(&[]).await;
    let venue = venue(10, PRICE).await;
    let mut redis = tests_redis().await;
    lease_seat_map_rebuild(&mut redis, venue.schedule, 60_000).await;
    let started = Instant::now();
    assert_eq!(
        seat_map_from_cache(&app, venue.schedule).await,
        (venue.seats.clone(), "miss".to_owned())
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "waited {waited:?} for a lease nobody will end"
    );
    app.stop().await;
}

/// The app with MySQL at an address where nothing listens.
async fn app_without_mysql() -> App {
    App::start(&[
        (
            "MYSQL_URL",
            "mysql://ticketing:ticketing@127.0.0.1:1/ticketing",
        ),
        ("MYSQL_HOST", "mysql://127.0.0.1:1"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_that_find_mysql_down_halve_their_queues_admission_until_it_recovers() {
    let app = app_without_mysql().await;
    let queue = format!("strain-{}", std::process::id());
    let share = async || {
        let response = app
            .admin("GET", &format!("/api/admin/queue?queueId={queue}"), None)
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()["admissionSharePermille"]
            .as_u64()
            .expect("share")
    };
    let pass = app.pass(&queue, 7_700_001).await;
    assert_eq!(share().await, 1000);
    // One overload shows in many requests at once: reports within a second halve it once.
    for _ in 0..3 {
        let (status, body) = reserve(&app, &pass, 101, &[1_010_001]).await;
        assert_eq!(status, 503, "{body}");
    }
    assert_eq!(share().await, 500);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = reserve(&app, &pass, 101, &[1_010_001]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(share().await, 250);
    // Quiet: after a second without reports, 100 per mille back each second.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(share().await >= 350);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_unreachable_is_a_json_503() {
    let app = app_without_mysql().await;
    let response = app.call("GET", "/api/concerts/1", None, &[]).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.json()["error"], "service_unavailable");
    app.stop().await;
}
