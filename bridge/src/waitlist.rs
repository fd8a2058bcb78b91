//! The waitlist offerer: about once a second, for every concert with fans waiting on its
//! waitlist, it offers the seats that came back (free again after a release, a swept lapse
//! or a refund) to those fans in list order (`core::waitlist`), each offer a hold of the fan's
//! with the offer's own TTL. An offer not paid lapses like any hold: the sweeper frees its
//! seat and the next round offers it to the next fan. Several bridges at once are harmless:
//! a round locks its concert's row, so rounds of one concert run one after the other, and an
//! entry is offered only from WAITING.

use std::collections::BTreeSet;

use redis::aio::ConnectionManager;
use ticketing_core::sale::Stock;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::sweeper::invalidate_seat_maps;
use crate::task::Task;

/// As often as the stock is counted: a seat back on sale reaches the list as soon as it
/// would have reached the line.
pub(crate) async fn run(store: Store, redis: ConnectionManager, task: Task) {
    let (config, metrics) = (task.config.clone(), task.metrics.clone());
    task.repeat("waitlist", Stock::COUNT_EVERY, || {
        offer(&store, &redis, &config, &metrics)
    })
    .await;
}

/// Rounds of offers for every concert with waiting fans, until seats or fans run out.
async fn offer(
    store: &Store,
    redis: &ConnectionManager,
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    for concert in store.concerts_with_waiting_fans().await? {
        loop {
            let now = crate::now();
            let round = store
                .offer_returned_seats(
                    concert,
                    config.waitlist.offer,
                    config.waitlist.batch,
                    now,
                    || crate::new_event_id(now),
                )
                .await?;
            metrics.waitlist_offers.inc_by(round.offered.len() as u64);
            metrics
                .waitlist_passed_over
                .inc_by(round.passed_over as u64);
            let schedules: BTreeSet<_> = round
                .offered
                .iter()
                .map(|offer| (offer.schedule_id, offer.concert_id))
                .collect();
            if let Err(error) = invalidate_seat_maps(redis, schedules).await {
                // Cached maps also lapse on their own within seconds.
                tracing::warn!(%error, "could not invalidate cached seat maps");
            }
            let decided = round.offered.len() + round.passed_over;
            if decided == 0 || round.considered < config.waitlist.batch {
                break;
            }
        }
    }
    Ok(())
}
