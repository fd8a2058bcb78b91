//! The `edge` command: `edge up` serves a Spin application, `edge build` builds it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use edge::admission::AdmissionSettings;
use edge::engine::{self, EngineSettings};
use edge::instance::ReuseSettings;
use edge::loader::{self, Shared};
use edge::metrics::Metrics;
use edge::mysql::{MysqlPools, MysqlSettings};
use edge::outbound_http::HttpClient;
use edge::redis::{RedisPools, RedisSettings};
use edge::server::{self, ServerSettings};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Every request allocates and frees many small objects on both worker threads (hyper,
/// wasmtime's async machinery, the Redis and MySQL clients); mimalloc's thread-local
/// free lists serve that with less work than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Run Spin applications on wasmtime, without the Spin CLI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "EDGE_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the application's HTTP triggers (like `spin up`).
    Up(Box<UpArgs>),
    /// Run each component's build command (like `spin build`).
    Build {
        /// The application manifest.
        #[arg(long = "from", short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
        /// Build only these components.
        #[arg(long = "component-id", short = 'c')]
        components: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// The application manifest.
    #[arg(long = "from", short = 'f', default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address of the HTTP trigger.
    #[arg(long, default_value = "127.0.0.1:3000", env = "SPIN_HTTP_LISTEN_ADDR")]
    listen: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/health`).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Requests one instance serves before it is replaced; 1 = a fresh instance per request.
    #[arg(long, default_value_t = 128)]
    max_instance_reuse_count: usize,
    /// Requests one instance serves at the same time.
    #[arg(long, default_value_t = 16)]
    max_instance_concurrent_reuse_count: usize,
    /// Time after which a request is answered 504 (e.g. `30s`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// How long an idle instance is kept for reuse.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    idle_instance_timeout: Duration,
    /// Requests handled at once by the whole server while the cores keep up; more wait for
    /// a turn.
    #[arg(long, default_value_t = 1000)]
    max_concurrent_requests: usize,
    /// The least the limit drops to while ready work waits for a core.
    #[arg(long, default_value_t = 32)]
    min_concurrent_requests: usize,
    /// How long ready work may wait for a core before fewer requests run at once (e.g.
    /// `3ms`); `0s` keeps the limit at `--max-concurrent-requests`.
    #[arg(long, default_value = "3ms", value_parser = humantime::parse_duration)]
    scheduling_delay_target: Duration,
    /// A component whose requests wait for a turn behind every other's, repeatable: a
    /// waiting room's polls, so the sale it protects never waits behind its own queue.
    #[arg(long = "low-priority-component", value_name = "COMPONENT")]
    low_priority_components: Vec<String>,
    /// Requests that may wait for a turn at once; more get 503 at once.
    #[arg(long, default_value_t = 20_000)]
    max_waiting_requests: usize,
    /// How long a request waits for a turn before it gets 503 with `Retry-After` (at most
    /// the request timeout).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    max_queue_wait: Duration,
    /// Largest request body, in bytes; larger gets 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_request_body: usize,
    /// Linear memory limit of one instance, in MiB.
    #[arg(long, default_value_t = 128)]
    max_instance_memory_mib: usize,
    /// Instance slots preallocated by the pooling allocator.
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Where compiled components are cached across restarts; `none` disables the cache.
    #[arg(long, default_value = ".state/edge-cache")]
    cache_dir: String,
    /// Write `/tmp/perf-<pid>.map` naming the guests' compiled functions, for `perf`.
    #[arg(long, env = "EDGE_PERF_MAP")]
    perf_map: bool,
    /// Multiplexed Redis connections per address.
    #[arg(long, default_value_t = 4)]
    redis_connections: usize,
    /// MySQL connections per address.
    #[arg(long, default_value_t = 64)]
    mysql_max_connections: usize,
    /// Threads that run requests; 0 = one per CPU. Fewer threads wake each other less often
    /// (less CPU per request where the host shares its cores), but cap what a burst can use.
    #[arg(long, default_value_t = 0, env = "EDGE_WORKER_THREADS")]
    worker_threads: usize,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The engine, backend pools, metrics and instance-reuse policy every component shares.
fn shared_runtime(args: &UpArgs) -> anyhow::Result<Shared> {
    let engine = engine::build(&EngineSettings {
        cache_dir: (args.cache_dir != "none").then(|| PathBuf::from(&args.cache_dir)),
        max_instances: args.max_instances,
        max_instance_memory: args.max_instance_memory_mib << 20,
        perf_map: args.perf_map,
    })?;
    engine::spawn_epoch_ticker(&engine)?;
    let metrics = Arc::new(Metrics::default());
    Ok(Shared {
        engine,
        redis: Arc::new(RedisPools::new(
            RedisSettings {
                connections_per_address: args.redis_connections,
                ..RedisSettings::default()
            },
            metrics.redis_connections.clone(),
        )),
        mysql: Arc::new(MysqlPools::new(MysqlSettings {
            max_connections: args.mysql_max_connections,
            ..MysqlSettings::default()
        })),
        http: HttpClient::default(),
        metrics,
        reuse: ReuseSettings {
            max_requests_per_instance: args.max_instance_reuse_count.max(1),
            max_concurrent_per_instance: args.max_instance_concurrent_reuse_count.max(1),
            idle_timeout: args.idle_instance_timeout,
            request_timeout: args.request_timeout,
        },
        max_instance_memory: args.max_instance_memory_mib << 20,
    })
}

fn server_settings(args: &UpArgs) -> ServerSettings {
    ServerSettings {
        admission: AdmissionSettings {
            max_concurrent: args.max_concurrent_requests,
            min_concurrent: args.min_concurrent_requests,
            scheduling_delay_target: (!args.scheduling_delay_target.is_zero())
                .then_some(args.scheduling_delay_target),
            max_waiting: args.max_waiting_requests,
            max_wait: args.max_queue_wait,
        },
        low_priority_components: args.low_priority_components.clone(),
        max_request_body: args.max_request_body,
        ..ServerSettings::default()
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let shared = shared_runtime(&args)?;
    let mysql = shared.mysql.clone();
    let metrics = shared.metrics.clone();
    let app = loader::load(&args.manifest, |name| std::env::var(name).ok(), shared)
        .with_context(|| format!("loading {}", args.manifest.display()))?;
    let app = Arc::new(app);

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("listening on {}", args.admin_listen))?;
    println!("Serving http://{}", listener.local_addr()?);
    println!("Available Routes:");
    for (route, component) in app.router.routes() {
        println!("  {component}: http://{}{route}", listener.local_addr()?);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_task = tokio::spawn(edge::admin::serve(admin, metrics, stopped(stop_rx.clone())));
    let settings = server_settings(&args);
    let serving = server::serve(listener, app, settings, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    serving.await?;
    // Idle instances expire after the idle timeout; waiting for it lets every worker end
    // cleanly instead of being cut off by the runtime's shutdown.
    tokio::time::sleep(args.idle_instance_timeout + Duration::from_millis(100)).await;
    admin_task.await??;
    mysql.disconnect_all().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Up(args) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if args.worker_threads > 0 {
                runtime.worker_threads(args.worker_threads);
            }
            runtime.enable_all().build()?.block_on(up(*args))
        }
        Command::Build {
            manifest,
            components,
        } => edge::build_cmd::run(&manifest, &components),
    }
}
