//! `bridge`: the Kafka bridge as a process, for `make up`, compose and the tests.

use std::time::Duration;

use clap::Parser;
use ticketing_bridge::{Config, ConsumerConfig, RelayConfig, SweeperConfig, WaitlistConfig, run};
use ticketing_core::waitlist::OfferPolicy;

#[derive(Parser, Debug)]
#[command(
    about = "Relays the MySQL outbox to Kafka and runs the ranking, notification, hold-expiry, stock and waitlist workers"
)]
struct Args {
    #[arg(long, env = "MYSQL_URL")]
    mysql_url: String,
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Address of /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:9091", env = "BRIDGE_LISTEN")]
    listen: String,
    /// Prefix of every topic and consumer group name.
    #[arg(long, default_value = "", env = "BRIDGE_NAMESPACE")]
    namespace: String,
    #[arg(long, default_value_t = 3, env = "BRIDGE_PARTITIONS")]
    partitions: i32,
    #[arg(long, default_value_t = 1, env = "BRIDGE_REPLICATION")]
    replication: i32,
    #[arg(long, default_value_t = 500, env = "BRIDGE_RELAY_BATCH")]
    relay_batch: usize,
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration, env = "BRIDGE_RELAY_IDLE_POLL")]
    relay_idle_poll: Duration,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "BRIDGE_DELIVERY_TIMEOUT")]
    delivery_timeout: Duration,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "BRIDGE_MAX_BACKOFF")]
    max_backoff: Duration,
    /// How long delivered outbox rows are kept (0s keeps them).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, env = "BRIDGE_OUTBOX_RETENTION")]
    outbox_retention: Duration,
    #[arg(long, default_value_t = 500, env = "BRIDGE_CONSUMER_BATCH")]
    consumer_batch: usize,
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration, env = "BRIDGE_SESSION_TIMEOUT")]
    session_timeout: Duration,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, env = "BRIDGE_SWEEP_INTERVAL")]
    sweep_interval: Duration,
    #[arg(long, default_value_t = 200, env = "BRIDGE_SWEEP_BATCH")]
    sweep_batch: usize,
    /// How long a fan has to pay a seat offered from a waitlist.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, env = "BRIDGE_WAITLIST_OFFER_TTL")]
    waitlist_offer_ttl: Duration,
    #[arg(long, default_value_t = 200, env = "BRIDGE_WAITLIST_BATCH")]
    waitlist_batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.relay_batch > 0
            && args.consumer_batch > 0
            && args.sweep_batch > 0
            && args.waitlist_batch > 0,
        "batch sizes must be at least 1"
    );
    let config = Config {
        mysql_url: args.mysql_url,
        redis_url: args.redis_url,
        brokers: args.brokers,
        namespace: args.namespace,
        partitions: args.partitions,
        replication: args.replication,
        relay: RelayConfig {
            batch: args.relay_batch,
            idle_poll: args.relay_idle_poll,
            delivery_timeout: args.delivery_timeout,
            max_backoff: args.max_backoff,
            retention: args.outbox_retention,
        },
        consumers: ConsumerConfig {
            batch: args.consumer_batch,
            session_timeout: args.session_timeout,
        },
        sweeper: SweeperConfig {
            interval: args.sweep_interval,
            batch: args.sweep_batch,
        },
        waitlist: WaitlistConfig {
            offer: OfferPolicy::new(args.waitlist_offer_ttl)?,
            batch: args.waitlist_batch,
        },
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "bridge admin listening");
    run(config, listener, stop_signal()).await
}

/// SIGTERM (from `infra/local/down`, compose, Kubernetes) or Ctrl-C.
async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping: finishing the current batches");
}
