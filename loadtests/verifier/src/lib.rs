//! The invariant verifier: after a load run, proves from the stores themselves (MySQL, Redis
//! and the Kafka topics) that nothing was double-booked, lost or charged twice (the
//! invariants of docs/INVARIANTS.md). Each check counts what it looked at and what violates
//! it; a report is green only when every violation count is zero.
//!
//! The checks read committed state only, so run them once the load has stopped and the
//! bridge has drained the outbox (a hold still live, or an event still in flight, is not a
//! violation, but an event never delivered is).

pub mod kafka;
mod ledger;
mod redis_checks;
mod sql;

use serde::Serialize;

use crate::kafka::KafkaSource;

/// One invariant and what the stores say about it.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub invariant: &'static str,
    /// What was examined (rows, users, positions), for the report.
    pub examined: u64,
    pub violations: u64,
    /// Up to ten offending ids or rows, to start the investigation from.
    pub examples: Vec<String>,
}

impl Check {
    /// A check's result from every violation found; the report keeps the first few.
    pub(crate) fn new(
        name: &'static str,
        invariant: &'static str,
        examined: u64,
        violations: Vec<String>,
    ) -> Self {
        Self {
            name,
            invariant,
            examined,
            violations: violations.len() as u64,
            examples: violations.into_iter().take(EXAMPLES).collect(),
        }
    }

    pub fn ok(&self) -> bool {
        self.violations == 0
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// How many offending rows a check keeps as examples.
const EXAMPLES: usize = 10;

/// Where the state lives; also the command line's flags (or their environment variables).
#[derive(Clone, Debug, clap::Args)]
pub struct Sources {
    #[arg(long, env = "MYSQL_URL")]
    pub mysql_url: String,
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    #[command(flatten)]
    pub kafka: KafkaSource,
}

/// Runs every check.
pub async fn verify(sources: &Sources) -> anyhow::Result<Report> {
    let pool = mysql_async::Pool::new(mysql_async::Opts::from_url(&sources.mysql_url)?);
    let mut checks = sql::run(&pool).await?;
    checks.push(ledger::replayed_by_the_core(&pool).await?);
    let payment_events = sql::delivered_payment_events(&pool).await?;
    let sent = sql::sent_events(&pool).await?;
    pool.disconnect().await?;
    checks.push(in_kafka(&sources.kafka, &sent).await?);
    let redis = redis::Client::open(sources.redis_url.as_str())?;
    let mut connection = redis.get_multiplexed_async_connection().await?;
    checks.push(redis_checks::ranking_applied(&mut connection, &payment_events).await?);
    checks.push(redis_checks::queue_order(&mut connection).await?);
    checks.push(redis_checks::draws_fair(&mut connection).await?);
    Ok(Report {
        ok: checks.iter().all(Check::ok),
        checks,
    })
}

/// Every event the relay marked sent is in its topic under its key (invariant 4 of
/// docs/INVARIANTS.md: nothing lost between the outbox and Kafka). Redelivered copies are
/// allowed; the consumers deduplicate them.
async fn in_kafka(source: &KafkaSource, sent: &[sql::SentEvent]) -> anyhow::Result<Check> {
    let mut topics: Vec<String> = sent.iter().map(|e| e.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let events = kafka::events(source, &topics).await?;
    let violations: Vec<String> = sent
        .iter()
        .filter_map(|e| {
            let wanted = (e.topic.clone(), e.key.clone());
            match events.get(&e.event_id) {
                None => Some(format!(
                    "outbox {} {} event {} is not in Kafka",
                    e.id, e.topic, e.event_id
                )),
                Some(copies) if !copies.placements.contains(&wanted) => Some(format!(
                    "outbox {} event {} is in Kafka as {:?}, not {}/{}",
                    e.id, e.event_id, copies.placements, e.topic, e.key
                )),
                Some(_) => None,
            }
        })
        .collect();
    Ok(Check::new(
        "outbox_in_kafka",
        "every event the relay marked sent is in its Kafka topic under its key",
        sent.len() as u64,
        violations,
    ))
}

impl Report {
    /// A fixed-width table, one line per check.
    pub fn table(&self) -> String {
        let mut text = format!(
            "{:<4} {:<28} {:>10} {:>10}  invariant\n",
            "", "check", "examined", "violations"
        );
        for check in &self.checks {
            let mark = if check.ok() { "ok" } else { "FAIL" };
            text.push_str(&format!(
                "{mark:<4} {:<28} {:>10} {:>10}  {}\n",
                check.name, check.examined, check.violations, check.invariant
            ));
            for example in &check.examples {
                text.push_str(&format!("{:<4} {:<28} e.g. {example}\n", "", ""));
            }
        }
        text
    }
}
