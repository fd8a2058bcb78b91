//! Every SQL statement of the bridge: claiming and settling outbox batches, ending lapsed
//! holds, and recording notifications with their deduplication.
//!
//! Transactions run at READ COMMITTED: a locking scan there takes no gap locks, so claiming
//! unsent outbox rows never blocks the components inserting new ones, and `SKIP LOCKED`
//! lets several bridges take disjoint batches.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Pool, Transaction, TxOpts, Value};
use store_sql::{HOLDABLE, TakenBy, placeholders};
use ticketing_core::events::{
    Envelope, EventId, NotificationKind, NotificationRequest, ReservationHeld, WaitlistOffered,
};
use ticketing_core::ids::{ConcertId, ReservationId, ScheduleId, SeatId, UserId};
use ticketing_core::money::Amount;
use ticketing_core::sale::Stock;
use ticketing_core::seats::{FanCap, FanHolding, ReservationStatus};
use ticketing_core::time::Timestamp;
use ticketing_core::waitlist::{Decision, OfferPolicy, WaitingFan, open_to_queue, plan_offers};

/// One undelivered outbox row.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub(crate) id: u64,
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
    /// Failed deliveries so far.
    pub(crate) attempts: u32,
}

/// Outbox rows locked by this bridge until [`Claim::settle`]; other bridges skip them.
#[derive(Debug)]
pub(crate) struct Claim {
    transaction: Transaction<'static>,
    pub(crate) rows: Vec<OutboxRow>,
}

/// A hold the sweeper ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExpiredHold {
    pub(crate) reservation: ReservationId,
    pub(crate) user: UserId,
    pub(crate) schedule: ScheduleId,
    pub(crate) concert: ConcertId,
    pub(crate) seats: Vec<SeatId>,
}

/// A notification request as the consumer received it.
#[derive(Debug)]
pub(crate) struct ReceivedNotification {
    pub(crate) event_id: EventId,
    pub(crate) requested_at: Timestamp,
    pub(crate) request: NotificationRequest,
}

/// What one round of waitlist offers did for a concert.
#[derive(Debug, Default)]
pub(crate) struct OfferRound {
    /// The offers made, as announced.
    pub(crate) offered: Vec<WaitlistOffered>,
    /// Fans passed over because they owned the concert's cap of seats.
    pub(crate) passed_over: usize,
    /// Waiting fans the round looked at: a full batch means more may wait.
    pub(crate) considered: usize,
}

/// A free seat a round may offer: id, schedule, price.
type FreeSeat = (SeatId, ScheduleId, Amount);

/// What a deduplicated write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) applied: usize,
    pub(crate) duplicates: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: Pool,
}

impl Store {
    /// The pool keeps its idle connections for a minute and hands them back out without a
    /// reset: every statement here either finishes its transaction or leaves it to the
    /// pool's rollback, and sets nothing that outlives it. A reset at every checkout (the
    /// driver's default) threw away the server's prepared statements, so each batch
    /// prepared its statements again.
    pub(crate) fn connect(url: &str) -> anyhow::Result<Self> {
        let opts = mysql_async::Opts::from_url(url).context("parsing the MySQL URL")?;
        let pool_opts = mysql_async::PoolOpts::default()
            .with_inactive_connection_ttl(std::time::Duration::from_secs(60))
            .with_reset_connection(false);
        Ok(Self {
            pool: Pool::new(mysql_async::OptsBuilder::from_opts(opts).pool_opts(pool_opts)),
        })
    }

