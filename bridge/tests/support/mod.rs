//! What the bridge's tests share: a scratch MySQL database and Redis database per test,
//! outbox rows made with the core's event types, bridges in-process, a raw Kafka audit of
//! what reached the topics, and the exact-effects check.

#![allow(unreachable_pub)] // `pub` for the test file that mounts this module

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value};
use ticketing_bridge::Config;
use ticketing_core::events::{
    Envelope, Event, EventId, NotificationKind, NotificationRequest, PaymentCompleted,
    PaymentFacts, Topic,
};
use ticketing_core::ids::{ConcertId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use ticketing_core::money::Amount;
use ticketing_core::time::Timestamp;
use ticketing_verifier::kafka::KafkaSource;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use edge_testkit::repo_root;

/// A setting of the local services (`infra/local/up` writes them to `.state/env`).
pub fn service(name: &str) -> String {
    edge_testkit::service_env()[name].clone()
}

pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// A test's own MySQL database (`ticketing_test_bridge_<name>`, recreated and migrated),
/// Redis database and Kafka namespace.
#[derive(Debug)]
pub struct Scratch {
    pub mysql_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub pool: Pool,
}

impl Scratch {
    pub async fn new(name: &str, redis_db: u32) -> Self {
        let mysql_url =
            edge_testkit::scratch_database(&format!("ticketing_test_bridge_{name}")).await;
        let redis_url = format!("{}/{redis_db}", service("REDIS_URL"));
        let mut redis = redis_connection(&redis_url).await;
        let _: () = redis::cmd("FLUSHDB")
            .query_async(&mut redis)
            .await
            .expect("FLUSHDB");
        // Unique per run, so topics and consumer groups of earlier runs are never reused.
        static RUN: AtomicU32 = AtomicU32::new(0);
        let namespace = format!(
            "t{}-{}-{name}.",
            std::process::id(),
            now().unix_millis() % 1_000_000 + u64::from(RUN.fetch_add(1, Ordering::Relaxed))
        );
        Self {
            pool: Pool::new(mysql_url.as_str()),
            mysql_url,
            redis_url,
            namespace,
        }
    }

    pub fn config(&self) -> Config {
        let mut config = Config::local(&self.mysql_url, &self.redis_url, &service("KAFKA_BROKERS"));
        config.namespace = self.namespace.clone();
        config
    }

    pub async fn count(&self, sql: &str) -> u64 {
        let mut conn = self.pool.get_conn().await.expect("MySQL");
        conn.query_first(sql).await.expect(sql).unwrap_or(0)
    }

    pub async fn unsent(&self) -> u64 {
        self.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .await
    }

    /// Writes events to the outbox as the components do, 1,000 rows per statement.
    pub async fn insert_outbox(&self, envelopes: &[Envelope]) {
        let mut conn = self.pool.get_conn().await.expect("MySQL");
        for chunk in envelopes.chunks(1_000) {
            let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|e| {
                    [
                        Value::from(e.event_id.to_string()),
                        Value::from(e.topic().expect("a known topic").name()),
                        Value::from(e.key.as_str()),
                        Value::from(e.to_json().expect("json")),
                        Value::from(e.occurred_at.to_sql_datetime()),
                    ]
                })
                .collect();
            conn.exec_drop(
                format!(
                    "INSERT INTO outbox (event_id, topic, event_key, payload, created_at) VALUES {rows}"
                ),
                params,
            )
            .await
            .expect("inserting outbox rows");
        }
    }
}

pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis")
}

fn event_id(at: Timestamp) -> EventId {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut random = [0u8; 10];
    random[..4].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    random[4..8].copy_from_slice(&std::process::id().to_be_bytes());
    random[8..].copy_from_slice(&(at.unix_millis() as u16).to_be_bytes());
    EventId::new(at, random)
}

fn wrap<E: Event>(event: &E) -> Envelope {
    let at = now();
    Envelope::wrap(event, event_id(at), at).expect("wrapping an event")
}

/// What a batch of generated events must do downstream.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    pub seats_by_concert: BTreeMap<u64, i64>,
    pub notifications: BTreeSet<String>,
    pub payments: usize,
}

impl Expected {
    pub fn merge(&mut self, other: &Expected) {
        for (concert, seats) in &other.seats_by_concert {
            *self.seats_by_concert.entry(*concert).or_default() += seats;
        }
        self.notifications
            .extend(other.notifications.iter().cloned());
        self.payments += other.payments;
    }
}

/// `n` events: alternately a `payment.completed` (one of 17 concerts, 1 to 4 seats) and
/// the `notification.request` that goes with it. Ids start at `first`.
pub fn payment_events(first: u64, n: usize) -> (Vec<Envelope>, Expected) {
    let mut envelopes = Vec::with_capacity(n);
    let mut expected = Expected::default();
    for i in 0..n as u64 {
        let serial = first + i / 2;
        let reservation = ReservationId::new(serial).expect("id");
        let user = UserId::new(1 + serial % 1_000).expect("id");
        if i % 2 == 0 {
            let concert = 1 + serial % 17;
            let seats = 1 + serial % 4;
            let facts = PaymentFacts {
                payment_id: PaymentId::new(serial).expect("id"),
                reservation_id: reservation,
                user_id: user,
                concert_id: ConcertId::new(concert).expect("id"),
                schedule_id: ScheduleId::new(concert * 100 + 1).expect("id"),
                seat_ids: (0..seats)
                    .map(|s| SeatId::new(serial * 10 + s + 1).expect("id"))
                    .collect(),
                amount: Amount::new(10_000 * seats).expect("amount"),
            };
            envelopes.push(wrap(&PaymentCompleted(facts)));
            *expected.seats_by_concert.entry(concert).or_default() += seats as i64;
            expected.payments += 1;
        } else {
            let envelope = wrap(&NotificationRequest {
                user_id: user,
                kind: NotificationKind::PaymentCompleted,
                reservation_id: reservation,
                payment_id: Some(PaymentId::new(serial).expect("id")),
            });
            expected.notifications.insert(envelope.event_id.to_string());
            envelopes.push(envelope);
        }
    }
    (envelopes, expected)
}

