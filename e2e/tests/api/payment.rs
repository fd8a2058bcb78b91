//! Balances, payments and refunds through the host against real MariaDB and Redis and the
//! payment gateway simulator (functions/payment, gateway/).

use std::collections::HashMap;
use std::sync::Arc;

use e2e::{
    App, Gateway, Venue, get, hold, key, mysql, pay, pay_until_done, post, seat_map, user, venue,
};
use mysql_async::prelude::Queryable;
use payment_gateway::Behaviour;
use serde_json::{Value, json};

const PRICE: u64 = 50_000;
const OPENING: u64 = 1_000_000;

async fn app_with(gateway: &Gateway) -> App {
    App::start(&[
        ("GATEWAY_URL", gateway.url.as_str()),
        ("GATEWAY_TIMEOUT_MS", "3000"),
        // A buyer goes back through the queue after every payment, faster than the
        // per-user abuse limits allow; those are the queue tests' business.
        ("QUEUE_JOIN_LIMIT_PER_USER", "0"),
        ("QUEUE_STATUS_LIMIT_PER_USER", "0"),
    ])
    .await
}

/// A buyer with `opening` won holding the first seat of a new venue of `seats`, through
/// queue `queue`, on an app whose gateway behaves as `behaviour`: where most payment tests
/// start: the gateway (keep it bound: dropping it kills the gateway), the app, the venue,
/// the buyer, their pass and the reservation.
struct Holding(Gateway, Arc<App>, Venue, u64, String, u64);

async fn holding(behaviour: Behaviour, seats: u64, opening: u64, queue: &str) -> Holding {
    let gateway = Gateway::start(behaviour);
    let app = Arc::new(app_with(&gateway).await);
    let venue = venue(seats, PRICE).await;
    let buyer = user(opening).await;
    let pass = app.pass(queue, buyer).await;
    let reservation = hold(&app, &pass, venue.schedule, &[venue.seats[0]]).await;
    Holding(gateway, app, venue, buyer, pass, reservation)
}

/// A gateway that approves every authorization.
pub(crate) fn approving() -> Behaviour {
    Behaviour {
        decline_rate: 0.0,
        ..Behaviour::default()
    }
}

/// A gateway that approves every authorization after `latency`.
fn approving_after(latency: std::time::Duration) -> Behaviour {
    Behaviour {
        latency,
        ..approving()
    }
}

/// A gateway that declines every authorization.
fn declining() -> Behaviour {
    Behaviour {
        decline_rate: 1.0,
        ..Behaviour::default()
    }
}

/// The books of `users` must add up, each independently of the others.
async fn assert_books_balance(users: &[u64]) {
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    for user in users {
        let row: Option<(i64, i64, i64, i64, i64, i64)> = conn
            .exec_first(
                "SELECT (SELECT amount FROM balances WHERE user_id = ?),
                        (SELECT COALESCE(SUM(amount), 0) FROM balance_ledger WHERE user_id = ?),
                        (SELECT amount FROM balance_ledger WHERE user_id = ? AND entry_type = 'OPENING'),
                        (SELECT COALESCE(SUM(amount), 0) FROM charges WHERE user_id = ?),
                        (SELECT COALESCE(SUM(amount), 0) FROM payments WHERE user_id = ?
                           AND status IN ('SUCCEEDED', 'REFUNDED')),
                        (SELECT COALESCE(SUM(amount), 0) FROM payments WHERE user_id = ?
                           AND status = 'REFUNDED')",
                (user, user, user, user, user, user),
            )
            .await
            .expect("books");
        let (balance, ledger, opening, charges, paid, refunded) = row.expect("a row");
        assert_eq!(balance, ledger, "user {user}: balance vs ledger");
        assert_eq!(
            balance,
            opening + charges - paid + refunded,
            "user {user}: opening + charges - payments + refunds"
        );
    }
}