    async fn begin(&self) -> anyhow::Result<Transaction<'static>> {
        let mut options = TxOpts::default();
        options.with_isolation_level(IsolationLevel::ReadCommitted);
        self.pool
            .start_transaction(options)
            .await
            .context("starting a MySQL transaction")
    }

    /// Locks up to `limit` of the oldest unsent outbox rows that no other bridge holds.
    pub(crate) async fn claim_unsent(&self, limit: usize) -> anyhow::Result<Claim> {
        let mut transaction = self.begin().await?;
        let rows: Vec<(u64, String, String, Vec<u8>, u32)> = transaction
            .exec(
                "SELECT id, topic, event_key, payload, attempts FROM outbox \
                 WHERE sent_at IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
                (limit as u64,),
            )
            .await
            .context("claiming outbox rows")?;
        let rows = rows
            .into_iter()
            .map(|(id, topic, key, payload, attempts)| OutboxRow {
                id,
                topic,
                key,
                payload,
                attempts,
            })
            .collect();
        Ok(Claim { transaction, rows })
    }

    /// Rows not yet delivered, and the age of the oldest in seconds.
    pub(crate) async fn backlog(&self) -> anyhow::Result<(u64, f64)> {
        let mut connection = self.pool.get_conn().await?;
        let row: Option<(u64, Option<i64>)> = connection
            .query_first(
                "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(3)) \
                 FROM outbox WHERE sent_at IS NULL",
            )
            .await
            .context("measuring the outbox backlog")?;
        let (count, age_micros) = row.unwrap_or_default();
        Ok((count, age_micros.unwrap_or(0).max(0) as f64 / 1e6))
    }

    /// Deletes up to `limit` rows delivered more than `retention_secs` ago; returns how many.
    pub(crate) async fn purge_delivered(
        &self,
        retention_secs: u64,
        limit: usize,
    ) -> anyhow::Result<u64> {
        let mut connection = self.pool.get_conn().await?;
        connection
            .exec_drop(
                "DELETE FROM outbox WHERE sent_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND \
                 ORDER BY sent_at LIMIT ?",
                (retention_secs, limit as u64),
            )
            .await
            .context("purging delivered outbox rows")?;
        Ok(connection.affected_rows())
    }

    /// Ends up to `limit` holds lapsed at `now` that no one else is working on: each
    /// reservation becomes EXPIRED, its seats go back on sale, and a `reservation.expired`
    /// event (made by `announce`) goes to the outbox, all in one transaction. A hold a
    /// component is paying or expiring right now is locked, so skipped; its status is
    /// re-checked under the lock, so a hold is ended exactly once.
    pub(crate) async fn expire_lapsed_holds(
        &self,
        now: Timestamp,
        limit: usize,
        announce: impl Fn(&ExpiredHold) -> anyhow::Result<Envelope>,
    ) -> anyhow::Result<Vec<ExpiredHold>> {
        let mut transaction = self.begin().await?;
        let lapsed = lock_lapsed_holds(&mut transaction, now, limit).await?;
        if lapsed.is_empty() {
            transaction.rollback().await?;
            return Ok(Vec::new());
        }
        let expired = describe_lapsed(&mut transaction, &lapsed).await?;
        end_holds(&mut transaction, &expired, now).await?;
        let envelopes = expired
            .iter()
            .map(&announce)
            .collect::<anyhow::Result<Vec<_>>>()?;
        insert_outbox(&mut transaction, &envelopes).await?;
        transaction.commit().await?;
        Ok(expired)
    }

    /// What the queues may still sell of each of `concerts` that exists at `now`: its seats
    /// open to a hold less those its waitlist's waiting fans have first claim on
    /// (`core::waitlist::open_to_queue`).
    pub(crate) async fn open_to_queues(
        &self,
        concerts: &[ConcertId],
        now: Timestamp,
    ) -> anyhow::Result<Vec<(ConcertId, Stock)>> {
        if concerts.is_empty() {
            return Ok(Vec::new());
        }
        let statement = format!(
            "SELECT c.id, \
               (SELECT COUNT(*) FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
                WHERE sc.concert_id = c.id AND {HOLDABLE}), \
               (SELECT COUNT(*) FROM waitlist_entries w \
                WHERE w.state = 'WAITING' AND w.concert_id = c.id) \
             FROM concerts c WHERE c.id IN ({})",
            placeholders(concerts.len())
        );
        let mut params = vec![Value::from(now.to_sql_datetime())];
        params.extend(concerts.iter().map(|c| Value::from(c.get())));
        let rows: Vec<(u64, u64, u64)> = self
            .pool
            .get_conn()
            .await
            .context("connecting to MySQL")?
            .exec(statement, params)
            .await
            .context("counting seats open to a hold")?;
        rows.into_iter()
            .map(|(concert, holdable, waiting)| {
                Ok((ConcertId::new(concert)?, open_to_queue(holdable, waiting)))
            })
            .collect()
    }

    /// The concerts some fan waits on the waitlist of.
    pub(crate) async fn concerts_with_waiting_fans(&self) -> anyhow::Result<Vec<ConcertId>> {
        let ids: Vec<u64> = self
            .pool
            .get_conn()
            .await
            .context("connecting to MySQL")?
            .query("SELECT DISTINCT concert_id FROM waitlist_entries WHERE state = 'WAITING'")
            .await
            .context("finding waitlists with waiting fans")?;
        Ok(ids
            .into_iter()
            .map(ConcertId::new)
            .collect::<Result<_, _>>()?)
    }

    /// One round of offers for `concert` (`core::waitlist::plan_offers`): its free seats go
    /// to up to `batch` of its waiting fans in list order, each offer a HELD reservation of
    /// one seat lapsing by `policy`, announced by `reservation.held`, `waitlist.offered` and
    /// a `notification.request` (with ids from `event_id`), all in one transaction. The
    /// concert's row lock makes rounds of one concert (by several bridges) run one after
    /// the other; the fans' lock rows, taken before any seat, make a round and a fan's own
    /// hold count the fan's seats one after the other, as `store_sql::lock_fans` says.
    pub(crate) async fn offer_returned_seats(
        &self,
        concert: ConcertId,
        policy: OfferPolicy,
        batch: usize,
        now: Timestamp,
        event_id: impl Fn() -> anyhow::Result<EventId>,
    ) -> anyhow::Result<OfferRound> {
        let mut transaction = self.begin().await?;
        let cap: Option<Option<u32>> = transaction
            .exec_first(
                "SELECT seats_per_fan FROM concerts WHERE id = ? FOR UPDATE",
                (concert.get(),),
            )
            .await
            .context("locking the concert of a waitlist")?;
        let Some(cap) = cap else {
            transaction.rollback().await?;
            return Ok(OfferRound::default());
        };
        let cap = cap.and_then(std::num::NonZeroU32::new).map(FanCap::new);
        let waiting = waiting_fans(&mut transaction, concert, batch).await?;
        // While sold out, the usual case, a round ends here: no fan lock is taken for a
        // seat that is not there.
        let no_seat_free = waiting.is_empty()
            || transaction
                .exec_first::<u64, _, _>(
                    "SELECT s.id FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
                     WHERE sc.concert_id = ? AND s.status = 'AVAILABLE' LIMIT 1",
                    (concert.get(),),
                )
                .await?
                .is_none();
        if no_seat_free {
            transaction.rollback().await?;
            return Ok(OfferRound::default());
        }
        let holdings = match cap {
            Some(_) => fan_holdings(&mut transaction, concert, &waiting).await?,
            None => BTreeMap::new(),
        };
        let seats = lock_free_seats(&mut transaction, concert, waiting.len()).await?;
        let fans: Vec<WaitingFan> = waiting
            .iter()
            .map(|&(entry, user)| WaitingFan {
                entry,
                user,
                holdings: holdings.get(&user).map_or(&[], Vec::as_slice),
            })
            .collect();
        let mut round = OfferRound {
            considered: waiting.len(),
            ..OfferRound::default()
        };
        let mut envelopes = Vec::new();
        for decision in plan_offers(&fans, &seats, cap, now) {
            match decision {
                Decision::Offer { entry, user, seat } => {
                    let offer =
                        make_offer(&mut transaction, concert, entry, user, seat, policy, now)
                            .await?;
                    envelopes.extend(announce_offer(&offer, now, &event_id)?);
                    round.offered.push(offer);
                }
                Decision::PassOver { entry } => {
                    decide_entry(&mut transaction, entry, None, now).await?;
                    round.passed_over += 1;
                }
            }
        }
        insert_outbox(&mut transaction, &envelopes).await?;
        transaction.commit().await?;
        Ok(round)
    }

    /// Records each notification once for `consumer`: events already in processed_events
    /// are skipped, the rest are marked processed and recorded in the same transaction.
    pub(crate) async fn record_notifications(
        &self,
        consumer: &str,
        received: &[ReceivedNotification],
    ) -> anyhow::Result<Recorded> {
        if received.is_empty() {
            return Ok(Recorded::default());
        }
        let mut transaction = self.begin().await?;
        let ids: Vec<String> = received.iter().map(|n| n.event_id.to_string()).collect();
        let mut taken = processed_among(&mut transaction, consumer, &ids).await?;
        // A batch may carry the same event twice (a redelivery right behind the original).
        let fresh: Vec<(&String, &ReceivedNotification)> = ids
            .iter()
            .zip(received)
            .filter(|(id, _)| taken.insert((*id).clone()))
            .collect();
        let recorded = Recorded {
            applied: fresh.len(),
            duplicates: received.len() - fresh.len(),
        };
        if fresh.is_empty() {
            transaction.rollback().await?;
            return Ok(recorded);
        }
        mark_processed(&mut transaction, consumer, &fresh).await?;
        insert_notifications(&mut transaction, &fresh).await?;
        transaction.commit().await?;
        Ok(recorded)
    }
}

