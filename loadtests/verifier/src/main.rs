//! `verify`: checks every invariant after a load run (MySQL, Redis, Kafka); prints a table, optionally writes the
//! report as JSON, and exits 1 when any invariant is violated.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ticketing_verifier::kafka::KafkaSource;
use ticketing_verifier::{Sources, verify};

#[derive(Parser, Debug)]
#[command(about = "Checks the ticketing invariants against MySQL, Redis and Kafka")]
struct Args {
    #[arg(long, env = "MYSQL_URL")]
    mysql_url: String,
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: String,
    /// The bridge's topic prefix.
    #[arg(long, env = "BRIDGE_NAMESPACE", default_value = "")]
    kafka_namespace: String,
    /// Also write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let report = verify(&Sources {
        mysql_url: args.mysql_url,
        redis_url: args.redis_url,
        kafka: KafkaSource {
            brokers: args.kafka_brokers,
            namespace: args.kafka_namespace,
        },
    })
    .await?;
    print!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
