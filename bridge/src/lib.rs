//! The Kafka bridge. WebAssembly components cannot speak Kafka, so they write events to the
//! transactional outbox in MySQL, and this native service does the rest:
//!
//! - the **relay** ([`relay`]) moves outbox rows to Kafka with the idempotent producer and
//!   marks them sent only after the broker acknowledged them;
//! - the **consumers** ([`consumer`]) apply events: the popularity ranking in Redis
//!   ([`ranking`]) and the notifications table ([`notifications`]), each deduplicating by
//!   event id and committing offsets only after the effect;
//! - the **sweeper** ([`sweeper`]) ends lapsed holds and announces `reservation.expired`;
//! - the **stock counter** ([`stock`]) tells the queues selling a concert whether it has
//!   seats open to a hold, so a sold-out sale stops admitting;
//! - the **waitlist offerer** ([`waitlist`]) offers the seats that come back to the fans on
//!   a sold-out concert's waitlist, in list order, and announces `waitlist.offered`;
//! - `/metrics` and `/health` on the admin listener ([`admin`]).
//!
//! Every part is safe to run in several bridges at once: outbox batches and lapsed holds are
//! claimed with `SKIP LOCKED`, and the consumers are consumer groups. The guarantee end to
//! end is at-least-once delivery with exactly-once effects.

mod admin;
mod config;
mod consumer;
mod health;
mod kafka;
mod metrics;
mod notifications;
mod ranking;
mod relay;
mod shutdown;
mod stock;
mod store;
mod sweeper;
mod task;
mod waitlist;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use redis::aio::ConnectionManager;
use ticketing_core::events::EventId;
use ticketing_core::time::Timestamp;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use config::{Config, ConsumerConfig, RelayConfig, SweeperConfig, WaitlistConfig};

use crate::health::Health;
use crate::metrics::Metrics;
use crate::notifications::Notifications;
use crate::ranking::Ranking;
use crate::shutdown::{Backoff, Shutdown};
use crate::store::Store;
use crate::task::Task;

/// Runs the bridge until `shutdown` resolves, serving `/metrics` and `/health` on `admin`.
/// Returns early with an error only for a fault no retry can fix (a bad configuration).
pub async fn run(
    config: Config,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let store = Store::connect(&config.mysql_url)?;
    let redis = redis::Client::open(config.redis_url.as_str()).context("parsing the Redis URL")?;
    let (stop, signal) = Shutdown::new();

    let mut tasks = JoinSet::new();
    {
        let (metrics, health, mut signal) = (metrics.clone(), health.clone(), signal.clone());
        tasks.spawn(async move { admin::serve(admin, metrics, health, signal.wait()).await });
    }
    let task = Task {
        config,
        metrics,
        health,
        shutdown: signal,
    };
    tasks.spawn(relay::run_watch(store.clone(), task.clone()));
    tasks.spawn(event_flow(store, redis, task));

    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        () = &mut shutdown => Ok(()),
        Some(finished) = tasks.join_next() => match finished {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(panicked) => Err(anyhow::anyhow!("a bridge task panicked: {panicked}")),
        },
    };
    let _ = stop.send(true);
    while let Some(finished) = tasks.join_next().await {
        if let Ok(Err(error)) = finished {
            tracing::warn!(error = format!("{error:#}"), "while stopping");
        }
    }
    outcome
}

/// Everything that needs the broker or Redis waits for them: the topics exist first, then
/// the relay, the consumers and the sweeper start.
async fn event_flow(store: Store, redis: redis::Client, task: Task) -> anyhow::Result<()> {
    let Task {
        config,
        health,
        mut shutdown,
        ..
    } = task.clone();
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        match kafka::ensure_topics(&config).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "Kafka not ready");
                health.failing("kafka", &error);
                if !shutdown.sleep(backoff.failed()).await {
                    return Ok(());
                }
            }
        }
    }
    health.ok("kafka");
    let Some(redis) = connect_redis(&redis, &health, &mut shutdown).await else {
        return Ok(());
    };
    let mut parts = JoinSet::new();
    parts.spawn(relay::run(store.clone(), task.clone()));
    parts.spawn(consumer::run(Ranking::new(redis.clone()), task.clone()));
    parts.spawn(consumer::run(
        Notifications::new(store.clone()),
        task.clone(),
    ));
    {
        let (store, redis, task) = (store.clone(), redis.clone(), task.clone());
        parts.spawn(async move {
            stock::run(store, redis, task).await;
            Ok(())
        });
    }
    {
        let (store, redis, task) = (store.clone(), redis.clone(), task.clone());
        parts.spawn(async move {
            waitlist::run(store, redis, task).await;
            Ok(())
        });
    }
    parts.spawn(async move {
        sweeper::run(store, redis, task).await;
        Ok(())
    });
    while let Some(finished) = parts.join_next().await {
        finished.context("a bridge task panicked")??;
    }
    Ok(())
}

async fn connect_redis(
    client: &redis::Client,
    health: &Health,
    shutdown: &mut Shutdown,
) -> Option<ConnectionManager> {
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        match client.get_connection_manager().await {
            Ok(connection) => {
                health.ok("redis");
                return Some(connection);
            }
            Err(error) => {
                let error = anyhow::Error::new(error).context("connecting to Redis");
                tracing::warn!(error = format!("{error:#}"));
                health.failing("redis", &error);
                if !shutdown.sleep(backoff.failed()).await {
                    return None;
                }
            }
        }
    }
}

/// A fresh id for an event the bridge writes at `now`.
fn new_event_id(now: Timestamp) -> anyhow::Result<EventId> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random)
        .map_err(|e| anyhow::anyhow!("no randomness for an event id: {e}"))?;
    Ok(EventId::new(now, random))
}

/// The wall clock as the domain's timestamp.
fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}
