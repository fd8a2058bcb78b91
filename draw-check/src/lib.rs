//! `draw-check`: a fan's or an auditor's check of an on-sale draw, from public data only
//! (`ticketing_core::draw` says how the draw works).
//!
//! It reads the queue's published draw (`GET /api/queue/draw?queueId=…`, saved to a file or
//! piped in), checks that the revealed seed hashes to the commitment, recomputes the order
//! from the seed and the entrants, and compares it place by place. A commitment saved before
//! opening (`--commitment`) is trusted over the one published with the seed, so a queue
//! cannot swap both afterwards. `--user` also prints that fan's place, so each fan can see
//! they were drawn at all.

use anyhow::{Context, Result};
use ticketing_core::draw::{Commitment, PublishedDraw};
use ticketing_core::ids::UserId;

/// What the check found, as printed.
pub fn check(json: &str, commitment: Option<&str>, user: Option<&str>) -> Result<String> {
    let draw: PublishedDraw = serde_json::from_str(json).context("reading the published draw")?;
    let commitment = commitment
        .map(Commitment::parse_hex)
        .transpose()
        .context("--commitment")?;
    let user = user.map(UserId::parse).transpose().context("--user")?;
    draw.check(commitment.as_ref())
        .with_context(|| format!("the draw of queue {} does not check out", draw.queue_id))?;
    let mut report = format!(
        "the draw of queue {} checks out: {} entrants, seed {} hashes to commitment {}",
        draw.queue_id,
        draw.order.len(),
        draw.seed
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        commitment.unwrap_or(draw.commitment),
    );
    if let Some(user) = user {
        let rank = draw
            .rank_of(user)
            .with_context(|| format!("user {user} is not among the entrants"))?;
        report.push_str(&format!(
            "\nuser {user} was drawn {rank} of {}",
            draw.order.len()
        ));
    }
    Ok(report)
}
