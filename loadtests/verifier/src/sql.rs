//! The invariants MySQL alone can prove (1 to 4, 11 and 12 of docs/INVARIANTS.md), as queries whose
//! every row is one violation.

use crate::Check;
use mysql_async::Pool;
use mysql_async::prelude::Queryable;

/// A check as SQL: how much it examines, and the violations, one text row each.
struct SqlCheck {
    name: &'static str,
    invariant: &'static str,
    examined: &'static str,
    violations: &'static str,
}

const CHECKS: &[SqlCheck] = &[
    SqlCheck {
        name: "seat_single_owner",
        invariant: "a seat is in at most one live hold or confirmed reservation",
        examined: "SELECT COUNT(*) FROM seats",
        violations: "SELECT CONCAT('seat ', rs.seat_id, ' live in reservations ', \
                     GROUP_CONCAT(r.id ORDER BY r.id)) \
                     FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id \
                     WHERE rs.released_at IS NULL AND r.status IN ('HELD', 'CONFIRMED') \
                     GROUP BY rs.seat_id HAVING COUNT(*) > 1",
    },
    SqlCheck {
        name: "seat_state_matches_owner",
        invariant: "a held seat belongs to a live hold listing it, a sold one to a confirmed reservation",
        examined: "SELECT COUNT(*) FROM seats WHERE status <> 'AVAILABLE'",
        violations: "SELECT CONCAT('seat ', s.id, ' ', s.status, ' owned by ', \
                     IFNULL(s.reservation_id, '-'), ' (', IFNULL(r.status, 'none'), ')') \
                     FROM seats s LEFT JOIN reservations r ON r.id = s.reservation_id \
                     LEFT JOIN reservation_seats rs ON rs.reservation_id = s.reservation_id \
                       AND rs.seat_id = s.id AND rs.released_at IS NULL \
                     WHERE s.status <> 'AVAILABLE' AND (rs.seat_id IS NULL \
                       OR NOT (s.status = 'HELD' AND r.status = 'HELD' \
                            OR s.status = 'SOLD' AND r.status = 'CONFIRMED')) \
                     UNION ALL \
                     SELECT CONCAT('reservation ', r.id, ' ', r.status, ' lists seat ', s.id, \
                     ' owned by ', IFNULL(s.reservation_id, 'no one')) \
                     FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id \
                     JOIN seats s ON s.id = rs.seat_id \
                     WHERE rs.released_at IS NULL AND r.status IN ('HELD', 'CONFIRMED') \
                       AND (s.reservation_id IS NULL OR s.reservation_id <> r.id)",
    },
    SqlCheck {
        name: "sales_agree",
        invariant: "seats sold = seats of confirmed reservations = seats of succeeded payments",
        examined: "SELECT COUNT(*) FROM reservations WHERE status IN ('CONFIRMED', 'REFUNDED')",
        violations: "SELECT CONCAT('reservation ', r.id, ' CONFIRMED without one succeeded payment') \
                     FROM reservations r WHERE r.status = 'CONFIRMED' AND (SELECT COUNT(*) \
                       FROM payments p WHERE p.reservation_id = r.id AND p.status = 'SUCCEEDED') <> 1 \
                     UNION ALL \
                     SELECT CONCAT('payment ', p.id, ' ', p.status, ' for reservation ', r.id, \
                     ' in ', r.status) FROM payments p JOIN reservations r ON r.id = p.reservation_id \
                     WHERE p.status = 'SUCCEEDED' AND r.status <> 'CONFIRMED' \
                        OR p.status = 'REFUNDED' AND r.status <> 'REFUNDED' \
                     UNION ALL \
                     SELECT CONCAT('totals: ', sold, ' sold, ', confirmed, ' confirmed, ', paid, \
                     ' paid') FROM (SELECT \
                       (SELECT COUNT(*) FROM seats WHERE status = 'SOLD') AS sold, \
                       (SELECT COUNT(*) FROM reservation_seats rs JOIN reservations r \
                         ON r.id = rs.reservation_id \
                         WHERE rs.released_at IS NULL AND r.status = 'CONFIRMED') AS confirmed, \
                       (SELECT COUNT(*) FROM reservation_seats rs JOIN payments p \
                         ON p.reservation_id = rs.reservation_id \
                         WHERE rs.released_at IS NULL AND p.status = 'SUCCEEDED') AS paid) t \
                     WHERE sold <> confirmed OR confirmed <> paid",
    },
    SqlCheck {
        name: "fan_caps",
        invariant: "no fan owns more seats of a capped concert than its cap, holds and purchases together",
        examined: "SELECT COUNT(DISTINCT r.user_id, sc.concert_id) FROM reservations r \
                   JOIN schedules sc ON sc.id = r.schedule_id \
                   JOIN concerts c ON c.id = sc.concert_id WHERE c.seats_per_fan IS NOT NULL",
        // Every HELD reservation counts, lapsed or not: a hold ends the fan's lapsed holds
        // of the concert in its own transaction, so they never stand beside a newer one.
        violations: "SELECT CONCAT('user ', r.user_id, ' owns ', COUNT(*), ' seats of concert ', \
                     c.id, ' (cap ', c.seats_per_fan, ')') \
                     FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id \
                     JOIN schedules sc ON sc.id = r.schedule_id \
                     JOIN concerts c ON c.id = sc.concert_id \
                     WHERE rs.released_at IS NULL AND r.status IN ('HELD', 'CONFIRMED') \
                       AND c.seats_per_fan IS NOT NULL \
                     GROUP BY r.user_id, c.id, c.seats_per_fan HAVING COUNT(*) > c.seats_per_fan",
    },
    SqlCheck {
        name: "waitlist_offers_once",
        invariant: "each waitlist offer is one seat of its concert held for its fan, announced once and notified once",
        examined: "SELECT COUNT(*) FROM waitlist_entries WHERE state = 'OFFERED'",
        violations: "SELECT CONCAT('entry ', t.id, ' offered reservation ', t.reservation_id, \
                     ' of user ', IFNULL(t.holder, 'none'), ', concert ', IFNULL(t.concert, 'none'), \
                     ', ', t.seats, ' seats') FROM (SELECT w.id, w.reservation_id, w.user_id, \
                       w.concert_id, r.user_id AS holder, sc.concert_id AS concert, \
                       (SELECT COUNT(*) FROM reservation_seats rs WHERE rs.reservation_id = r.id) AS seats \
                       FROM waitlist_entries w LEFT JOIN reservations r ON r.id = w.reservation_id \
                       LEFT JOIN schedules sc ON sc.id = r.schedule_id WHERE w.state = 'OFFERED') t \
                     WHERE t.holder IS NULL OR t.holder <> t.user_id OR t.concert <> t.concert_id \
                       OR t.seats <> 1 \
                     UNION ALL \
                     SELECT CONCAT('offer ', t.reservation_id, ' announced ', t.announced, \
                     ' times, notified ', t.notified, ' times') FROM (SELECT w.reservation_id, \
                       (SELECT COUNT(*) FROM outbox o WHERE o.topic = 'waitlist.offered' \
                         AND o.event_key = CAST(w.reservation_id AS CHAR)) AS announced, \
                       (SELECT COUNT(*) FROM notifications n WHERE n.kind = 'WAITLIST_OFFERED' \
                         AND n.reservation_id = w.reservation_id) AS notified \
                       FROM waitlist_entries w WHERE w.state = 'OFFERED' \
                         AND w.decided_at >= (SELECT IFNULL(MIN(created_at), '9999-12-31') FROM outbox)) t \
                     WHERE t.announced <> 1 OR t.notified <> 1 \
                     UNION ALL \
                     SELECT CONCAT('event ', o.event_id, ' offers reservation ', o.event_key, \
                     ' that no waitlist entry was offered') FROM outbox o \
                     LEFT JOIN waitlist_entries w ON w.reservation_id = CAST(o.event_key AS UNSIGNED) \
                     WHERE o.topic = 'waitlist.offered' AND w.id IS NULL",
    },
    SqlCheck {
        name: "waitlist_order",
        invariant: "a waitlist offers in list order: nobody still waits who joined before an offer to a later fan",
        examined: "SELECT COUNT(*) FROM waitlist_entries",
        // A second of margin: an entry's join time is taken just before its insert commits.
        violations: "SELECT CONCAT('entry ', y.id, ' still waits, but entry ', x.id, \
                     ' of concert ', x.concert_id, ' behind it was offered at ', x.decided_at) \
                     FROM waitlist_entries x JOIN waitlist_entries y \
                       ON y.concert_id = x.concert_id AND y.id < x.id \
                     WHERE x.state = 'OFFERED' AND y.state = 'WAITING' \
                       AND y.joined_at < x.decided_at - INTERVAL 1 SECOND",
    },
    SqlCheck {
        name: "balances_match_ledger",
        invariant: "every balance = opening + charges - payments + refunds in its ledger",
        examined: "SELECT COUNT(*) FROM balances",
        violations: "SELECT CONCAT('user ', b.user_id, ' balance ', b.amount, ' ledger ', \
                     IFNULL(l.total, 0)) FROM balances b LEFT JOIN \
                     (SELECT user_id, SUM(amount) AS total FROM balance_ledger GROUP BY user_id) l \
                     ON l.user_id = b.user_id WHERE b.amount <> IFNULL(l.total, 0)",
    },
    SqlCheck {
        name: "ledger_matches_money_moves",
        invariant: "one ledger line per charge, settled payment and refund, of its amount; none for failed payments",
        examined: "SELECT (SELECT COUNT(*) FROM charges) + (SELECT COUNT(*) FROM payments)",
        violations: "SELECT CONCAT('charge ', c.id, ' of ', c.amount, ' has ledger line ', \
                     IFNULL(l.amount, 'none')) FROM charges c LEFT JOIN balance_ledger l \
                     ON l.entry_type = 'CHARGE' AND l.charge_id = c.id \
                     WHERE l.id IS NULL OR l.amount <> c.amount \
                     UNION ALL \
                     SELECT CONCAT('payment ', p.id, ' ', p.status, ' of ', p.amount, ' debited ', \
                     IFNULL(-l.amount, 'nothing')) FROM payments p LEFT JOIN balance_ledger l \
                     ON l.entry_type = 'PAYMENT' AND l.payment_id = p.id \
                     WHERE (p.status IN ('SUCCEEDED', 'REFUNDED')) <> (l.id IS NOT NULL) \
                        OR l.id IS NOT NULL AND -l.amount <> p.amount \
                     UNION ALL \
                     SELECT CONCAT('payment ', p.id, ' ', p.status, ' credited back ', \
                     IFNULL(l.amount, 'nothing')) FROM payments p LEFT JOIN balance_ledger l \
                     ON l.entry_type = 'REFUND' AND l.payment_id = p.id \
                     WHERE (p.status = 'REFUNDED') <> (l.id IS NOT NULL) \
                        OR l.id IS NOT NULL AND l.amount <> p.amount",
    },
    SqlCheck {
        name: "outbox_drained",
        invariant: "every event left the outbox for Kafka",
        examined: "SELECT COUNT(*) FROM outbox",
        violations: "SELECT CONCAT('outbox ', id, ' ', topic, ' key ', event_key, ' unsent since ', \
                     created_at) FROM outbox WHERE sent_at IS NULL",
    },
    SqlCheck {
        name: "payments_announced_once",
        invariant: "each settled payment wrote exactly one payment.completed (within outbox retention)",
        examined: "SELECT COUNT(*) FROM payments WHERE status IN ('SUCCEEDED', 'REFUNDED')",
        violations: "SELECT CONCAT('payment ', p.id, ' announced ', COUNT(o.id), ' times') \
                     FROM payments p LEFT JOIN outbox o ON o.topic = 'payment.completed' \
                       AND o.event_key = CAST(p.reservation_id AS CHAR) \
                     WHERE p.status IN ('SUCCEEDED', 'REFUNDED') \
                       AND p.updated_at >= (SELECT IFNULL(MIN(created_at), '9999-12-31') FROM outbox) \
                     GROUP BY p.id HAVING COUNT(o.id) <> 1",
    },
    SqlCheck {
        name: "notifications_recorded_once",
        invariant: "each delivered notification.request became exactly one notification",
        examined: "SELECT COUNT(*) FROM outbox WHERE topic = 'notification.request' AND sent_at IS NOT NULL",
        violations: "SELECT CONCAT('event ', o.event_id, ' recorded ', COUNT(n.id), ' times') \
                     FROM outbox o LEFT JOIN notifications n ON n.event_id = o.event_id \
                     WHERE o.topic = 'notification.request' AND o.sent_at IS NOT NULL \
                     GROUP BY o.event_id HAVING COUNT(n.id) <> 1",
    },
];