/// Seats sold == seats of confirmed reservations == seats of succeeded payments, for the
/// schedule; and no reservation paid twice.
async fn assert_sales_agree(schedule: u64) -> u64 {
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let (sold, confirmed, paid, twice): (u64, u64, u64, u64) = conn
        .exec_first(
            "SELECT
               (SELECT COUNT(*) FROM seats WHERE schedule_id = ? AND status = 'SOLD'),
               (SELECT COUNT(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
                  WHERE r.schedule_id = ? AND r.status = 'CONFIRMED' AND rs.released_at IS NULL),
               (SELECT COUNT(*) FROM reservation_seats rs JOIN payments p ON p.reservation_id = rs.reservation_id
                  JOIN reservations r ON r.id = rs.reservation_id
                  WHERE r.schedule_id = ? AND p.status = 'SUCCEEDED' AND rs.released_at IS NULL),
               (SELECT COUNT(*) FROM (SELECT p.reservation_id FROM payments p
                  JOIN reservations r ON r.id = p.reservation_id WHERE r.schedule_id = ?
                  AND p.status IN ('SUCCEEDED', 'REFUNDED') GROUP BY p.reservation_id HAVING COUNT(*) > 1) t)",
            (schedule, schedule, schedule, schedule),
        )
        .await
        .expect("sales")
        .expect("a row");
    assert_eq!((sold, confirmed), (paid, paid), "sold, confirmed, paid");
    assert_eq!(twice, 0, "a reservation paid twice");
    sold
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_payments_with_declines_and_retries_keep_every_book_balanced() {
    let gateway = Gateway::start(Behaviour::default());
    let app = Arc::new(app_with(&gateway).await);
    const USERS: u64 = 250;
    const EACH: u64 = 20;
    let venue = venue(USERS * EACH, PRICE).await;
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(user(OPENING).await);
    }
    // Fewer buyers at once than the host has MySQL connections (64), so a slow machine
    // queues them in the test rather than timing out on the pool with 503s.
    let shopping = Arc::new(tokio::sync::Semaphore::new(48));
    let buyers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(index, &user)| {
            let app = app.clone();
            let venue = venue.clone();
            let shopping = shopping.clone();
            tokio::spawn(async move {
                let _turn = shopping.acquire().await.expect("semaphore");
                let queue = format!("pay-{}", venue.schedule);
                let mut pass = app.pass(&queue, user).await;
                // One top-up: 20 seats at 50,000 need more than the opening million.
                let (status, body) = post(
                    &app,
                    &format!("/api/users/{user}/balance/charge"),
                    &pass,
                    Some(&key()),
                    json!({ "amount": 500_000 }),
                )
                .await;
                assert_eq!(status, 201, "{body}");
                let mut declines = 0;
                let mut refunds = 0;
                for n in 0..EACH {
                    let seat = venue.seats[index * EACH as usize + n as usize];
                    let reservation = hold(&app, &pass, venue.schedule, &[seat]).await;
                    let (payment, declined) = pay_until_done(&app, &pass, reservation).await;
                    declines += declined;
                    // The payment used the pass up: back through the queue for the next.
                    let used = pass;
                    pass = app.pass(&queue, user).await;
                    assert_ne!(pass, used);
                    if n % 10 == 0 {
                        let (status, body) = post(
                            &app,
                            &format!("/api/payments/{payment}/refund"),
                            &used,
                            None,
                            json!({}),
                        )
                        .await;
                        assert_eq!((status, body["status"].clone()), (200, json!("REFUNDED")));
                        refunds += 1;
                    }
                }
                (declines, refunds)
            })
        })
        .collect();
    let (mut declines, mut refunds) = (0, 0);
    for buyer in buyers {
        let (d, r) = buyer.await.expect("buyer");
        declines += d;
        refunds += r;
    }
    let payments = USERS * EACH;
    // 5 % of 5,000 authorizations, give or take the draw.
    assert!((150..400).contains(&declines), "{declines} declines");
    assert_eq!(refunds, USERS * 2);
    assert_books_balance(&users).await;
    let sold = assert_sales_agree(venue.schedule).await;
    assert_eq!(sold, payments - refunds);
    let stats = gateway.stats().await;
    assert_eq!(
        stats.outstanding, payments,
        "every used authorization, no other: {stats:?}"
    );
    // A decline whose answer came too late shows up as a timeout on our side.
    assert!(
        u64::from(declines) <= stats.declined,
        "{declines} vs {stats:?}"
    );
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_of_one_key_debit_once() {
    let Holding(gateway, app, _venue, buyer, pass, reservation) = holding(
        approving_after(std::time::Duration::from_millis(50)),
        1,
        OPENING,
        "replay",
    )
    .await;
    let the_key = key();
    let replays: Vec<_> = (0..50)
        .map(|_| {
            let (app, pass, the_key) = (app.clone(), pass.clone(), the_key.clone());
            tokio::spawn(async move { pay(&app, &pass, reservation, &the_key).await })
        })
        .collect();
    let mut ids = HashMap::new();
    for replay in replays {
        let (status, body) = replay.await.expect("task");
        match status {
            201 => *ids.entry(body["paymentId"].as_u64()).or_insert(0) += 1,
            409 => assert_eq!(body["error"], "idempotency_in_progress", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "one payment for the key: {ids:?}");
    let (status, again) = pay(&app, &pass, reservation, &the_key).await;
    assert_eq!(status, 201);
    assert_eq!(
        Some(again["paymentId"].as_u64()),
        ids.keys().next().copied()
    );
    let (status, reused) = pay(&app, &pass, reservation + 1, &the_key).await;
    assert_eq!(
        (status, reused["error"].clone()),
        (422, json!("idempotency_key_reused"))
    );
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let debits: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM balance_ledger WHERE user_id = ? AND entry_type = 'PAYMENT'",
            (buyer,),
        )
        .await
        .expect("query")
        .unwrap_or(0);
    assert_eq!(debits, 1);
    assert_books_balance(&[buyer]).await;
    assert_eq!(gateway.stats().await.approved, 1);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_moves_nothing_and_leaves_a_failed_record() {
    let Holding(_gateway, app, _venue, buyer, pass, reservation) =
        holding(declining(), 1, OPENING, "decline").await;
    let (status, body) = pay(&app, &pass, reservation, &key()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (422, json!("payment_declined"))
    );
    let payment = body["details"]["paymentId"].as_u64().expect("payment id");
    let auth = format!("Bearer {pass}");
    let shown = get(&app, &format!("/api/payments/{payment}"), &auth).await;
    assert_eq!(shown["status"], "FAILED");
    assert_eq!(shown["failureCode"], "card_declined");
    let balance = get(&app, &format!("/api/users/{buyer}/balance"), &auth).await;
    assert_eq!(balance["balance"], OPENING);
    let held = get(&app, &format!("/api/reservations/{reservation}"), &auth).await;
    assert_eq!(
        held["status"], "HELD",
        "the user may retry while the hold lives"
    );
    assert_books_balance(&[buyer]).await;
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_gateway_mid_run_leaves_consistent_books() {
    let mut gateway = Gateway::start(Behaviour {
        decline_rate: 0.0,
        latency: std::time::Duration::from_millis(20),
        ..Behaviour::default()
    });
    let app = Arc::new(app_with(&gateway).await);
    let venue = venue(200, PRICE).await;
    let mut buyers = Vec::new();
    for _ in 0..200 {
        buyers.push(user(OPENING).await);
    }
    let mut passes = Vec::new();
    for buyer in &buyers {
        passes.push(app.pass(&format!("kill-{}", venue.schedule), *buyer).await);
    }
    let attempts: Vec<_> = passes
        .into_iter()
        .zip(venue.seats.clone())
        .map(|(pass, seat)| {
            let app = app.clone();
            let schedule = venue.schedule;
            tokio::spawn(async move {
                let reservation = hold(&app, &pass, schedule, &[seat]).await;
                pay(&app, &pass, reservation, &key()).await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    gateway.kill();
    let (mut paid, mut unavailable) = (0, 0);
    for attempt in attempts {
        let (status, body) = attempt.await.expect("task");
        match status {
            201 => paid += 1,
            503 => unavailable += 1,
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        unavailable > 0,
        "the gateway died before every payment ({paid} paid)"
    );
    assert_books_balance(&buyers).await;
    assert_eq!(assert_sales_agree(venue.schedule).await, paid);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

/// Path, token, idempotency key, body, expected status and error code.
type BadCase<'a> = (&'a str, &'a str, Option<String>, Value, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payment_and_charge_requests_get_a_json_4xx() {
    let gateway = Gateway::start(approving());
    let app = app_with(&gateway).await;
    let venue = venue(2, PRICE).await;
    let buyer = user(OPENING).await;
    let other = user(OPENING).await;
    let pass = app.pass("badpay", buyer).await;
    let other_pass = app.pass("badpay", other).await;
    let reservation = hold(&app, &pass, venue.schedule, &[venue.seats[0]]).await;
    let charge = format!("/api/users/{buyer}/balance/charge");
    let cases: Vec<BadCase> = vec![
        (
            "/api/payments",
            &pass,
            None,
            json!({ "reservationId": reservation }),
            400,
            "bad_request",
        ),
        (
            "/api/payments",
            &pass,
            Some(key()),
            json!({ "reservationId": 999_999_999 }),
            404,
            "not_found",
        ),
        (
            "/api/payments",
            &other_pass,
            Some(key()),
            json!({ "reservationId": reservation }),
            403,
            "forbidden",
        ),
        (
            "/api/payments",
            &pass,
            Some(key()),
            json!({}),
            400,
            "bad_request",
        ),
        (
            &charge,
            &pass,
            Some(key()),
            json!({ "amount": 0 }),
            400,
            "invalid_field",
        ),
        (
            &charge,
            &pass,
            Some(key()),
            json!({ "amount": -5 }),
            400,
            "invalid_field",
        ),
        (
            &charge,
            &pass,
            Some(key()),
            json!({ "amount": 1e30 }),
            400,
            "invalid_field",
        ),
        (
            &charge,
            &pass,
            Some(key()),
            json!({ "amount": 99_000_000 }),
            422,
            "limit_exceeded",
        ),
        (
            &charge,
            &other_pass,
            Some(key()),
            json!({ "amount": 5_000 }),
            403,
            "forbidden",
        ),
        (
            &charge,
            &pass,
            None,
            json!({ "amount": 5_000 }),
            400,
            "bad_request",
        ),
    ];
    for (path, token, key, body, status, code) in cases {
        let (got, reply) = post(&app, path, token, key.as_deref(), body.clone()).await;
        assert_eq!(
            (got, reply["error"].clone()),
            (status, json!(code)),
            "{path} {body}: {reply}"
        );
    }
    // A lapsed hold cannot be paid.
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    conn.exec_drop(
        "UPDATE reservations SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND WHERE id = ?",
        (reservation,),
    )
    .await
    .expect("ageing");
    let (status, body) = pay(&app, &pass, reservation, &key()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (410, json!("hold_expired"))
    );
    // The same charge key replays; another amount under it is refused. The key carries
    // quotes and a backslash: it reaches SQL as data, never as syntax.
    let the_key = format!(r#"{}'");--\"#, key());
    let charge_under_the_key = async |amount: u64| {
        post(
            &app,
            &charge,
            &pass,
            Some(&the_key),
            json!({ "amount": amount }),
        )
        .await
    };
    let (first, a) = charge_under_the_key(5_000).await;
    let (second, b) = charge_under_the_key(5_000).await;
    assert_eq!((first, second), (201, 200));
    assert_eq!(a, b);
    let (third, c) = charge_under_the_key(6_000).await;
    assert_eq!(
        (third, c["error"].clone()),
        (422, json!("idempotency_key_reused"))
    );
    assert_books_balance(&[buyer]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_credits_back_once_and_puts_the_seats_back_on_sale() {
    let Holding(_gateway, app, venue, buyer, pass, reservation) =
        holding(approving(), 2, OPENING, "refund").await;
    let (payment, _) = pay_until_done(&app, &pass, reservation).await;
    let path = format!("/api/payments/{payment}/refund");
    let refunds: Vec<_> = (0..10)
        .map(|_| {
            let (app, pass, path) = (app.clone(), pass.clone(), path.clone());
            tokio::spawn(async move { post(&app, &path, &pass, None, json!({})).await })
        })
        .collect();
    for refund in refunds {
        let (status, body) = refund.await.expect("task");
        assert_eq!(
            (status, body["status"].clone()),
            (200, json!("REFUNDED")),
            "{body}"
        );
    }
    let auth = format!("Bearer {pass}");
    let balance = get(&app, &format!("/api/users/{buyer}/balance"), &auth).await;
    assert_eq!(balance["balance"], OPENING, "paid once, refunded once");
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let (refund_lines, events): (u64, u64) = conn
        .exec_first(
            "SELECT (SELECT COUNT(*) FROM balance_ledger WHERE payment_id = ? AND entry_type = 'REFUND'),
                    (SELECT COUNT(*) FROM outbox WHERE topic = 'payment.refunded' AND event_key = ?)",
            (payment, reservation.to_string()),
        )
        .await
        .expect("query")
        .expect("row");
    assert_eq!((refund_lines, events), (1, 1));
    let seats = seat_map(&app, venue.schedule).await;
    assert_eq!(seats["availableSeats"], 2, "{seats}");
    assert_books_balance(&[buyer]).await;
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_short_of_the_price_pays_nothing_and_voids_the_authorization() {
    let Holding(gateway, app, venue, buyer, pass, reservation) =
        holding(approving(), 1, PRICE - 1, "short").await;
    let (status, body) = pay(&app, &pass, reservation, &key()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (422, json!("insufficient_balance")),
        "{body}"
    );
    let stats = gateway.stats().await;
    assert_eq!((stats.approved, stats.voided, stats.outstanding), (1, 1, 0));
    assert_books_balance(&[buyer]).await;
    assert_eq!(assert_sales_agree(venue.schedule).await, 0);
    let auth = format!("Bearer {pass}");
    let held = get(&app, &format!("/api/reservations/{reservation}"), &auth).await;
    assert_eq!(
        held["status"], "HELD",
        "the seat stays held for a top-up and retry"
    );
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_lost_from_the_hold_during_authorization_sells_and_charges_nothing() {
    let gateway = Gateway::start(Behaviour {
        decline_rate: 0.0,
        latency: std::time::Duration::from_millis(1000),
        ..Behaviour::default()
    });
    let app = Arc::new(app_with(&gateway).await);
    let venue = venue(2, PRICE).await;
    let buyer = user(OPENING).await;
    let pass = app.pass("lost-seat", buyer).await;
    let reservation = hold(&app, &pass, venue.schedule, &venue.seats).await;
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let paying = {
        let (app, pass) = (app.clone(), pass.clone());
        tokio::spawn(async move { pay(&app, &pass, reservation, &key()).await })
    };
    // While the gateway decides, one of the two seats stops being held for the reservation
    // (the reservation itself still reads HELD): the settle must see it in its locked rows.
    // Any moment before the settle will do, which is at least the gateway's latency away.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    conn.exec_drop(
        "UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL WHERE id = ?",
        (venue.seats[1],),
    )
    .await
    .expect("releasing a seat");
    let (status, body) = paying.await.expect("task");
    assert_eq!(
        (status, body["error"].clone()),
        (410, json!("hold_expired")),
        "{body}"
    );
    let (sold, still_held): (u64, u64) = conn
        .exec_first(
            "SELECT SUM(status = 'SOLD'), SUM(status = 'HELD') FROM seats WHERE schedule_id = ?",
            (venue.schedule,),
        )
        .await
        .expect("seats")
        .expect("a row");
    assert_eq!(
        (sold, still_held),
        (0, 1),
        "nothing sold, the other seat still held"
    );
    assert_books_balance(&[buyer]).await;
    assert_eq!(assert_sales_agree(venue.schedule).await, 0);
    let stats = gateway.stats().await;
    assert_eq!((stats.approved, stats.voided, stats.outstanding), (1, 1, 0));
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_left_pending_resumes_under_its_first_gateway_reference_and_charges_once() {
    let Holding(gateway, app, venue, buyer, pass, reservation) =
        holding(approving(), 1, OPENING, "resume").await;
    let key = key();
    // The settle cannot lock the balance: the gateway authorized, but nothing commits, as
    // if the app died between the authorization and the settle.
    let pool = mysql().await;
    let mut blocker = pool.get_conn().await.expect("mysql");
    blocker
        .query_drop("START TRANSACTION")
        .await
        .expect("begin");
    blocker
        .exec_drop(
            "SELECT amount FROM balances WHERE user_id = ? FOR UPDATE",
            (buyer,),
        )
        .await
        .expect("locking the balance");
    let (status, body) = pay(&app, &pass, reservation, &key).await;
    assert_eq!(status, 503, "{body}");
    blocker.query_drop("ROLLBACK").await.expect("rollback");
    let mut conn = pool.get_conn().await.expect("mysql");
    let pending: Option<(u64, String)> = conn
        .exec_first(
            "SELECT id, status FROM payments WHERE user_id = ? AND idempotency_key = ?",
            (buyer, &key),
        )
        .await
        .expect("the attempt");
    let (payment, state) = pending.expect("the attempt is recorded");
    assert_eq!(state, "PENDING");
    // Long enough ago that no request can still be working on it.
    conn.exec_drop(
        "UPDATE payments SET created_at = created_at - INTERVAL 1 HOUR WHERE id = ?",
        (payment,),
    )
    .await
    .expect("ageing the attempt");

    let (status, body) = pay(&app, &pass, reservation, &key).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["paymentId"].as_u64(), body["status"].as_str()),
        (Some(payment), Some("SUCCEEDED"))
    );
    let (status, replay) = pay(&app, &pass, reservation, &key).await;
    assert_eq!((status, &replay["paymentId"]), (201, &body["paymentId"]));
    // The resumed request asked under the first one's reference, so the gateway repeated its
    // approval instead of making a second one.
    let stats = gateway.stats().await;
    assert_eq!((stats.approved, stats.voided, stats.outstanding), (1, 0, 1));
    assert_books_balance(&[buyer]).await;
    assert_eq!(assert_sales_agree(venue.schedule).await, 1);
    Arc::into_inner(app).expect("sole owner").stop().await;
}
