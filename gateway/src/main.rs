//! `payment-gateway`: the simulator as a process, for `make up` and load tests.

use std::time::Duration;

use clap::Parser;
use payment_gateway::{Behaviour, run};

#[derive(Parser, Debug)]
#[command(about = "A payment gateway simulator with configurable latency, declines and hangs")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18080", env = "GATEWAY_LISTEN")]
    listen: String,
    /// Share of authorizations declined (0.0 to 1.0).
    #[arg(long, default_value_t = 0.05, env = "GATEWAY_DECLINE_RATE")]
    decline_rate: f64,
    /// Share of authorizations that hang for --hang.
    #[arg(long, default_value_t = 0.0, env = "GATEWAY_HANG_RATE")]
    hang_rate: f64,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "GATEWAY_HANG")]
    hang: Duration,
    /// Time to answer each request.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration, env = "GATEWAY_LATENCY")]
    latency: Duration,
    #[arg(long, default_value_t = 0, env = "GATEWAY_SEED")]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    for (name, rate) in [("decline", args.decline_rate), ("hang", args.hang_rate)] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "--{name}-rate must be within 0..1"
        );
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(listen = %args.listen, "payment gateway simulator listening");
    run(
        listener,
        Behaviour {
            decline_rate: args.decline_rate,
            hang_rate: args.hang_rate,
            hang: args.hang,
            latency: args.latency,
            seed: args.seed,
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await
}
