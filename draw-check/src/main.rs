use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Checks a queue's on-sale draw from its public data.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The published draw as JSON (`GET /api/queue/draw?queueId=…`); `-` reads stdin.
    #[arg(default_value = "-")]
    draw: PathBuf,
    /// The commitment as it was published before opening, to trust over the one in the
    /// draw.
    #[arg(long)]
    commitment: Option<String>,
    /// Also print this fan's place in the draw.
    #[arg(long)]
    user: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let checked = read(&args.draw).and_then(|json| {
        draw_check::check(&json, args.commitment.as_deref(), args.user.as_deref())
    });
    match checked {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("draw-check: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    let mut json = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut json)
            .context("reading stdin")?;
    } else {
        json =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(json)
}