/// Which of `event_ids` `consumer` has already processed.
async fn processed_among(
    transaction: &mut Transaction<'static>,
    consumer: &str,
    event_ids: &[String],
) -> anyhow::Result<BTreeSet<String>> {
    let mut params = vec![Value::from(consumer)];
    params.extend(event_ids.iter().map(|id| Value::from(id.as_str())));
    let seen = transaction
        .exec::<String, _, _>(
            format!(
                "SELECT event_id FROM processed_events WHERE consumer = ? AND event_id IN ({})",
                placeholders(event_ids.len())
            ),
            params,
        )
        .await?;
    Ok(seen.into_iter().collect())
}

/// Up to `limit` of the fans waiting on `concert`'s list, in list order: entry, user.
async fn waiting_fans(
    transaction: &mut Transaction<'static>,
    concert: ConcertId,
    limit: usize,
) -> anyhow::Result<Vec<(u64, UserId)>> {
    let rows: Vec<(u64, u64)> = transaction
        .exec(
            "SELECT id, user_id FROM waitlist_entries WHERE state = 'WAITING' AND concert_id = ? \
             ORDER BY id LIMIT ?",
            (concert.get(), limit as u64),
        )
        .await
        .context("reading a waitlist")?;
    rows.into_iter()
        .map(|(entry, user)| Ok((entry, UserId::new(user)?)))
        .collect()
}

