//! `verify`: checks every invariant after a load run (MySQL, Redis, Kafka); prints a table, optionally writes the
//! report as JSON, and exits 1 when any invariant is violated.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ticketing_verifier::{Sources, verify};

#[derive(Parser, Debug)]
#[command(about = "Checks the ticketing invariants against MySQL, Redis and Kafka")]
struct Args {
    #[command(flatten)]
    sources: Sources,
    /// Also write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let report = verify(&args.sources).await?;
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
