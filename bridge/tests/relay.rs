//! The bridge against the real local services: MariaDB, Redis and the tansu broker that
//! `infra/local/up` starts. Each test has its own database, Redis database and Kafka
//! namespace; tests that pause the broker run alone.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use support::{
    InProcess, Scratch, assert_effects_exact, audit_topics, get, histogram, now, payment_events,
    quantile, service, wait_for_effects,
};
use ticketing_core::events::Topic;
use tokio::sync::RwLock;

/// Tests that pause the broker hold this exclusively; the others share it.
static BROKER: RwLock<()> = RwLock::const_new(());

const PAYMENT_TOPICS: [Topic; 2] = [Topic::PaymentCompleted, Topic::NotificationRequest];

/// Every event of `expected` reached Kafka at least once; returns how many copies beyond
/// one the topics hold (redeliveries the consumers had to absorb).
async fn assert_none_lost_in_kafka(scratch: &Scratch, events: usize) -> u32 {
    let seen = audit_topics(scratch, &PAYMENT_TOPICS).await;
    assert_eq!(seen.len(), events, "events missing from Kafka");
    seen.values().map(|copies| copies - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_thousand_outbox_rows_reach_their_effects_exactly_once() {
    let _broker = BROKER.read().await;
    let scratch = Scratch::new("fifty", 10).await;
    // 40,000 rows waiting before the bridge starts: the relay's throughput.
    let (backlog, mut expected) = payment_events(1, 40_000);
    scratch.insert_outbox(&backlog).await;
    let bridge = InProcess::start(scratch.config()).await;
    let started = Instant::now();
    while scratch.unsent().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "relay too slow"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = started.elapsed();
    wait_for_effects(&scratch, &expected, Duration::from_secs(120)).await;
    let effects = started.elapsed();

    // 10,000 more written while it runs, 100 every 100 ms: the lag from commit to effect.
    let lag_before = histogram(bridge.admin, "bridge_effect_lag_seconds").await;
    for tick in 0..100 {
        let (events, more) = payment_events(1_000_000 + tick * 100, 100);
        scratch.insert_outbox(&events).await;
        expected.merge(&more);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_effects(&scratch, &expected, Duration::from_secs(60)).await;
    let lag_after = histogram(bridge.admin, "bridge_effect_lag_seconds").await;

    assert_effects_exact(&scratch, &expected).await;
    assert_eq!(bridge.metric("bridge_produced_total").await, 50_000.0);
    let duplicates = assert_none_lost_in_kafka(&scratch, 50_000).await;
    eprintln!(
        "relay: 40,000 rows in {drain:.2?} = {:.0} events/s; all effects after {effects:.2?}; \
         steady 1,000 events/s: commit-to-effect lag p50 <= {:.3}s, p95 <= {:.3}s, p99 <= {:.3}s; \
         {duplicates} redelivered copies in Kafka",
        40_000.0 / drain.as_secs_f64(),
        quantile(&lag_before, &lag_after, 0.50),
        quantile(&lag_before, &lag_after, 0.95),
        quantile(&lag_before, &lag_after, 0.99),
    );
    assert!(
        quantile(&lag_before, &lag_after, 0.95) <= 1.0,
        "effects lag behind"
    );
    bridge.stop().await;
}

/// Pauses the broker (SIGSTOP: it keeps its memory-only data) and resumes it when dropped,
/// so a failing test never leaves it paused.
struct PausedBroker(String);

impl PausedBroker {
    fn pause() -> Self {
        let file = support::repo_root().join(".state/kafka/pid");
        let pid = std::fs::read_to_string(&file).expect("the broker's pid file");
        let pid = pid.trim().to_owned();
        signal("-STOP", &pid);
        Self(pid)
    }
}

impl Drop for PausedBroker {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, pid: &str) {
    let status = Command::new("kill")
        .args([which, pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {which} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_twenty_second_broker_outage_mid_stream_loses_nothing() {
    let _broker = BROKER.write().await;
    let scratch = Scratch::new("outage", 11).await;
    let mut config = scratch.config();
    config.relay.delivery_timeout = Duration::from_secs(3);
    config.relay.max_backoff = Duration::from_secs(2);
    let bridge = InProcess::start(config).await;

    // A steady stream, 250 events/s for 40 s; the broker stops from second 10 to 30.
    let writer = {
        let scratch = Scratch {
            pool: mysql_async::Pool::new(scratch.mysql_url.as_str()),
            mysql_url: scratch.mysql_url.clone(),
            redis_url: scratch.redis_url.clone(),
            namespace: scratch.namespace.clone(),
        };
        tokio::spawn(async move {
            let mut expected = support::Expected::default();
            for tick in 0..200 {
                let (events, more) = payment_events(1 + tick * 50, 50);
                scratch.insert_outbox(&events).await;
                expected.merge(&more);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            expected
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let paused = PausedBroker::pause();
    let outage = Instant::now();
    let mut peak_backlog = 0;
    let mut reported_degraded = false;
    while outage.elapsed() < Duration::from_secs(20) {
        peak_backlog = peak_backlog.max(scratch.unsent().await);
        let (status, _) = get(bridge.admin, "/health").await;
        reported_degraded |= status == 503;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(paused);
    let resumed = Instant::now();
    let expected = writer.await.expect("writer");
    wait_for_effects(&scratch, &expected, Duration::from_secs(120)).await;
    let recovered = resumed.elapsed();

    assert_effects_exact(&scratch, &expected).await;
    let duplicates = assert_none_lost_in_kafka(&scratch, 10_000).await;
    assert!(
        reported_degraded,
        "/health never said the relay was failing"
    );
    assert!(
        peak_backlog > 1_000,
        "the outbox should have grown: {peak_backlog}"
    );
    eprintln!(
        "outage: 20 s broker pause; outbox peaked at {peak_backlog} rows; all 10,000 effects \
         {recovered:.2?} after resume; {} failed deliveries retried; {duplicates} redelivered copies \
         in Kafka; 0 lost, 0 duplicated effects",
        bridge.metric("bridge_produce_failed_total").await,
    );
    let (status, _) = get(bridge.admin, "/health").await;
    assert_eq!(status, 200, "healthy again after the outage");
    bridge.stop().await;
}

/// A bridge process, killed when dropped so a failing test leaves none behind (an orphan
/// would go on relaying the next run's rows to this run's topics).
struct BridgeProcess(Child);

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bridge binary on `scratch`.
fn spawn_bridge(scratch: &Scratch) -> BridgeProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .env("MYSQL_URL", &scratch.mysql_url)
        .env("REDIS_URL", &scratch.redis_url)
        .env("KAFKA_BROKERS", service("KAFKA_BROKERS"))
        .env("BRIDGE_NAMESPACE", &scratch.namespace)
        .env("BRIDGE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        // Small batches: many of them, so a kill lands mid-relay.
        .env("BRIDGE_RELAY_BATCH", "50")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the bridge binary");
    BridgeProcess(child)
}

/// SIGKILLs `bridge` as soon as `progress_sql` counts at least `from` (and fewer than
/// `total`: the kill must land mid-work); returns the count at the kill.
async fn kill_when(
    scratch: &Scratch,
    bridge: &mut BridgeProcess,
    progress_sql: &str,
    from: u64,
    total: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let progress = scratch.count(progress_sql).await;
        if progress >= from {
            break progress;
        }
        assert!(Instant::now() < deadline, "the bridge made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    bridge.0.kill().expect("SIGKILL");
    bridge.0.wait().expect("reaping the bridge");

    assert!(
        progress < total,
        "the bridge finished before it could be killed"
    );
    progress
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_bridge_mid_batch_duplicates_nothing_downstream() {
    let _broker = BROKER.read().await;
    let scratch = Scratch::new("kill", 12).await;
    let (events, expected) = payment_events(1, 30_000);
    scratch.insert_outbox(&events).await;
    // First killed mid-relay (some rows sent, most not), then mid-consumption (some
    // notifications recorded, not all), then left to finish.
    let mut bridge = spawn_bridge(&scratch);
    let sent_sql = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL";
    let sent = kill_when(&scratch, &mut bridge, sent_sql, 1, 30_000).await;
    bridge = spawn_bridge(&scratch);
    let notified_sql = "SELECT COUNT(*) FROM notifications";
    let notified = kill_when(&scratch, &mut bridge, notified_sql, 1, 15_000).await;
    let mut bridge = spawn_bridge(&scratch);
    wait_for_effects(&scratch, &expected, Duration::from_secs(120)).await;
    assert_effects_exact(&scratch, &expected).await;
    let duplicates = assert_none_lost_in_kafka(&scratch, 30_000).await;
    eprintln!(
        "kill -9 after {sent} of 30,000 rows sent, again after {notified} of 15,000 \
         notifications: after restarts every effect exactly once; {duplicates} copies \
         redelivered by Kafka and absorbed by deduplication"
    );
    signal("-TERM", &bridge.0.id().to_string());
    let status = bridge.0.wait().expect("reaping the bridge");
    assert!(
        status.success(),
        "SIGTERM stops the bridge cleanly: {status}"
    );
}

/// What each of two bridges has (produced, consumed) so far.
async fn work_done(one: &InProcess, two: &InProcess) -> ((f64, f64), (f64, f64)) {
    let count =
        |name: &'static str| async move { (one.metric(name).await, two.metric(name).await) };
    (
        count("bridge_produced_total").await,
        count("bridge_consumed_total").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_bridges_share_the_relay_and_the_consumers() {
    let _broker = BROKER.read().await;
    let scratch = Scratch::new("pair", 13).await;
    let one = InProcess::start(scratch.config()).await;
    let two = InProcess::start(scratch.config()).await;
    let mut expected = support::Expected::default();
    // A trickle of 1,000 rows every 500 ms for at least 10 s, so both relays find work, and
    // on until both consumers have had partitions too: how soon the group rebalances onto
    // the second member depends on the broker and the machine's load, not on the bridge.
    let mut rounds = 0u64;
    loop {
        let (events, more) = payment_events(1 + rounds * 1_000, 1_000);
        scratch.insert_outbox(&events).await;
        expected.merge(&more);
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (produced, consumed) = work_done(&one, &two).await;
        let shared = produced.0 > 0.0 && produced.1 > 0.0 && consumed.0 > 0.0 && consumed.1 > 0.0;
        if rounds >= 20 && shared {
            break;
        }
        assert!(
            rounds < 120,
            "after 60 s of trickle both bridges should have relayed and consumed: \
             produced {produced:?}, consumed {consumed:?}"
        );
    }
    wait_for_effects(&scratch, &expected, Duration::from_secs(120)).await;
    assert_effects_exact(&scratch, &expected).await;
    let (produced, consumed) = work_done(&one, &two).await;
    eprintln!("two bridges, {rounds} rounds: produced {produced:?}, consumed {consumed:?}");
    assert!(produced.0 + produced.1 >= (rounds * 1_000) as f64);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_is_not_an_event_is_skipped_and_the_rest_still_apply() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let _broker = BROKER.read().await;
    let scratch = Scratch::new("poison", 15).await;
    let bridge = InProcess::start(scratch.config()).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", service("KAFKA_BROKERS"))
        .create()
        .expect("producer");
    // The bridge creates its topics at start; wait for that before writing to one.
    while !get(bridge.admin, "/health")
        .await
        .1
        .contains(r#""kafka":"ok""#)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let topic = format!("{}{}", scratch.namespace, Topic::NotificationRequest.name());
    producer
        .send(
            FutureRecord::to(&topic)
                .key("1")
                .payload("{\"not\": \"an event\"}"),
            Duration::from_secs(10),
        )
        .await
        .expect("producing garbage");
    let (events, expected) = payment_events(1, 200);
    scratch.insert_outbox(&events).await;
    wait_for_effects(&scratch, &expected, Duration::from_secs(60)).await;
    assert_effects_exact(&scratch, &expected).await;
    assert_eq!(bridge.metric("bridge_rejected_total").await, 1.0);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweepers_end_each_lapsed_hold_exactly_once() {
    let _broker = BROKER.read().await;
    let scratch = Scratch::new("sweep", 14).await;
    let lapsed = 300u64;
    let live = 10u64;
    {
        let mut conn = scratch.pool.get_conn().await.expect("MySQL");
        conn.query_drop(
            "INSERT INTO concerts (id, title, artist, venue) VALUES (1, 'C', 'A', 'V'); \
             INSERT INTO schedules (id, concert_id, starts_at, total_seats) \
             VALUES (101, 1, '2030-01-01 19:00:00', 1000)",
        )
        .await
        .expect("catalog");
        let past = now()
            .saturating_sub(Duration::from_secs(60))
            .to_sql_datetime();
        let future = now()
            .saturating_add(Duration::from_secs(3_600))
            .to_sql_datetime();
        for r in 1..=lapsed + live {
            let until = if r <= lapsed { &past } else { &future };
            let (a, b) = (1_010_000 + 2 * r - 1, 1_010_000 + 2 * r);
            conn.exec_drop(
                "INSERT INTO reservations (id, user_id, schedule_id, status, amount, expires_at) \
                 VALUES (?, ?, 101, 'HELD', 20000, ?)",
                (r, r, until),
            )
            .await
            .expect("reservation");
            conn.exec_drop(
                "INSERT INTO seats (id, schedule_id, seat_no, label, price, status, reservation_id, held_until) \
                 VALUES (?, 101, ?, ?, 10000, 'HELD', ?, ?), (?, 101, ?, ?, 10000, 'HELD', ?, ?)",
                (a, 2 * r - 1, format!("S{a}"), r, until, b, 2 * r, format!("S{b}"), r, until),
            )
            .await
            .expect("seats");
            conn.exec_drop(
                "INSERT INTO reservation_seats (reservation_id, seat_id) VALUES (?, ?), (?, ?)",
                (r, a, r, b),
            )
            .await
            .expect("reservation seats");
        }
    }
    let mut redis = support::redis_connection(&scratch.redis_url).await;
    let _: () = redis::cmd("SET")
        .arg("{sch:101}:version")
        .arg(5)
        .query_async(&mut redis)
        .await
        .expect("SET");

    let mut config = scratch.config();
    config.sweeper.batch = 25;
    let one = InProcess::start(config.clone()).await;
    let two = InProcess::start(config).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let expired = scratch
            .count("SELECT COUNT(*) FROM reservations WHERE status = 'EXPIRED'")
            .await;
        if expired >= lapsed {
            break;
        }
        if Instant::now() >= deadline {
            let health = (
                get(one.admin, "/health").await,
                get(two.admin, "/health").await,
            );
            panic!("{expired} of {lapsed} lapsed holds swept in 60 s; bridges' health: {health:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a late duplicate sweep every chance to show itself before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let count = |sql: &'static str| scratch.count(sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM reservations WHERE status = 'EXPIRED'").await,
        lapsed
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM reservations WHERE status = 'HELD'").await,
        live
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM seats WHERE status = 'AVAILABLE' AND reservation_id IS NULL")
            .await,
        2 * lapsed
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM seats WHERE status = 'HELD'").await,
        2 * live
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM reservation_seats WHERE released_at IS NOT NULL").await,
        2 * lapsed
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE topic = 'reservation.expired'").await,
        lapsed,
        "one reservation.expired per lapsed hold"
    );
    assert_eq!(
        count("SELECT COUNT(DISTINCT event_key) FROM outbox WHERE topic = 'reservation.expired'")
            .await,
        lapsed
    );
    let swept = (
        one.metric("bridge_holds_expired_total").await,
        two.metric("bridge_holds_expired_total").await,
    );
    assert_eq!(swept.0 + swept.1, lapsed as f64, "{swept:?}");
    assert_eq!(
        one.metric("bridge_seats_released_total").await
            + two.metric("bridge_seats_released_total").await,
        2.0 * lapsed as f64
    );
    let version: u64 = redis::cmd("GET")
        .arg("{sch:101}:version")
        .query_async(&mut redis)
        .await
        .expect("GET");
    assert!(version > 5, "the seat map's cache version was bumped");
    // The relay delivers the sweeper's events like any other.
    let seen = audit_topics(&scratch, &[Topic::ReservationExpired]).await;
    assert_eq!(
        seen.len(),
        lapsed as usize,
        "reservation.expired events in Kafka"
    );
    eprintln!("sweepers: {swept:?} holds expired by each bridge");
    one.stop().await;
    two.stop().await;
}