/// The waiting fans' reservations of `concert` as the cap counts them, by fan, read under
/// the fans' lock rows.
async fn fan_holdings(
    transaction: &mut Transaction<'static>,
    concert: ConcertId,
    waiting: &[(u64, UserId)],
) -> anyhow::Result<BTreeMap<UserId, Vec<FanHolding>>> {
    let lock_params: Vec<Value> = waiting
        .iter()
        .flat_map(|(_, user)| [Value::from(user.get()), Value::from(concert.get())])
        .collect();
    transaction
        .exec_drop(store_sql::lock_fans(waiting.len()), lock_params)
        .await
        .context("locking the waiting fans")?;
    let mut params: Vec<Value> = waiting.iter().map(|(_, u)| Value::from(u.get())).collect();
    params.push(Value::from(concert.get()));
    let rows: Vec<(u64, u64, String, String, u32)> = transaction
        .exec(store_sql::fan_holdings(waiting.len()), params)
        .await
        .context("counting the waiting fans' seats")?;
    let mut holdings: BTreeMap<UserId, Vec<FanHolding>> = BTreeMap::new();
    for (user, reservation, status, expires_at, seats) in rows {
        holdings
            .entry(UserId::new(user)?)
            .or_default()
            .push(FanHolding {
                reservation: ReservationId::new(reservation)?,
                status: ReservationStatus::parse(&status)
                    .with_context(|| format!("reservations.status {status}"))?,
                expires_at: Timestamp::parse_sql_datetime(&expires_at)?,
                seats,
            });
    }
    Ok(holdings)
}

/// Up to `limit` free seats of `concert`, locked, in seat order. Seats a fan's hold is
/// taking right now are locked by it, so skipped.
async fn lock_free_seats(
    transaction: &mut Transaction<'static>,
    concert: ConcertId,
    limit: usize,
) -> anyhow::Result<Vec<FreeSeat>> {
    let rows: Vec<(u64, u64, u64)> = transaction
        .exec(
            "SELECT s.id, s.schedule_id, s.price FROM seats s \
             JOIN schedules sc ON sc.id = s.schedule_id \
             WHERE sc.concert_id = ? AND s.status = 'AVAILABLE' \
             ORDER BY s.id LIMIT ? FOR UPDATE SKIP LOCKED",
            (concert.get(), limit as u64),
        )
        .await
        .context("locking free seats to offer")?;
    rows.into_iter()
        .map(|(seat, schedule, price)| {
            Ok((
                SeatId::new(seat)?,
                ScheduleId::new(schedule)?,
                Amount::new(price)?,
            ))
        })
        .collect()
}

