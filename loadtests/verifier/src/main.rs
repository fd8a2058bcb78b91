//! `verify`: checks every invariant after a load run; prints a table, optionally writes the
//! report as JSON, and exits 1 when any invariant is violated.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ticketing_verifier::{Sources, verify};

#[derive(Parser, Debug)]
#[command(about = "Checks the ticketing invariants against MySQL and Redis")]
struct Args {
    #[arg(long, env = "MYSQL_URL")]
    mysql_url: String,
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
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