/// The all-time ranking set as a map.
pub async fn ranking(redis_url: &str) -> BTreeMap<u64, i64> {
    let mut redis = redis_connection(redis_url).await;
    let entries: Vec<(u64, f64)> = redis::cmd("ZRANGE")
        .arg(ticketing_core::ranking::ALL_TIME_KEY)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .expect("ZRANGE");
    entries.into_iter().map(|(c, s)| (c, s as i64)).collect()
}

/// Waits until the outbox is drained and every expected effect has landed.
pub async fn wait_for_effects(scratch: &Scratch, expected: &Expected, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let unsent = scratch.unsent().await;
        let notifications = scratch.count("SELECT COUNT(*) FROM notifications").await;
        let ranked: i64 = ranking(&scratch.redis_url).await.values().sum();
        let wanted: i64 = expected.seats_by_concert.values().sum();
        if unsent == 0 && notifications as usize >= expected.notifications.len() && ranked >= wanted
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "effects incomplete after {within:?}: {unsent} unsent, {notifications}/{} notifications, {ranked}/{wanted} seats ranked",
            expected.notifications.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every effect happened exactly once: the notifications are exactly the expected events
/// (none lost, none twice), each marked processed once, and the ranking holds exactly the
/// expected seats per concert with one counted mark per payment.
pub async fn assert_effects_exact(scratch: &Scratch, expected: &Expected) {
    let mut conn = scratch.pool.get_conn().await.expect("MySQL");
    let recorded: Vec<String> = conn
        .query("SELECT event_id FROM notifications ORDER BY event_id")
        .await
        .expect("notifications");
    let distinct: BTreeSet<String> = recorded.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        recorded.len(),
        "a notification was recorded twice"
    );
    assert_eq!(
        distinct, expected.notifications,
        "notifications lost or invented"
    );
    let processed = scratch
        .count("SELECT COUNT(*) FROM processed_events WHERE consumer = 'notifications'")
        .await;
    assert_eq!(processed as usize, expected.notifications.len());
    assert_eq!(
        ranking(&scratch.redis_url).await,
        expected.seats_by_concert,
        "ranking"
    );
    let mut redis = redis_connection(&scratch.redis_url).await;
    let mut counted = 0;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("{ranking}:counted:*")
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut redis)
            .await
            .expect("SCAN");
        counted += keys.len();
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(counted, expected.payments, "one counted mark per payment");
    assert_eq!(scratch.unsent().await, 0, "the outbox drained");
}

/// How many times each event id reached the namespace's topics, read raw from Kafka by the
/// verifier's reader once the relay has marked every outbox row sent: shows what the
/// deduplication layer absorbed.
pub async fn audit_topics(scratch: &Scratch, topics: &[Topic]) -> BTreeMap<String, u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while scratch.unsent().await > 0 {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let source = KafkaSource {
        brokers: service("KAFKA_BROKERS"),
        namespace: scratch.namespace.clone(),
    };
    let names: Vec<String> = topics.iter().map(|t| t.name().to_owned()).collect();
    ticketing_verifier::kafka::events(&source, &names)
        .await
        .expect("reading the topics")
        .into_iter()
        .map(|(event, copies)| (event, copies.placements.len() as u32))
        .collect()
}

/// A bridge running in this process, with its admin listener on a free port.
pub struct InProcess {
    pub admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub async fn start(config: Config) -> Self {
        // Bridge logs in test output when asked for: RUST_LOG=ticketing_bridge=debug.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ticketing_bridge::run(config, listener, async {
            let _ = stopped.await;
        }));
        Self { admin, stop, task }
    }

    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.admin, name).await
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("bridge task").expect("bridge run");
    }
}

/// GETs `path` from an admin listener: (status, body).
pub async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("admin listener");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: bridge\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The sum of a metric's samples over all label sets (`name` without labels).
pub async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let (_, body) = get(admin, "/metrics").await;
    body.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A Prometheus histogram's cumulative bucket counts, added up over its label sets, keyed
/// by the bucket bound's bits (positive floats order as their bits).
pub async fn histogram(admin: SocketAddr, name: &str) -> BTreeMap<u64, f64> {
    let (_, body) = get(admin, "/metrics").await;
    let mut buckets = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
    {
        let bound = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next());
        let bound = match bound {
            Some("+Inf") => f64::INFINITY,
            Some(text) => text.parse().expect("a bucket bound"),
            None => continue,
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .expect("a count");
        *buckets.entry(bound.to_bits()).or_default() += count;
    }
    buckets
}

/// The `q` quantile (0..1) of the samples added between two readings of a histogram: the
/// upper bound of the first bucket that holds that share of them.
pub fn quantile(before: &BTreeMap<u64, f64>, after: &BTreeMap<u64, f64>, q: f64) -> f64 {
    let added: Vec<(u64, f64)> = after
        .iter()
        .map(|(bound, count)| (*bound, count - before.get(bound).copied().unwrap_or(0.0)))
        .collect();
    let total = added.last().map_or(0.0, |b| b.1);
    added
        .iter()
        .find(|(_, count)| *count >= q * total)
        .map_or(f64::NAN, |(bits, _)| f64::from_bits(*bits))
}
