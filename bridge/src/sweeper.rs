//! The hold-expiry sweeper: ends holds that lapsed unpaid, puts their seats back on sale and
//! announces `reservation.expired`. The seats component also expires a lapsed hold lazily
//! when someone wants its seats; the sweeper makes sure every lapsed hold ends within a
//! sweep interval even if no one does. Several bridges may sweep at once: each takes the
//! lapsed holds no one else has locked (see `Store::expire_lapsed_holds`).

use std::collections::BTreeSet;

use redis::aio::ConnectionManager;
use ticketing_core::cache::{MARK_STALE_MS, schedules_key, seat_map_keys};
use ticketing_core::events::{Envelope, ReservationExpired};
use ticketing_core::ids::{ConcertId, ScheduleId};
use ticketing_core::time::Timestamp;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{ExpiredHold, Store};
use crate::task::Task;

pub(crate) async fn run(store: Store, redis: ConnectionManager, task: Task) {
    let (config, metrics) = (task.config.clone(), task.metrics.clone());
    task.repeat("sweeper", config.sweeper.interval, || {
        sweep(&store, &redis, &config, &metrics)
    })
    .await;
}

/// Ends every hold lapsed by now, a batch per transaction.
async fn sweep(
    store: &Store,
    redis: &ConnectionManager,
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    loop {
        let now = crate::now();
        let expired = store
            .expire_lapsed_holds(now, config.sweeper.batch, |hold| announce(hold, now))
            .await?;
        metrics.holds_expired.inc_by(expired.len() as u64);
        let seats: usize = expired.iter().map(|hold| hold.seats.len()).sum();
        metrics.seats_released.inc_by(seats as u64);
        let schedules = expired.iter().map(|h| (h.schedule, h.concert)).collect();
        if let Err(error) = invalidate_seat_maps(redis, schedules).await {
            // Cached maps also lapse on their own within seconds; the seats are free anyway.
            tracing::warn!(%error, "could not invalidate cached seat maps");
        }
        if expired.len() < config.sweeper.batch {
            return Ok(());
        }
    }
}

fn announce(hold: &ExpiredHold, now: Timestamp) -> anyhow::Result<Envelope> {
    let event = ReservationExpired {
        reservation_id: hold.reservation,
        user_id: hold.user,
        schedule_id: hold.schedule,
        seat_ids: hold.seats.clone(),
    };
    Ok(Envelope::wrap(&event, crate::new_event_id(now)?, now)?)
}

/// The changed seats' schedules: bump each seat map's version, drop the cached map and mark
/// the concert's schedule list stale, as the components do after a hold or a release.
pub(crate) async fn invalidate_seat_maps(
    redis: &ConnectionManager,
    schedules: BTreeSet<(ScheduleId, ConcertId)>,
) -> redis::RedisResult<()> {
    if schedules.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (schedule, concert) in schedules {
        let (map, version) = seat_map_keys(schedule);
        pipe.incr(version, 1).ignore();
        pipe.del(map).ignore();
        pipe.cmd("PEXPIRE")
            .arg(schedules_key(concert))
            .arg(MARK_STALE_MS)
            .arg("LT")
            .ignore();
    }
    pipe.query_async(&mut redis.clone()).await
}