/// Holds `seat` for the fan of `entry` as the offer (the same statements as a fan's own
/// hold) and marks the entry OFFERED.
async fn make_offer(
    transaction: &mut Transaction<'static>,
    concert: ConcertId,
    entry: u64,
    user: UserId,
    (seat, schedule, price): FreeSeat,
    policy: OfferPolicy,
    now: Timestamp,
) -> anyhow::Result<WaitlistOffered> {
    let expires_at = policy.expiry(now);
    transaction
        .exec_drop(
            store_sql::INSERT_HOLD,
            (
                user.get(),
                schedule.get(),
                price.minor_units(),
                expires_at.to_sql_datetime(),
                now.to_sql_datetime(),
            ),
        )
        .await
        .context("writing an offer's hold")?;
    let reservation = ReservationId::new(
        transaction
            .last_insert_id()
            .context("no id for an offer's hold")?,
    )?;
    transaction
        .exec_drop(
            store_sql::take_seats(1, store_sql::Holder::Param),
            (
                reservation.get(),
                expires_at.to_sql_datetime(),
                schedule.get(),
                now.to_sql_datetime(),
                seat.get(),
            ),
        )
        .await?;
    anyhow::ensure!(
        transaction.affected_rows() == 1,
        "a locked free seat changed under its lock"
    );
    transaction
        .exec_drop(store_sql::link_seats(1), (reservation.get(), seat.get()))
        .await?;
    decide_entry(transaction, entry, Some(reservation), now).await?;
    Ok(WaitlistOffered {
        reservation_id: reservation,
        user_id: user,
        concert_id: concert,
        schedule_id: schedule,
        seat_ids: vec![seat],
        amount: price,
        expires_at,
    })
}

/// Moves a WAITING entry to OFFERED (with its hold) or PASSED_OVER (without one).
async fn decide_entry(
    transaction: &mut Transaction<'static>,
    entry: u64,
    offer: Option<ReservationId>,
    now: Timestamp,
) -> anyhow::Result<()> {
    let state = if offer.is_some() {
        "OFFERED"
    } else {
        "PASSED_OVER"
    };
    transaction
        .exec_drop(
            "UPDATE waitlist_entries SET state = ?, reservation_id = ?, decided_at = ? \
             WHERE id = ? AND state = 'WAITING'",
            (
                state,
                offer.map(ReservationId::get),
                now.to_sql_datetime(),
                entry,
            ),
        )
        .await?;
    anyhow::ensure!(
        transaction.affected_rows() == 1,
        "waitlist entry {entry} was decided under the concert's lock"
    );
    Ok(())
}

/// The events of one offer: the hold as any hold, the offer, and the fan's notification.
fn announce_offer(
    offer: &WaitlistOffered,
    now: Timestamp,
    event_id: impl Fn() -> anyhow::Result<EventId>,
) -> anyhow::Result<[Envelope; 3]> {
    let held = ReservationHeld {
        reservation_id: offer.reservation_id,
        user_id: offer.user_id,
        schedule_id: offer.schedule_id,
        seat_ids: offer.seat_ids.clone(),
        amount: offer.amount,
        expires_at: offer.expires_at,
    };
    let notification = NotificationRequest {
        user_id: offer.user_id,
        kind: NotificationKind::WaitlistOffered,
        reservation_id: offer.reservation_id,
        payment_id: None,
    };
    Ok([
        Envelope::wrap(&held, event_id()?, now)?,
        Envelope::wrap(offer, event_id()?, now)?,
        Envelope::wrap(&notification, event_id()?, now)?,
    ])
}

/// Marks the events processed; a concurrent consumer that got there first makes it fail on
/// the primary key, so the batch is retried and then skipped.
async fn mark_processed(
    transaction: &mut Transaction<'static>,
    consumer: &str,
    fresh: &[(&String, &ReceivedNotification)],
) -> anyhow::Result<()> {
    let rows = fresh
        .iter()
        .map(|(id, _)| [Value::from(consumer), Value::from(id.as_str())]);
    insert_rows(transaction, "processed_events (consumer, event_id)", rows)
        .await
        .context("marking notifications processed (a concurrent consumer got there first?)")
}