pub(crate) async fn run(pool: &Pool) -> anyhow::Result<Vec<Check>> {
    let mut connection = pool.get_conn().await?;
    let mut checks = Vec::with_capacity(CHECKS.len());
    for check in CHECKS {
        let examined: Option<u64> = connection.query_first(check.examined).await?;
        let violations: Vec<String> = connection.query(check.violations).await?;
        checks.push(Check::new(
            check.name,
            check.invariant,
            examined.unwrap_or(0),
            violations,
        ));
    }
    Ok(checks)
}

/// Ids of the payment events (completions and refunds) the relay has delivered.
pub(crate) async fn delivered_payment_events(pool: &Pool) -> anyhow::Result<Vec<String>> {
    Ok(pool
        .get_conn()
        .await?
        .query(
            "SELECT event_id FROM outbox WHERE sent_at IS NOT NULL \
             AND topic IN ('payment.completed', 'payment.refunded') ORDER BY id",
        )
        .await?)
}

/// An outbox row the relay marked sent.
pub(crate) struct SentEvent {
    pub(crate) id: u64,
    pub(crate) event_id: String,
    pub(crate) topic: String,
    pub(crate) key: String,
}

/// Every row the relay marked sent (within the outbox's retention).
pub(crate) async fn sent_events(pool: &Pool) -> anyhow::Result<Vec<SentEvent>> {
    let rows: Vec<(u64, String, String, String)> = pool
        .get_conn()
        .await?
        .query(
            "SELECT id, event_id, topic, event_key FROM outbox WHERE sent_at IS NOT NULL ORDER BY id",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, event_id, topic, key)| SentEvent {
            id,
            event_id,
            topic,
            key,
        })
        .collect())
}
