//! What a guest did to its pooled session, and the cheapest way to hand the session to the
//! next guest as if it were new.
//!
//! Resetting every returned connection (`COM_RESET_CONNECTION`) also drops the server's
//! prepared statements, so every statement of the next request paid a prepare round trip
//! (measured: as many prepares as executes). Most requests only read, write and commit, which
//! leaves nothing behind; those sessions go back as they are. A session left with only
//! session system variables set is parked with them, and its next guest gets them restored
//! (`SET SESSION … = DEFAULT`) just before its first statement, unless that statement sets
//! the same values again: then neither is sent. A transaction that starts with
//! `SET SESSION innodb_lock_wait_timeout = 3` on every request saves two of its round trips
//! that way. A transaction left open is rolled back and its variables restored at once;
//! anything else (user variables, temporary tables, locks, character sets, statements the
//! host does not recognise) is reset. `LAST_INSERT_ID()` and `ROW_COUNT()` are not cleared
//! between guests; like on any shared session they only mean something right after the
//! guest's own statement.

use std::collections::BTreeMap;

/// Session system variables by lowercase name, with the value as the guest wrote it.
pub(super) type Settings = BTreeMap<String, String>;

/// The session state a guest's statements left behind.
#[derive(Debug, Default)]
pub(super) struct SessionUse {
    /// A transaction may be open (started and not yet committed or rolled back).
    transaction: bool,
    /// `SET TRANSACTION …` not yet consumed by a transaction start.
    next_transaction_set: bool,
    /// Session system variables the guest set.
    variables: Settings,
    /// Settings an earlier guest left on the session that this one has not set again; they
    /// are restored before its first statement that does not set them.
    inherited: Settings,
    /// Something only a reset undoes.
    needs_reset: bool,
}

/// How to hand the session to the next guest.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// Untouched: back to the pool as it is.
    AsIs,
    /// Only these settings differ from a new session: park it with them, for a guest that
    /// is likely to set the same (see [`SessionUse::record`]).
    Carry(Settings),
    /// Run these statements, in order; on any failure, reset instead.
    Restore(Vec<String>),
    Reset,
}

/// What the host does for a statement the guest is about to run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The statement sets only what the session already holds from the previous guest.
    Skip,
    /// Run it, after `restore` if given (the inherited settings going back to defaults).
    Run { restore: Option<String> },
}

impl SessionUse {
    /// A session that carries `inherited` from the previous guest.
    pub(super) fn inheriting(inherited: Settings) -> Self {
        Self {
            inherited,
            ..Self::default()
        }
    }

    /// Notes a statement the guest is about to run. Runs for every statement, so it reads
    /// the text in place without copying it. A `skippable` statement (one whose caller
    /// expects no rows) that sets what the session inherited with the same values is not
    /// sent at all: transactions that begin with the same `SET SESSION` every time pay
    /// neither that round trip nor the previous guest's restore.
    pub(super) fn record(&mut self, statement: &str, skippable: bool) -> Step {
        let statement = statement.trim().trim_end_matches(';');
        if self.inherited.is_empty() {
            self.note(statement);
            return Step::Run { restore: None };
        }
        if skippable
            && let Some(assignments) = session_assignments(statement)
            && assignments
                .iter()
                .all(|(name, value)| self.inherited.get(name) == Some(value))
        {
            for (name, value) in assignments {
                self.inherited.remove(&name);
                self.variables.insert(name, value);
            }
            return Step::Skip;
        }
        let restore = defaults(self.inherited.keys());
        self.inherited.clear();
        self.note(statement);
        Step::Run {
            restore: Some(restore),
        }
    }

    fn note(&mut self, statement: &str) {
        // `@` names user variables and `@@` system variables, which a SELECT can assign;
        // a `;` inside starts another statement (the text protocol runs several).
        if statement.contains(['@', ';']) {
            self.needs_reset = true;
            return;
        }
        let first = first_word(statement);
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
            let rest = statement[first.len()..].trim_start();
            if first_word(rest).eq_ignore_ascii_case("TRANSACTION") {
                self.next_transaction_set = true;
            } else if let Some(assignments) = plain_assignments(rest) {
                self.variables.extend(assignments);
            } else {
                self.needs_reset = true;
            }
        } else {
            self.needs_reset = true;
        }
    }

    /// The restore [`Step::Run`] asked for failed: what the session holds is unknown.
    pub(super) fn restore_failed(&mut self) {
        self.needs_reset = true;
    }

    /// What the next guest needs done to this session.
    pub(super) fn release(&self) -> Release {
        if self.needs_reset || self.next_transaction_set {
            return Release::Reset;
        }
        let mut settings = self.inherited.clone();
        settings.extend(self.variables.clone());
        // With autocommit off every statement opens a transaction, and restoring it would
        // commit that: roll back first.
        if self.transaction || settings.contains_key("autocommit") {
            let mut statements = vec!["ROLLBACK".to_owned()];
            if !settings.is_empty() {
                statements.push(defaults(settings.keys()));
            }
            return Release::Restore(statements);
        }
        if settings.is_empty() {
            Release::AsIs
        } else {
            Release::Carry(settings)
        }
    }
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or_default()
}