async fn insert_notifications(
    transaction: &mut Transaction<'static>,
    fresh: &[(&String, &ReceivedNotification)],
) -> anyhow::Result<()> {
    let rows = fresh.iter().map(|(id, n)| {
        [
            Value::from(id.as_str()),
            Value::from(n.request.user_id.get()),
            Value::from(kind_name(n.request.kind)),
            Value::from(n.request.reservation_id.get()),
            n.request
                .payment_id
                .map_or(Value::NULL, |p| Value::from(p.get())),
            Value::from(n.requested_at.to_sql_datetime()),
        ]
    });
    insert_rows(
        transaction,
        "notifications (event_id, user_id, kind, reservation_id, payment_id, requested_at)",
        rows,
    )
    .await
    .context("recording notifications")
}

impl Claim {
    /// Marks the delivered rows sent and counts a failed attempt on the others, then
    /// releases the batch.
    pub(crate) async fn settle(mut self, delivered: &[u64], failed: &[u64]) -> anyhow::Result<()> {
        if !delivered.is_empty() {
            self.transaction
                .exec_drop(
                    format!(
                        "UPDATE outbox SET sent_at = UTC_TIMESTAMP(3) WHERE id IN ({})",
                        placeholders(delivered.len())
                    ),
                    values(delivered),
                )
                .await
                .context("marking outbox rows sent")?;
        }
        if !failed.is_empty() {
            self.transaction
                .exec_drop(
                    format!(
                        "UPDATE outbox SET attempts = attempts + 1 WHERE id IN ({})",
                        placeholders(failed.len())
                    ),
                    values(failed),
                )
                .await
                .context("counting failed deliveries")?;
        }
        self.transaction
            .commit()
            .await
            .context("committing an outbox batch")
    }
}

/// Writes events to the outbox inside the caller's transaction.
/// A lapsed hold locked for the sweep: reservation, user, schedule.
type LapsedHold = (u64, u64, u64);

/// Up to `limit` holds lapsed at `now`, oldest first, locked; holds another transaction
/// has locked (a payment or a component expiring them) are skipped.
async fn lock_lapsed_holds(
    transaction: &mut Transaction<'static>,
    now: Timestamp,
    limit: usize,
) -> anyhow::Result<Vec<LapsedHold>> {
    transaction
        .exec(
            "SELECT id, user_id, schedule_id FROM reservations \
             WHERE status = 'HELD' AND expires_at <= ? \
             ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED",
            (now.to_sql_datetime(), limit as u64),
        )
        .await
        .context("finding lapsed holds")
}

/// The locked holds with their concerts and the seats they still hold.
async fn describe_lapsed(
    transaction: &mut Transaction<'static>,
    lapsed: &[LapsedHold],
) -> anyhow::Result<Vec<ExpiredHold>> {
    let reservation_ids: Vec<u64> = lapsed.iter().map(|(id, _, _)| *id).collect();
    let seat_rows: Vec<(u64, u64)> = transaction
        .exec(
            format!(
                "SELECT reservation_id, seat_id FROM reservation_seats \
                 WHERE released_at IS NULL AND reservation_id IN ({}) \
                 ORDER BY reservation_id, seat_id",
                placeholders(reservation_ids.len())
            ),
            values(&reservation_ids),
        )
        .await?;
    let schedule_ids: BTreeSet<u64> = lapsed.iter().map(|(_, _, s)| *s).collect();
    let schedule_ids: Vec<u64> = schedule_ids.into_iter().collect();
    let concerts: BTreeMap<u64, u64> = transaction
        .exec::<(u64, u64), _, _>(
            format!(
                "SELECT id, concert_id FROM schedules WHERE id IN ({})",
                placeholders(schedule_ids.len())
            ),
            values(&schedule_ids),
        )
        .await?
        .into_iter()
        .collect();
    let mut seats_of: BTreeMap<u64, Vec<SeatId>> = BTreeMap::new();
    for (reservation, seat) in &seat_rows {
        seats_of
            .entry(*reservation)
            .or_default()
            .push(SeatId::new(*seat)?);
    }
    lapsed
        .iter()
        .map(|&(reservation, user, schedule)| {
            Ok(ExpiredHold {
                reservation: ReservationId::new(reservation)?,
                user: UserId::new(user)?,
                schedule: ScheduleId::new(schedule)?,
                concert: ConcertId::new(
                    *concerts
                        .get(&schedule)
                        .context("a schedule without a concert")?,
                )?,
                seats: seats_of.remove(&reservation).unwrap_or_default(),
            })
        })
        .collect()
}

