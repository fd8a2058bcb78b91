//! What the seats and payment components write to the outbox reaches its effects through
//! the Kafka bridge (bridge/), against the real broker: a payment ranks its concert and
//! notifies the buyer, a refund takes both back, and a hold nobody pays is ended by the
//! sweeper, its seat back on the map.

use std::time::{Duration, Instant};

use crate::payment::approving;
use e2e::{App, Gateway, hold, mysql, pay_until_done, post, release, user, venue};
use edge_testkit::service_env;
use mysql_async::prelude::Queryable;
use serde_json::json;
use ticketing_core::ranking::{ALL_TIME_KEY, daily_key};
use ticketing_core::sale::Stock;
use ticketing_core::time::Timestamp;
use ticketing_core::waitlist::OfferPolicy;
use tokio::net::TcpListener;

const PRICE: u64 = 50_000;
const OPENING: u64 = 1_000_000;

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Polls `check` until it holds, for at most 60 s.
pub(crate) async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn seats_ranked(concert: u64) -> (Option<f64>, Option<f64>) {
    let mut redis = redis::Client::open(e2e::redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let all: Option<f64> = redis::cmd("ZSCORE")
        .arg(ALL_TIME_KEY)
        .arg(concert)
        .query_async(&mut redis)
        .await
        .expect("ZSCORE");
    let today: Option<f64> = redis::cmd("ZSCORE")
        .arg(daily_key(now()))
        .arg(concert)
        .query_async(&mut redis)
        .await
        .expect("ZSCORE");
    (all, today)
}

pub(crate) async fn count(sql: &str, params: impl Into<mysql_async::Params> + Send) -> u64 {
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let n: Option<u64> = conn.exec_first(sql, params).await.expect(sql);
    drop(conn);
    pool.disconnect().await.ok();
    n.unwrap_or(0)
}

/// A bridge in this process, on its own topics (a namespace of this run). One at a time:
/// with two bridges of different namespaces joining their consumer groups on the local
/// broker at once, one join sometimes stalled past the tests' minute (1 run in 3).
pub(crate) struct Bridge {
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<()>,
    _alone: tokio::sync::MutexGuard<'static, ()>,
}

static ONE_BRIDGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Bridge {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A bridge whose local configuration `configure` adjusts first.
    pub(crate) async fn start_with(configure: impl FnOnce(&mut ticketing_bridge::Config)) -> Self {
        let alone = ONE_BRIDGE.lock().await;
        let mut config = ticketing_bridge::Config::local(
            &e2e::mysql_url().await,
            &e2e::redis_url(),
            &service_env()["KAFKA_BROKERS"],
        );
        configure(&mut config);
        config.namespace = format!("e2e{}-{}.", std::process::id(), now().unix_millis());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let run = tokio::spawn(async move {
            ticketing_bridge::run(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("bridge run");
        });
        Self {
            stop,
            run,
            _alone: alone,
        }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.run.await.expect("bridge task");
        drop(self._alone);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_refunds_and_lapsed_holds_reach_their_effects_through_the_bridge() {
    let gateway = Gateway::start(approving());
    let app = App::start(&[
        ("GATEWAY_URL", gateway.url.as_str()),
        ("QUEUE_JOIN_LIMIT_PER_USER", "0"),
        ("QUEUE_STATUS_LIMIT_PER_USER", "0"),
    ])
    .await;
    let bridge = Bridge::start().await;

    let venue = venue(3, PRICE).await;
    let buyer = user(OPENING).await;
    let pass = app.pass("events", buyer).await;
    let bought = hold(&app, &pass, venue.schedule, &[venue.seats[0]]).await;
    let (payment, _) = pay_until_done(&app, &pass, bought).await;
    eventually("the payment ranks its concert", async || {
        seats_ranked(venue.concert).await == (Some(1.0), Some(1.0))
    })
    .await;
    let notified = "SELECT COUNT(*) FROM notifications WHERE payment_id = ? AND kind = ?";
    eventually("the buyer is notified of the payment", async || {
        count(notified, (payment, "PAYMENT_COMPLETED")).await == 1
    })
    .await;

    let (status, body) = post(
        &app,
        &format!("/api/payments/{payment}/refund"),
        &pass,
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually("the refund takes the seat out of the ranking", async || {
        seats_ranked(venue.concert).await == (Some(0.0), Some(0.0))
    })
    .await;
    eventually("the buyer is notified of the refund", async || {
        count(notified, (payment, "PAYMENT_REFUNDED")).await == 1
    })
    .await;

    // A hold nobody pays: its time runs out (moved into the past here, as the clock would).
    let holder = user(OPENING).await;
    let pass = app.pass("events", holder).await;
    let lapsing = hold(&app, &pass, venue.schedule, &[venue.seats[1]]).await;
    let map = format!("/api/schedules/{}/seats", venue.schedule);
    let before = app.call("GET", &map, None, &[]).await.json();
    assert_eq!(before["availableSeats"], 2, "{before}");
    let pool = mysql().await;
    let mut conn = pool.get_conn().await.expect("mysql");
    let past = now()
        .saturating_sub(Duration::from_secs(1))
        .to_sql_datetime();
    conn.exec_drop(
        "UPDATE reservations SET expires_at = ? WHERE id = ?",
        (&past, lapsing),
    )
    .await
    .expect("lapse the reservation");
    conn.exec_drop(
        "UPDATE seats SET held_until = ? WHERE reservation_id = ?",
        (&past, lapsing),
    )
    .await
    .expect("lapse its seat");
    drop(conn);
    pool.disconnect().await.ok();
    let expired = "SELECT COUNT(*) FROM reservations WHERE id = ? AND status = 'EXPIRED'";
    eventually("the sweeper ends the lapsed hold", async || {
        count(expired, (lapsing,)).await == 1
    })
    .await;
    // No one asked for the seat, so only the sweeper can have freed it; the cached map
    // was invalidated, so the very next read shows it.
    let after = app.call("GET", &map, None, &[]).await.json();
    assert_eq!(after["availableSeats"], 3, "{after}");
    let announced = "SELECT COUNT(*) FROM outbox \
                     WHERE topic = 'reservation.expired' AND event_key = ? AND sent_at IS NOT NULL";
    eventually("reservation.expired is relayed, once", async || {
        count(announced, (lapsing.to_string(),)).await == 1
    })
    .await;

    bridge.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_sale_tells_waiting_fans_and_admits_again_when_a_seat_comes_back() {
    let app = App::start(&[]).await;
    let bridge = Bridge::start().await;
    let venue = venue(2, PRICE).await;
    let queue = format!("sellout-{}", venue.concert);
    let settings = format!("/api/admin/queue?queueId={queue}");
    let selling = json!({ "ratePerSec": 100000, "maxActive": 1000000, "concertId": venue.concert });
    let configured = app.admin("PUT", &settings, Some(&selling)).await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    assert_eq!(configured.json()["concertId"], venue.concert);

    // One fan holds both seats: none is open to a hold, so the concert is sold out.
    let buyer = user(OPENING).await;
    let pass = app.pass(&queue, buyer).await;
    let held = hold(&app, &pass, venue.schedule, &venue.seats).await;
    eventually("the bridge counts the concert sold out", async || {
        app.admin("GET", &settings, None).await.json()["holdableSeats"] == 0
    })
    .await;

    let ticket = new_fan_ticket(&app, &queue).await;
    for _ in 0..3 {
        let answer = crate::queue::status_response(&app, &ticket).await;
        let body = answer.json();
        assert_eq!(body["status"], "SOLD_OUT", "nobody is admitted: {body}");
        assert_eq!(body["ahead"], 0, "{body}");
        assert!(
            body["pollAfterMs"].as_u64().expect("a pause") >= 1_000,
            "{body}"
        );
        assert!(answer.headers.contains_key("retry-after"), "{body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // The holder lets the seats go: they are open again, and admission resumes.
    release(&app, &pass, held).await;
    eventually(
        "the waiting fan is admitted once seats came back",
        async || crate::queue::status_response(&app, &ticket).await.json()["status"] == "ACTIVE",
    )
    .await;
    // The admitted fan speaks for one of the two seats until they hold one: the counts (one
    // a second) leave one to admit for, before their hold and after it.
    let holdable = async || app.admin("GET", &settings, None).await.json()["holdableSeats"].clone();
    tokio::time::sleep(Stock::COUNT_EVERY * 3).await;
    assert_eq!(holdable().await, 1);
    let admitted = crate::queue::status_response(&app, &ticket).await.json();
    let admitted = admitted["pass"].as_str().expect("a pass").to_owned();
    hold(&app, &admitted, venue.schedule, &venue.seats[..1]).await;
    tokio::time::sleep(Stock::COUNT_EVERY * 3).await;
    assert_eq!(
        holdable().await,
        1,
        "the seat held is taken, its fan chooses no more"
    );
    bridge.stop().await;
    app.stop().await;
}

/// The waitlist of a sold-out concert, end to end: fans told SOLD_OUT join it in order; a
/// seat that comes back is offered to the first, as a hold with the offer's short TTL; the
/// offer not taken lapses and passes to the second, who pays it with their queue ticket;
/// every offer is announced once and notified once; and with the list through, the queue
/// admits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_concerts_waitlist_offers_returning_seats_in_order_and_passes_on_offers_lapsed_or_declined()
 {
    let gateway = Gateway::start(approving());
    let app = App::start(&[("GATEWAY_URL", gateway.url.as_str())]).await;
    let bridge = Bridge::start_with(|config| {
        config.waitlist.offer = OfferPolicy::new(Duration::from_secs(3)).expect("a valid TTL");
    })
    .await;
    let venue = venue(2, PRICE).await;
    let concert = venue.concert;
    let queue = format!("waitlist-{concert}");
    let settings = format!("/api/admin/queue?queueId={queue}");
    let selling = json!({ "ratePerSec": 100000, "maxActive": 1000000, "concertId": concert });
    let configured = app.admin("PUT", &settings, Some(&selling)).await;
    assert_eq!(configured.status, 200, "{}", configured.body);
    let waitlist = format!("/api/concerts/{concert}/waitlist");
    let join = async |ticket: &str| {
        let auth = format!("Bearer {ticket}");
        app.call("POST", &waitlist, None, &[("authorization", &auth)])
            .await
    };
    let entry = async |ticket: &str| {
        let auth = format!("Bearer {ticket}");
        app.call("GET", &waitlist, None, &[("authorization", &auth)])
            .await
    };
    let ticket = async |queue: &str| new_fan_ticket(&app, queue).await;

    // Not sold out yet: the fan belongs in the line. And only a queue selling the concert
    // leads to its waitlist.
    let early = ticket(&queue).await;
    let refused = join(&early).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.json()["error"], "invalid_state");
    let elsewhere = ticket("default").await;
    let refused = join(&elsewhere).await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // One fan holds both seats, one hold each: sold out.
    let buyer = user(OPENING).await;
    let pass = app.pass(&queue, buyer).await;
    let first_seat = hold(&app, &pass, venue.schedule, &[venue.seats[0]]).await;
    let second_seat = hold(&app, &pass, venue.schedule, &[venue.seats[1]]).await;
    eventually("the bridge counts the concert sold out", async || {
        app.admin("GET", &settings, None).await.json()["holdableSeats"] == 0
    })
    .await;

    // Three fans told SOLD_OUT join the list, in this order; joining again keeps the place.
    let (first, second, third) = (
        ticket(&queue).await,
        ticket(&queue).await,
        ticket(&queue).await,
    );
    for fan in [&first, &second, &third] {
        let status = crate::queue::status_response(&app, fan).await.json();
        assert_eq!(status["status"], "SOLD_OUT", "{status}");
        assert_eq!(
            status["concertId"], concert,
            "the answer names the waitlist: {status}"
        );
    }
    let joined = join(&first).await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.json()["state"], "WAITING");
    assert_eq!(joined.json()["ahead"], 0);
    for (fan, ahead) in [(&second, 1), (&third, 2)] {
        let joined = join(fan).await;
        assert_eq!(joined.status, 201, "{}", joined.body);
        assert_eq!(joined.json()["ahead"], ahead, "{}", joined.body);
    }
    let again = join(&first).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.json()["ahead"],
        0,
        "the first place is kept: {}",
        again.body
    );
    // A ticket pays only an offer: the buyer's hold is not one.
    let (status, body) = e2e::pay(&app, &first, first_seat, &e2e::key()).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("token_wrong_kind")),
        "{body}"
    );

    // The first seat comes back: it goes to the first fan on the list, not to the line.
    release(&app, &pass, first_seat).await;
    let offered = offer_of(&entry, &first).await;
    assert_eq!(offered["seats"][0]["seatId"], venue.seats[0], "{offered}");
    assert_eq!(offered["status"], "HELD");
    assert_eq!(entry(&second).await.json()["state"], "WAITING");
    let status = crate::queue::status_response(&app, &second).await.json();
    assert_eq!(
        status["status"], "SOLD_OUT",
        "the seat went to the list: {status}"
    );

    // The first fan lets the offer lapse: it passes on to the second, who declines it with
    // the same ticket (not the buyer's hold, which is no offer of theirs).
    let passed_on = offer_of(&entry, &second).await;
    assert_eq!(
        passed_on["seats"][0]["seatId"], venue.seats[0],
        "{passed_on}"
    );
    let lapsed = entry(&first).await.json();
    assert_eq!(lapsed["offer"]["status"], "EXPIRED", "{lapsed}");
    let second_offer = passed_on["reservationId"].as_u64().expect("reservation id");
    let decline = async |ticket: &str, reservation: u64| {
        let auth = format!("Bearer {ticket}");
        let path = format!("/api/reservations/{reservation}");
        app.call("DELETE", &path, None, &[("authorization", &auth)])
            .await
    };
    let refused = decline(&second, second_seat).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let declined = decline(&second, second_offer).await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    assert_eq!(declined.json()["status"], "CANCELLED", "{}", declined.body);

    // Declined, it goes on at once to the third fan, who pays it with their ticket.
    let passed_on = offer_of(&entry, &third).await;
    assert_eq!(
        passed_on["seats"][0]["seatId"], venue.seats[0],
        "{passed_on}"
    );
    let offer = passed_on["reservationId"].as_u64().expect("reservation id");
    let (payment, _) = pay_until_done(&app, &third, offer).await;
    assert!(payment > 0);
    let paid = entry(&third).await.json();
    assert_eq!(paid["offer"]["status"], "CONFIRMED", "{paid}");

    // Each offer was announced once and notified once.
    let first_offer = lapsed["offer"]["reservationId"].as_u64().expect("id");
    for reservation in [first_offer, second_offer, offer] {
        offered_once(reservation).await;
    }

    // The list is through: the next seat back goes to the line again.
    release(&app, &pass, second_seat).await;
    eventually("the queue admits again", async || {
        crate::queue::status_response(&app, &early).await.json()["status"] == "ACTIVE"
    })
    .await;
    bridge.stop().await;
    app.stop().await;
}

/// The waitlist offer `reservation` was announced by exactly one `waitlist.offered` event and
/// is (soon) notified exactly once.
pub(crate) async fn offered_once(reservation: u64) {
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM outbox WHERE topic = 'waitlist.offered' AND event_key = ?",
            (reservation.to_string(),)
        )
        .await,
        1,
        "offer {reservation} announced once"
    );
    eventually("the offer is notified once", async || {
        count(
            "SELECT COUNT(*) FROM notifications WHERE kind = 'WAITLIST_OFFERED' AND reservation_id = ?",
            (reservation,),
        )
        .await
            == 1
    })
    .await;
}

/// The queue ticket of a new fan who joins `queue`.
async fn new_fan_ticket(app: &App, queue: &str) -> String {
    let joined = app
        .call(
            "POST",
            "/api/queue/tokens",
            Some(&json!({ "userId": user(OPENING).await, "queueId": queue })),
            &[],
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    joined.json()["token"].as_str().expect("token").to_owned()
}

/// The seat offered to the fan of `ticket`, once the bridge made the offer.
pub(crate) async fn offer_of<F: AsyncFn(&str) -> edge_testkit::Response>(
    entry: &F,
    ticket: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = entry(ticket).await.json();
        if body["state"] == "OFFERED" && body["offer"]["status"] == "HELD" {
            return body["offer"].clone();
        }
        assert!(Instant::now() < deadline, "never offered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