/// `SET SESSION name = DEFAULT, …` for `names`.
fn defaults<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let defaults: Vec<String> = names.map(|name| format!("{name} = DEFAULT")).collect();
    format!("SET SESSION {}", defaults.join(", "))
}

/// The assignments of `SET [SESSION | LOCAL] name = value, …` when they are all plain.
fn session_assignments(statement: &str) -> Option<Vec<(String, String)>> {
    let first = first_word(statement);
    if !first.eq_ignore_ascii_case("SET") {
        return None;
    }
    plain_assignments(statement[first.len()..].trim_start())
}

/// `rest`, what follows `SET`, as `name = value[, name = value …]` of plain session system
/// variables: values are numbers or words (a quoted value could hide a comma). `None` for
/// anything else, which only a reset undoes.
fn plain_assignments(rest: &str) -> Option<Vec<(String, String)>> {
    let head = first_word(rest);
    let assignments = if head.eq_ignore_ascii_case("SESSION") || head.eq_ignore_ascii_case("LOCAL")
    {
        &rest[head.len()..]
    } else {
        rest
    };
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
    assignments
        .split(',')
        .map(|assignment| {
            let (name, value) = assignment.split_once('=')?;
            let (name, value) = (name.trim(), value.trim());
            let valid = plain(name, &[])
                && plain(value, &['.', '-'])
                && !reserved.iter().any(|word| name.eq_ignore_ascii_case(word));
            valid.then(|| (name.to_ascii_lowercase(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(statements: &[&str]) -> Release {
        let mut session = SessionUse::default();
        for statement in statements {
            assert_eq!(session.record(statement, true), Step::Run { restore: None });
        }
        session.release()
    }

    fn lock_wait(seconds: &str) -> Settings {
        Settings::from([("innodb_lock_wait_timeout".to_owned(), seconds.to_owned())])
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
    fn a_session_left_with_only_variables_set_is_carried_with_them() {
        assert_eq!(
            after(&[
                "SET SESSION innodb_lock_wait_timeout = 3",
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "START TRANSACTION",
                "COMMIT",
            ]),
            Release::Carry(lock_wait("3"))
        );
    }

    #[test]
    fn setting_what_the_session_carries_is_skipped_and_carried_on() {
        let mut session = SessionUse::inheriting(lock_wait("3"));
        assert_eq!(
            session.record("set local INNODB_LOCK_WAIT_TIMEOUT = 3;", true),
            Step::Skip
        );
        assert_eq!(
            session.record("START TRANSACTION", true),
            Step::Run { restore: None }
        );
        session.record("COMMIT", true);
        assert_eq!(session.release(), Release::Carry(lock_wait("3")));
    }

    #[test]
    fn carried_variables_are_restored_before_the_first_statement_that_does_not_set_them() {
        let restore = Step::Run {
            restore: Some("SET SESSION innodb_lock_wait_timeout = DEFAULT".to_owned()),
        };
        for (statement, skippable) in [
            ("SELECT 1", true),
            ("SET SESSION innodb_lock_wait_timeout = 4", true),
            (
                "SET SESSION innodb_lock_wait_timeout = 3, sql_mode = ANSI",
                true,
            ),
            // A query's caller reads a result, so it is always sent.
            ("SET SESSION innodb_lock_wait_timeout = 3", false),
        ] {
            let mut session = SessionUse::inheriting(lock_wait("3"));
            assert_eq!(session.record(statement, skippable), restore, "{statement}");
            assert_eq!(
                session.record("SELECT 2", true),
                Step::Run { restore: None },
                "restored once"
            );
        }
    }

    #[test]
    fn carried_variables_nobody_restored_are_carried_again_or_rolled_back_with_the_rest() {
        assert_eq!(
            SessionUse::inheriting(lock_wait("3")).release(),
            Release::Carry(lock_wait("3"))
        );
        let mut session = SessionUse::inheriting(lock_wait("3"));
        session.record("SET SESSION innodb_lock_wait_timeout = 3", true);
        session.record("START TRANSACTION", true);
        assert_eq!(
            session.release(),
            Release::Restore(vec![
                "ROLLBACK".to_owned(),
                "SET SESSION innodb_lock_wait_timeout = DEFAULT".to_owned()
            ])
        );
        let mut session = SessionUse::inheriting(lock_wait("3"));
        session.record("SELECT 1", true);
        session.restore_failed();
        assert_eq!(session.release(), Release::Reset);
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