/// Marks the locked holds EXPIRED and puts their seats back on sale.
async fn end_holds(
    transaction: &mut Transaction<'static>,
    expired: &[ExpiredHold],
    now: Timestamp,
) -> anyhow::Result<()> {
    let reservation_ids: Vec<u64> = expired.iter().map(|hold| hold.reservation.get()).collect();
    transaction
        .exec_drop(
            store_sql::expire_holds(reservation_ids.len()),
            values(&reservation_ids),
        )
        .await?;
    anyhow::ensure!(
        transaction.affected_rows() == reservation_ids.len() as u64,
        "a locked lapsed hold changed under its lock"
    );
    let mut params = vec![Value::from(now.to_sql_datetime())];
    params.extend(values(&reservation_ids));
    transaction
        .exec_drop(store_sql::release_seat_links(reservation_ids.len()), params)
        .await?;
    let seat_ids: Vec<u64> = expired
        .iter()
        .flat_map(|hold| hold.seats.iter().map(|seat| seat.get()))
        .collect();
    if !seat_ids.is_empty() {
        let mut params = values(&seat_ids);
        params.extend(values(&reservation_ids));
        transaction
            .exec_drop(
                store_sql::free_seats(TakenBy::Hold, seat_ids.len(), reservation_ids.len()),
                params,
            )
            .await?;
    }
    Ok(())
}

async fn insert_outbox(
    transaction: &mut Transaction<'static>,
    envelopes: &[Envelope],
) -> anyhow::Result<()> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let rows = envelopes
        .iter()
        .map(|envelope| {
            let topic = envelope.topic().context("an event of no known topic")?;
            Ok([
                Value::from(envelope.event_id.to_string()),
                Value::from(topic.name()),
                Value::from(envelope.key.as_str()),
                Value::from(envelope.to_json()?),
                Value::from(envelope.occurred_at.to_sql_datetime()),
            ])
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    insert_rows(
        transaction,
        "outbox (event_id, topic, event_key, payload, created_at)",
        rows,
    )
    .await
    .context("writing to the outbox")
}

/// Inserts `rows` into `table_and_columns` (say `t (a, b)`) in one statement; every row
/// holds one value per column.
async fn insert_rows<const WIDTH: usize>(
    transaction: &mut Transaction<'static>,
    table_and_columns: &str,
    rows: impl IntoIterator<Item = [Value; WIDTH]>,
) -> Result<(), mysql_async::Error> {
    let params: Vec<Value> = rows.into_iter().flatten().collect();
    let statement = format!(
        "INSERT INTO {table_and_columns} VALUES {}",
        tuples(params.len() / WIDTH, WIDTH)
    );
    transaction.exec_drop(statement, params).await
}

fn kind_name(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::PaymentCompleted => "PAYMENT_COMPLETED",
        NotificationKind::PaymentRefunded => "PAYMENT_REFUNDED",
        NotificationKind::ReservationExpired => "RESERVATION_EXPIRED",
        NotificationKind::WaitlistOffered => "WAITLIST_OFFERED",
    }
}

/// `n` row tuples of `width` placeholders each, for a multi-row INSERT.
fn tuples(n: usize, width: usize) -> String {
    let row = format!("({})", placeholders(width));
    vec![row; n].join(", ")
}

fn values(ids: &[u64]) -> Vec<Value> {
    ids.iter().map(|id| Value::from(*id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_get_one_tuple_per_row() {
        assert_eq!(tuples(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(placeholders(1), "?");
    }

    #[test]
    fn notification_kinds_are_the_schema_enum_values() {
        // The ENUM of infra/mysql/migrations/0005_notifications.sql, in JSON form.
        for kind in [
            NotificationKind::PaymentCompleted,
            NotificationKind::PaymentRefunded,
            NotificationKind::ReservationExpired,
            NotificationKind::WaitlistOffered,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind_name(kind));
        }
    }
}
