//! The verifier against a real MariaDB, Redis and Kafka broker: a consistent store passes
//! every check, and each kind of corruption a bug could cause is caught by the check meant
//! for it.

use mysql_async::Pool;
use mysql_async::prelude::Queryable;
use rdkafka::producer::{FutureProducer, FutureRecord};
use ticketing_core::draw::DrawSeed;
use ticketing_core::events::{Envelope, EventId};
use ticketing_core::ids::UserId;
use ticketing_core::ranking::counted_key;
use ticketing_core::time::Timestamp;
use ticketing_verifier::kafka::KafkaSource;
use ticketing_verifier::{Report, Sources, verify};

const REDIS_DB: u32 = 7;
const EVENT: &str = "01a1ff61-67c0-7000-9bcc-0000243067c0";
const NOTIFICATION: &str = "01a1ff61-67c0-7000-9bcc-0000243067c1";
const OFFER: &str = "01a1ff61-67c0-7000-9bcc-0000243067c4";
const OFFER_NOTIFICATION: &str = "01a1ff61-67c0-7000-9bcc-0000243067c5";

/// A setting of the local services (`infra/local/up` writes them to `.state/env`).
fn service(name: &str) -> String {
    edge_testkit::service_env()[name].clone()
}

/// Topics of this test run only: a prefix no other run uses.
fn kafka_source() -> KafkaSource {
    static NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let namespace = NAMESPACE.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        format!("verifier-{}-{started}.", std::process::id())
    });
    KafkaSource {
        brokers: service("KAFKA_BROKERS"),
        namespace: namespace.clone(),
    }
}

