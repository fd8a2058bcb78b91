//! What a guest did to its pooled session, and the cheapest way to hand the session to the
//! next guest as if it were new.
//!
//! Resetting every returned connection (`COM_RESET_CONNECTION`) also drops the server's
//! prepared statements, so every statement of the next request paid a prepare round trip
//! (measured: as many prepares as executes). Most requests only read, write and commit, which
//! leaves nothing behind; those sessions go back as they are. A session whose state the
//! host can name (an open transaction, system variables set for the session) is restored by
//! `ROLLBACK` and `SET SESSION … = DEFAULT`; anything else (user variables, temporary
//! tables, locks, character sets, statements it does not recognise) is reset.
//! `LAST_INSERT_ID()` and `ROW_COUNT()` are not cleared between guests; like on any shared
//! session they only mean something right after the guest's own statement.

use std::collections::BTreeSet;

/// The session state a guest's statements left behind.
#[derive(Debug, Default)]
pub(super) struct SessionUse {
    /// A transaction may be open (started and not yet committed or rolled back).
    transaction: bool,
    /// `SET TRANSACTION …` not yet consumed by a transaction start.
    next_transaction_set: bool,
    /// Session system variables the guest set.
    variables: BTreeSet<String>,
    /// Something only a reset undoes.
    needs_reset: bool,
}

/// How to hand the session to the next guest.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// Untouched: back to the pool as it is.
    AsIs,
    /// Run these statements, in order; on any failure, reset instead.
    Restore(Vec<String>),
    Reset,
}

impl SessionUse {
    /// Notes a statement the guest is about to run. Runs for every statement, so it reads
    /// the text in place without copying it.
    pub(super) fn record(&mut self, statement: &str) {
        let statement = statement.trim().trim_end_matches(';');
        // `@` names user variables and `@@` system variables, which a SELECT can assign;
        // a `;` inside starts another statement (the text protocol runs several).
        if statement.contains(['@', ';']) {
            self.needs_reset = true;
            return;
        }
        let first = statement.split_whitespace().next().unwrap_or_default();
        let is = |keyword: &str| first.eq_ignore_ascii_case(keyword);
        if is("START") || is("BEGIN") {
            self.transaction = true;
            self.next_transaction_set = false;
        } else if is("COMMIT") || is("ROLLBACK") {
            self.transaction = false;
        } else if ["SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH"]
            .into_iter()
            .any(is)
        {
            // Locking functions (GET_LOCK, …) hold their lock past the request.
            if statement
                .as_bytes()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"_lock("))
            {
                self.needs_reset = true;
            }
        } else if is("SET") {
            self.record_set(&statement[first.len()..]);
        } else {
            self.needs_reset = true;
        }
    }

    /// `rest` is what follows `SET`.
    fn record_set(&mut self, rest: &str) {
        let rest = rest.trim_start();
        let (head, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if head.eq_ignore_ascii_case("TRANSACTION") {
            self.next_transaction_set = true;
            return;
        }
        let assignments =
            if head.eq_ignore_ascii_case("SESSION") || head.eq_ignore_ascii_case("LOCAL") {
                tail
            } else {
                rest
            };
        // `name = value[, name = value …]` of plain system variables; values are numbers or
        // words (a quoted value could hide a comma). Anything else: reset.
        let plain = |text: &str, extra: &[char]| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
        };
        let reserved = [
            "GLOBAL",
            "NAMES",
            "CHARACTER",
            "PASSWORD",
            "ROLE",
            "TRANSACTION",
        ];
        for assignment in assignments.split(',') {
            let Some((name, value)) = assignment.split_once('=') else {
                self.needs_reset = true;
                return;
            };
            let (name, value) = (name.trim(), value.trim());
            if !plain(name, &[])
                || !plain(value, &['.', '-'])
                || reserved.iter().any(|word| name.eq_ignore_ascii_case(word))
            {
                self.needs_reset = true;
                return;
            }
            self.variables.insert(name.to_ascii_lowercase());
        }
    }

    /// What the next guest needs done to this session.
    pub(super) fn release(&self) -> Release {
        if self.needs_reset || self.next_transaction_set {
            return Release::Reset;
        }
        let mut statements = Vec::new();
        // With autocommit off every statement opens a transaction, and restoring it would
        // commit that: roll back first.
        if self.transaction || self.variables.contains("autocommit") {
            statements.push("ROLLBACK".to_owned());
        }
        if !self.variables.is_empty() {
            let defaults: Vec<String> = self
                .variables
                .iter()
                .map(|name| format!("{name} = DEFAULT"))
                .collect();
            statements.push(format!("SET SESSION {}", defaults.join(", ")));
        }
        if statements.is_empty() {
            Release::AsIs
        } else {
            Release::Restore(statements)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(statements: &[&str]) -> Release {
        let mut session = SessionUse::default();
        for statement in statements {
            session.record(statement);
        }
        session.release()
    }

    #[test]
    fn reads_writes_and_finished_transactions_leave_the_session_as_it_was() {
        assert_eq!(
            after(&[
                "SELECT id FROM seats WHERE id = ?",
                "start transaction",
                "UPDATE seats SET status = 'SOLD' WHERE id = ?",
                "INSERT INTO outbox (topic) VALUES (?)",
                "SELECT ROW_COUNT() AS n",
                "COMMIT",
            ]),
            Release::AsIs
        );
    }

    #[test]
    fn a_transaction_left_open_is_rolled_back() {
        assert_eq!(
            after(&["START TRANSACTION", "DELETE FROM seats"]),
            Release::Restore(vec!["ROLLBACK".to_owned()])
        );
    }

    #[test]
    fn session_variables_go_back_to_their_defaults() {
        assert_eq!(
            after(&[
                "SET SESSION innodb_lock_wait_timeout = 3",
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "START TRANSACTION",
                "COMMIT",
            ]),
            Release::Restore(vec![
                "SET SESSION innodb_lock_wait_timeout = DEFAULT".to_owned()
            ])
        );
    }

    #[test]
    fn turning_autocommit_back_on_comes_after_a_rollback() {
        assert_eq!(
            after(&[
                "set sql_mode = ANSI, autocommit = 0",
                "INSERT INTO seats (id) VALUES (1)",
                "SET SESSION innodb_lock_wait_timeout = 3",
            ]),
            Release::Restore(vec![
                "ROLLBACK".to_owned(),
                "SET SESSION autocommit = DEFAULT, innodb_lock_wait_timeout = DEFAULT, \
                 sql_mode = DEFAULT"
                    .to_owned()
            ])
        );
    }

    #[test]
    fn state_only_a_reset_undoes_resets_the_session() {
        for statements in [
            &["SET @x = 1"][..],
            &["SELECT @@SESSION.sql_mode"],
            &["SELECT GET_LOCK('a', 1)"],
            &["SET NAMES latin1"],
            &["SET GLOBAL max_connections = 1"],
            &["SET sql_mode = 'a,b'"],
            &["SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
            // Characteristics for a transaction that never started would pass to the next.
            &["SET TRANSACTION READ ONLY"],
            &["CREATE TEMPORARY TABLE t (id INT)"],
            &["LOCK TABLES seats WRITE"],
            &["USE other"],
            &["COMMIT; CREATE TEMPORARY TABLE t (id INT)"],
            &[""],
        ] {
            assert_eq!(after(statements), Release::Reset, "{statements:?}");
        }
    }
}
