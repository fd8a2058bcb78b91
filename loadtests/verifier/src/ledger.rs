//! Every user's ledger replayed by the core's own money rules (`replay_ledger`): the
//! balance the entries add up to is the stored balance, and no prefix of them ever took it
//! below zero. The SQL checks compare sums; this one holds the stores to the spec.

use std::collections::BTreeMap;

use mysql_async::Pool;
use mysql_async::prelude::Queryable;
use ticketing_core::money::{Amount, LedgerEntry, LedgerEntryKind, replay_ledger};

use crate::Check;

pub(crate) async fn replayed_by_the_core(pool: &Pool) -> anyhow::Result<Check> {
    let mut connection = pool.get_conn().await?;
    let rows: Vec<(u64, String, i64)> = connection
        .query("SELECT user_id, entry_type, amount FROM balance_ledger ORDER BY user_id, id")
        .await?;
    let balances: BTreeMap<u64, i64> = connection
        .query("SELECT user_id, amount FROM balances")
        .await?
        .into_iter()
        .collect();
    let mut ledgers: BTreeMap<u64, Vec<(String, i64)>> = BTreeMap::new();
    for (user, kind, amount) in rows {
        ledgers.entry(user).or_default().push((kind, amount));
    }
    let violations = balances
        .iter()
        .filter_map(|(user, stored)| {
            let lines = ledgers.get(user).map_or(&[][..], Vec::as_slice);
            replay(lines, *stored)
                .err()
                .map(|problem| format!("user {user}: {problem}"))
        })
        .collect();
    Ok(Check::new(
        "ledgers_replay",
        "each user's ledger, replayed by the core's money rules from zero, never goes below zero and ends at the stored balance",
        balances.len() as u64,
        violations,
    ))
}

/// The ledger's lines (`entry_type`, signed `amount`) replayed against `stored`.
fn replay(lines: &[(String, i64)], stored: i64) -> Result<(), String> {
    let entries = lines
        .iter()
        .map(|(kind, delta)| {
            let entry = LedgerEntry {
                kind: LedgerEntryKind::parse(kind).ok_or(format!("unknown entry type {kind}"))?,
                amount: Amount::new(delta.unsigned_abs()).map_err(|e| format!("{delta}: {e}"))?,
            };
            if entry.delta() == *delta {
                Ok(entry)
            } else {
                Err(format!(
                    "a {kind} line of {delta} moves money the wrong way"
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let replayed = replay_ledger(entries).map_err(|e| format!("replay fails: {e}"))?;
    if i64::try_from(replayed.minor_units()) == Ok(stored) {
        Ok(())
    } else {
        Err(format!(
            "ledger replays to {}, balance is {stored}",
            replayed.minor_units()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
        entries.iter().map(|(k, a)| ((*k).to_owned(), *a)).collect()
    }

    #[test]
    fn a_ledger_that_adds_up_to_the_balance_passes() {
        let ledger = lines(&[("OPENING", 100), ("PAYMENT", -60), ("REFUND", 60)]);
        assert_eq!(replay(&ledger, 100), Ok(()));
        assert_eq!(replay(&[], 0), Ok(()));
    }

    #[test]
    fn a_balance_the_ledger_does_not_explain_is_a_violation() {
        let ledger = lines(&[("OPENING", 100), ("PAYMENT", -60)]);
        assert!(replay(&ledger, 100).unwrap_err().contains("replays to 40"));
    }

    #[test]
    fn spending_money_that_was_not_there_is_a_violation_even_if_it_sums_up() {
        let ledger = lines(&[("PAYMENT", -60), ("OPENING", 100)]);
        assert!(replay(&ledger, 40).unwrap_err().contains("replay fails"));
    }

    #[test]
    fn a_line_moving_money_against_its_kind_is_a_violation() {
        let ledger = lines(&[("OPENING", 100), ("REFUND", -60)]);
        assert!(replay(&ledger, 40).unwrap_err().contains("wrong way"));
    }
}