/// Relays an outbox row the way the bridge does: its envelope, keyed, on its topic.
async fn relay(kafka: &KafkaSource, topic: &str, key: &str, event: &str, now: Timestamp) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()
        .expect("producer");
    let envelope = Envelope {
        event_id: EventId::parse(event).expect("id"),
        event_type: topic.to_owned(),
        version: 1,
        occurred_at: now,
        key: key.to_owned(),
        payload: serde_json::json!({}),
    }
    .to_json()
    .expect("envelope");
    let topic = format!("{}{topic}", kafka.namespace);
    producer
        .send(
            FutureRecord::to(&topic).key(key).payload(&envelope),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

/// A store in which one user bought one seat (paid, announced, ranked, notified, both events
/// in Kafka), another user holds another seat offered to them from the concert's waitlist
/// (announced, notified, in Kafka; each user at the concert's cap of one), the first user
/// waits on the list behind them, and a queue admitted its first two of three places.
async fn consistent_store() -> Sources {
    let mysql_url = edge_testkit::scratch_database("ticketing_test_verifier").await;
    let pool = Pool::new(mysql_url.as_str());
    let mut conn = pool.get_conn().await.expect("MySQL");
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let later = now
        .saturating_add(std::time::Duration::from_secs(600))
        .to_sql_datetime();
    conn.query_drop(format!(
        "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b');
         INSERT INTO balances (user_id, amount) VALUES (1, 50000), (2, 100000);
         INSERT INTO balance_ledger (user_id, entry_type, amount, balance_after)
           VALUES (1, 'OPENING', 100000, 100000), (2, 'OPENING', 100000, 100000);
         INSERT INTO concerts (id, title, artist, venue, seats_per_fan) VALUES (1, 'C', 'A', 'V', 1);
         INSERT INTO schedules (id, concert_id, starts_at, total_seats)
           VALUES (101, 1, '2030-01-01 19:00:00', 3);
         INSERT INTO reservations (id, user_id, schedule_id, status, amount, expires_at)
           VALUES (1, 1, 101, 'CONFIRMED', 50000, '{later}'), (2, 2, 101, 'HELD', 50000, '{later}');
         INSERT INTO seats (id, schedule_id, seat_no, label, price, status, reservation_id, held_until)
           VALUES (1010001, 101, 1, 'A1', 50000, 'SOLD', 1, NULL),
                  (1010002, 101, 2, 'A2', 50000, 'HELD', 2, '{later}'),
                  (1010003, 101, 3, 'A3', 50000, 'AVAILABLE', NULL, NULL);
         INSERT INTO reservation_seats (reservation_id, seat_id) VALUES (1, 1010001), (2, 1010002);
         INSERT INTO payments (id, user_id, reservation_id, idempotency_key, request_hash, amount, status)
           VALUES (1, 1, 1, 'k1', REPEAT('x', 32), 50000, 'SUCCEEDED');
         INSERT INTO balance_ledger (user_id, entry_type, amount, balance_after, payment_id)
           VALUES (1, 'PAYMENT', -50000, 50000, 1);
         INSERT INTO outbox (event_id, topic, event_key, payload, created_at, sent_at)
           VALUES ('{EVENT}', 'payment.completed', '1', '{{}}', NOW(3) - INTERVAL 1 MINUTE, NOW(3)),
                  ('{NOTIFICATION}', 'notification.request', '1', '{{}}',
                   NOW(3) - INTERVAL 1 MINUTE, NOW(3));
         INSERT INTO notifications (event_id, user_id, kind, reservation_id, payment_id, requested_at)
           VALUES ('{NOTIFICATION}', 1, 'PAYMENT_COMPLETED', 1, 1, NOW(3));
         INSERT INTO waitlist_entries (id, concert_id, user_id, state, joined_at, reservation_id, decided_at)
           VALUES (1, 1, 2, 'OFFERED', NOW(3) - INTERVAL 2 MINUTE, 2, NOW(3) - INTERVAL 1 MINUTE),
                  (2, 1, 1, 'WAITING', NOW(3) - INTERVAL 90 SECOND, NULL, NULL);
         INSERT INTO outbox (event_id, topic, event_key, payload, created_at, sent_at)
           VALUES ('{OFFER}', 'waitlist.offered', '2', '{{}}', NOW(3) - INTERVAL 1 MINUTE, NOW(3)),
                  ('{OFFER_NOTIFICATION}', 'notification.request', '2', '{{}}',
                   NOW(3) - INTERVAL 1 MINUTE, NOW(3));
         INSERT INTO notifications (event_id, user_id, kind, reservation_id, payment_id, requested_at)
           VALUES ('{OFFER_NOTIFICATION}', 2, 'WAITLIST_OFFERED', 2, NULL, NOW(3));"
    ))
    .await
    .expect("fixture");
    drop(conn);
    pool.disconnect().await.ok();
    let kafka = kafka_source();
    relay(&kafka, "payment.completed", "1", EVENT, now).await;
    relay(&kafka, "notification.request", "1", NOTIFICATION, now).await;
    relay(&kafka, "waitlist.offered", "2", OFFER, now).await;
    relay(&kafka, "notification.request", "2", OFFER_NOTIFICATION, now).await;

    let redis_url = format!("{}/{REDIS_DB}", service("REDIS_URL"));
    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let _: () = redis::pipe()
        .cmd("FLUSHDB")
        .cmd("SET")
        .arg(counted_key(&EventId::parse(EVENT).expect("id")))
        .arg(1)
        .cmd("HSET")
        .arg("{q:t}:meta")
        .arg("seq")
        .arg(3)
        .cmd("HSET")
        .arg("{q:t}:p:0")
        .arg(&[
            (1, "X:1:CONSUMED"),
            (2, "A:2:100:700:11"),
            (3, "W:3:150:12"),
        ])
        .cmd("HSET")
        .arg("{q:t}:u:002")
        .arg(&[(2, 2)])
        .cmd("HSET")
        .arg("{q:t}:u:003")
        .arg(&[(3, 3)])
        .query_async(&mut redis)
        .await
        .expect("Redis fixture");
    scheduled_queue_drawn(&mut redis).await;
    Sources {
        mysql_url,
        redis_url,
        kafka,
    }
}

/// `{q:d}`: a scheduled queue whose draw placed entrants 5, 6 and 7 in the order its seed
/// draws, and a latecomer, 9, behind them.
async fn scheduled_queue_drawn(redis: &mut redis::aio::MultiplexedConnection) {
    let seed = DrawSeed::from_bytes([3; 32]);
    let entrants: Vec<UserId> = [5, 6, 7]
        .map(|id| UserId::new(id).expect("a user id"))
        .to_vec();
    let mut placed: Vec<(u64, String)> = seed
        .order(&entrants)
        .iter()
        .zip(1u64..)
        .map(|(user, position)| (position, format!("W:{user}:150:12")))
        .collect();
    placed.push((4, "W:9:160:13".to_owned()));
    let mut pipe = redis::pipe();
    pipe.cmd("HSET").arg("{q:d}:meta").arg(&[
        ("seq", "4".to_owned()),
        ("opens_at", "100".to_owned()),
        ("commitment", seed.commitment().to_string()),
        ("seed", seed.to_string()),
        ("entrants", "3".to_owned()),
        ("drawn", "3".to_owned()),
    ]);
    pipe.cmd("HSET").arg("{q:d}:p:0").arg(&placed);
    for (position, value) in &placed {
        let user = value.split(':').nth(1).expect("a user");
        pipe.cmd("HSET")
            .arg(format!("{{q:d}}:u:{:0>3}", user))
            .arg(user)
            .arg(position);
    }
    pipe.cmd("RPUSH").arg("{q:d}:u:entrants").arg(&[5, 6, 7]);
    let _: () = pipe.query_async(redis).await.expect("Redis fixture");
}

fn failing(report: &Report) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| c.name)
        .collect()
}

async fn sql(sources: &Sources, statement: &str) {
    let pool = Pool::new(sources.mysql_url.as_str());
    pool.get_conn()
        .await
        .expect("MySQL")
        .query_drop(statement)
        .await
        .expect(statement);
    pool.disconnect().await.ok();
}

async fn redis_cmd(sources: &Sources, args: &[&str]) {
    let mut redis = redis::Client::open(sources.redis_url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let _: redis::Value = cmd.query_async(&mut redis).await.expect("Redis");
}

/// A corruption, as SQL statements and Redis commands applied to a consistent store.
struct Corruption {
    check: &'static str,
    sql: &'static str,
    redis: &'static [&'static str],
}

const CORRUPTIONS: &[Corruption] = &[
    // The double booking; the schema's unique live-seat key forbids it, so drop that first.
    Corruption {
        check: "seat_single_owner",
        sql: "ALTER TABLE reservation_seats DROP INDEX uq_live_seat; \
              INSERT INTO reservations (id, user_id, schedule_id, status, amount, expires_at) \
              VALUES (3, 2, 101, 'HELD', 50000, '2030-01-01 00:00:00'); \
              INSERT INTO reservation_seats (reservation_id, seat_id) VALUES (3, 1010001)",
        redis: &[],
    },
    Corruption {
        check: "seat_state_matches_owner",
        sql: "UPDATE seats SET status = 'HELD', reservation_id = 1, \
              held_until = '2030-01-01 00:00:00' WHERE id = 1010003",
        redis: &[],
    },
    Corruption {
        check: "sales_agree",
        sql: "UPDATE reservations SET status = 'EXPIRED' WHERE id = 1",
        redis: &[],
    },
    // A second seat for a fan at the cap: held cleanly, only the cap forbids it.
    Corruption {
        check: "fan_caps",
        sql: "INSERT INTO reservations (id, user_id, schedule_id, status, amount, expires_at) \
              VALUES (3, 2, 101, 'HELD', 50000, '2030-01-01 00:00:00'); \
              INSERT INTO reservation_seats (reservation_id, seat_id) VALUES (3, 1010003); \
              UPDATE seats SET status = 'HELD', reservation_id = 3, \
              held_until = '2030-01-01 00:00:00' WHERE id = 1010003",
        redis: &[],
    },
    // An offer made twice: a second announcement of the same hold.
    Corruption {
        check: "waitlist_offers_once",
        sql: "INSERT INTO outbox (event_id, topic, event_key, payload, created_at, sent_at) \
              VALUES ('01a1ff61-67c0-7000-9bcc-0000243067c6', 'waitlist.offered', '2', '{}', \
              NOW(3), NOW(3))",
        redis: &[],
    },
    // An offer never notified to its fan.
    Corruption {
        check: "waitlist_offers_once",
        sql: "DELETE FROM notifications WHERE kind = 'WAITLIST_OFFERED'",
        redis: &[],
    },
    // An offer of another fan's hold.
    Corruption {
        check: "waitlist_offers_once",
        sql: "UPDATE waitlist_entries SET user_id = 3 WHERE id = 1",
        redis: &[],
    },
    // The fan behind offered while the fan before still waits.
    Corruption {
        check: "waitlist_order",
        sql: "UPDATE waitlist_entries SET id = 3 WHERE id = 1",
        redis: &[],
    },
    Corruption {
        check: "balances_match_ledger",
        sql: "UPDATE balances SET amount = amount - 1 WHERE user_id = 2",
        redis: &[],
    },
    Corruption {
        check: "ledger_matches_money_moves",
        sql: "DELETE FROM balance_ledger WHERE entry_type = 'PAYMENT'; \
              UPDATE balances SET amount = 100000 WHERE user_id = 1",
        redis: &[],
    },
    Corruption {
        check: "outbox_drained",
        sql: "UPDATE outbox SET sent_at = NULL WHERE topic = 'notification.request'",
        redis: &[],
    },
    Corruption {
        check: "payments_announced_once",
        sql: "INSERT INTO outbox (event_id, topic, event_key, payload, created_at, sent_at) \
              VALUES ('01a1ff61-67c0-7000-9bcc-0000243067c2', 'payment.completed', '1', '{}', \
              NOW(3), NOW(3))",
        redis: &[
            "SET",
            "{ranking}:counted:01a1ff61-67c0-7000-9bcc-0000243067c2",
            "1",
        ],
    },
    // Marked sent, never produced: the relay lost it.
    Corruption {
        check: "outbox_in_kafka",
        sql: "INSERT INTO outbox (event_id, topic, event_key, payload, created_at, sent_at) \
              VALUES ('01a1ff61-67c0-7000-9bcc-0000243067c3', 'reservation.held', '1', '{}', \
              NOW(3), NOW(3))",
        redis: &[],
    },
    // In Kafka under another key than its row's: consumers would order it wrongly.
    Corruption {
        check: "outbox_in_kafka",
        sql: "UPDATE outbox SET event_key = '2' WHERE topic = 'notification.request'",
        redis: &[],
    },
    Corruption {
        check: "notifications_recorded_once",
        sql: "DELETE FROM notifications",
        redis: &[],
    },
    Corruption {
        check: "ranking_applied",
        sql: "",
        redis: &[
            "DEL",
            "{ranking}:counted:01a1ff61-67c0-7000-9bcc-0000243067c0",
        ],
    },
    Corruption {
        check: "queue_order",
        sql: "",
        redis: &["HDEL", "{q:t}:p:0", "2"],
    },
    Corruption {
        check: "queue_order",
        sql: "",
        redis: &[
            "HSET",
            "{q:t}:p:0",
            "2",
            "W:2:100:11",
            "3",
            "A:3:100:700:12",
        ],
    },
    Corruption {
        check: "draws_fair",
        sql: "",
        redis: &[
            "HSET",
            "{q:d}:meta",
            "seed",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ],
    },
    Corruption {
        check: "draws_fair",
        sql: "",
        redis: &["RPUSH", "{q:d}:u:entrants", "8"],
    },
];

#[tokio::test]
async fn a_consistent_store_passes_and_each_corruption_a_bug_could_cause_fails_its_check() {
    let sources = consistent_store().await;
    let report = verify(&sources).await.expect("verify");
    assert!(report.ok, "{}", report.table());
    assert!(
        report.checks.iter().all(|c| c.examined > 0),
        "every check looked at something:\n{}",
        report.table()
    );
    // One store at a time: they share the scratch database.
    for corruption in CORRUPTIONS {
        let sources = consistent_store().await;
        if !corruption.sql.is_empty() {
            sql(&sources, corruption.sql).await;
        }
        if !corruption.redis.is_empty() {
            redis_cmd(&sources, corruption.redis).await;
        }
        let report = verify(&sources).await.expect("verify");
        assert!(!report.ok);
        assert!(
            failing(&report).contains(&corruption.check),
            "{} should have caught: {} {:?}\n{}",
            corruption.check,
            corruption.sql,
            corruption.redis,
            report.table()
        );
    }
}
