//! The MySQL side every store shares: a connection with explicit transactions, errors sorted
//! into what a caller can act on (retry a deadlock, report a duplicate, answer 503), typed
//! reads of columns, and the transactional outbox.
//!
//! Spin's `execute` reports no affected-row count, so conditional writes read
//! `ROW_COUNT()` on the same connection right after, inside the same transaction.

mod connections;

use std::cell::Cell;

use spin_sdk::mysql::{self, DbValue, ParameterValue};
use ticketing_core::ApiError;
use ticketing_core::events::{Envelope, Event, EventId};
use ticketing_core::time::Timestamp;

/// A MySQL failure, by what the caller can do about it.
#[derive(Debug)]
pub enum DbError {
    /// A deadlock or a lock wait timeout: the transaction was rolled back; run it again.
    Contention,
    /// A unique key refused the write (MySQL error 1062).
    Duplicate(String),
    /// The server is unreachable or failed otherwise.
    Unavailable(String),
    /// This code and the database disagree (an unreadable column, an event that does not
    /// encode): a bug, which retrying will not fix.
    Internal(String),
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Internal(cause) => ApiError::internal(format!("mysql: {cause}")),
            other => {
                eprintln!("mysql: {other:?}");
                ApiError::unavailable("mysql")
            }
        }
    }
}

impl DbError {
    fn classify(error: &mysql::Error) -> Self {
        let text = format!("{error:?}");
        match server_error_code(&text) {
            // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
            Some(1213 | 1205) => DbError::Contention,
            // ER_DUP_ENTRY
            Some(1062) => DbError::Duplicate(text),
            _ => DbError::Unavailable(text),
        }
    }
}

/// The server's error number in a failed statement's text. Spin (and edge, as Spin does)
/// reports a refused statement as `query-failed` with the driver's debug text,
/// `Server(ServerError { code: 1213, … })`; a failure while rows stream carries the
/// driver's display text, `ERROR 1213 (40001): …`.
fn server_error_code(text: &str) -> Option<u16> {
    let after = text
        .split_once("code: ")
        .or_else(|| text.split_once("ERROR "))?
        .1;
    let end = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    after[..end].parse().ok()
}

pub type DbResult<T> = Result<T, DbError>;

/// How long a statement waits for a row lock before giving up (a transaction is then retried).
pub const LOCK_WAIT_SECONDS: u32 = 3;

/// Attempts of a transaction that lost a deadlock or a lock wait.
pub const ATTEMPTS: usize = 3;

/// Runs `$transaction` (an expression making a fresh future of a `DbResult`) until it
/// commits or fails for another reason than contention, rolling back after every failed
/// attempt. A transaction that refuses for a business reason rolls back itself and
/// returns `Ok` with the refusal.
#[macro_export]
macro_rules! with_retries {
    ($db:expr, $transaction:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            match $transaction.await {
                Err($crate::DbError::Contention) if attempt < $crate::ATTEMPTS => {
                    $db.rollback().await
                }
                Err(error) => {
                    $db.rollback().await;
                    break Err(error);
                }
                Ok(value) => break Ok(value),
            }
        }
    }};
}

/// One connection; statements run in order on it, so session state (a transaction,
/// `ROW_COUNT()`, `LAST_INSERT_ID()`) carries from one to the next. Dropping it hands the
/// connection back to [`connections`], which decides when it may be closed.
pub struct Db {
    connection: Option<mysql::Connection>,
    address: String,
    session: Cell<Session>,
}

/// Whether the connection may serve another request of this instance as it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    Clean,
    /// Between `START TRANSACTION` and a successful `COMMIT` or `ROLLBACK`.
    InTransaction,
    /// A call failed for another reason than a refused write: the connection may be gone.
    Suspect,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            let clean = self.session.get() == Session::Clean;
            connections::release(std::mem::take(&mut self.address), connection, clean);
        }
    }
}

impl Db {
    /// A session whose lock waits give up after [`LOCK_WAIT_SECONDS`], so no statement of a
    /// request queues behind a row lock for the server's default 50 s. A connection this
    /// instance released clean already has the setting; a new one gets it as its first
    /// statement, which the host skips on a pooled session that already has it (edge's
    /// `session` module).
    pub async fn open(address: &str) -> DbResult<Self> {
        let (connection, new) = connections::connect(address)
            .await
            .map_err(|error| DbError::Unavailable(format!("{error:?}")))?;
        let db = Self {
            connection: Some(connection),
            address: address.to_owned(),
            session: Cell::new(Session::Clean),
        };
        if new {
            db.execute(
                &format!("SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"),
                vec![],
            )
            .await?;
        }
        Ok(db)
    }

    fn connection(&self) -> &mysql::Connection {
        self.connection
            .as_ref()
            .expect("a Db holds its connection until it is dropped")
    }

    /// Every row of `statement`, read from the host's stream as many at a time as the host
    /// hands over (edge: a batch; Spin 4.1: one per read, so many rows cost many hand-overs
    /// under a crowd, and hot reads are shaped to return few rows, see `SeatNumbers`).
    pub async fn query(&self, statement: &str, params: Vec<ParameterValue>) -> DbResult<Vec<Row>> {
        let result = match self.connection().query(statement, params).await {
            Ok(result) => result,
            Err(error) => return Err(self.failed(&error)),
        };
        let (_, rows, outcome) = result.into_inner();
        let rows = rows.collect().await;
        match outcome.await {
            Ok(()) => Ok(rows),
            Err(error) => Err(self.failed(&mysql::Error::MysqlError(error))),
        }
    }

    pub async fn execute(&self, statement: &str, params: Vec<ParameterValue>) -> DbResult<()> {
        self.connection()
            .execute(statement, params)
            .await
            .map_err(|error| self.failed(&error))
    }

    /// The failure's class; a connection that failed for another reason than a refused
    /// write is not reused.
    fn failed(&self, error: &mysql::Error) -> DbError {
        let class = DbError::classify(error);
        if matches!(class, DbError::Unavailable(_)) {
            self.session.set(Session::Suspect);
        }
        class
    }

    /// Moves a session that is not suspect to `next`.
    fn mark(&self, next: Session) {
        if self.session.get() != Session::Suspect {
            self.session.set(next);
        }
    }

    /// Starts a READ COMMITTED transaction. Under READ COMMITTED a conditional `UPDATE` skips
    /// rows whose committed version does not match instead of queueing behind their locks,
    /// which is what keeps losers of a seat race fast.
    pub async fn begin(&self) -> DbResult<()> {
        self.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", vec![])
            .await?;
        self.mark(Session::InTransaction);
        self.execute("START TRANSACTION", vec![]).await
    }

    pub async fn commit(&self) -> DbResult<()> {
        self.execute("COMMIT", vec![]).await?;
        self.mark(Session::Clean);
        Ok(())
    }

    /// Rolls back; after a failure here the connection is not reused, so the transaction
    /// ends with it.
    pub async fn rollback(&self) {
        if self.execute("ROLLBACK", vec![]).await.is_ok() {
            self.mark(Session::Clean);
        }
    }

    /// Rows changed by the previous statement.
    pub async fn row_count(&self) -> DbResult<u64> {
        self.read_one("SELECT ROW_COUNT() AS n", |row| column_u64(row, 0))
            .await
    }

    /// The id the previous `INSERT` generated.
    pub async fn last_insert_id(&self) -> DbResult<u64> {
        self.read_one("SELECT LAST_INSERT_ID() AS n", |row| column_u64(row, 0))
            .await
    }

    /// The rows the previous statement changed and the id the connection's last `INSERT`
    /// generated, in one round trip.
    pub async fn row_count_and_last_insert_id(&self) -> DbResult<(u64, u64)> {
        self.read_one("SELECT ROW_COUNT(), LAST_INSERT_ID()", |row| {
            Some((column_u64(row, 0)?, column_u64(row, 1)?))
        })
        .await
    }

    /// What `read` takes from the one row of a parameterless `statement`.
    async fn read_one<T>(
        &self,
        statement: &str,
        read: impl FnOnce(&Row) -> Option<T>,
    ) -> DbResult<T> {
        let rows = self.query(statement, vec![]).await?;
        rows.first()
            .and_then(read)
            .ok_or_else(|| DbError::Internal(format!("{statement} returned nothing")))
    }

    /// Writes `event` to the outbox; call inside the transaction that makes it true.
    pub async fn publish<E: Event>(&self, event: &E, now: Timestamp) -> DbResult<()> {
        self.publish_all(&[envelope(event, now)?]).await
    }

    /// Writes several events to the outbox in one statement, in order.
    pub async fn publish_all(&self, envelopes: &[Envelope]) -> DbResult<()> {
        let mut params = Vec::with_capacity(envelopes.len() * 5);
        for envelope in envelopes {
            let payload = envelope
                .to_json()
                .map_err(|error| DbError::Internal(format!("encoding an event: {error}")))?;
            let topic = envelope.topic().ok_or_else(|| {
                DbError::Internal(format!("no topic for {}", envelope.event_type))
            })?;
            params.extend([
                text(envelope.event_id.to_string()),
                text(topic.name()),
                text(envelope.key.clone()),
                text(payload),
                datetime(envelope.occurred_at),
            ]);
        }
        self.execute(
            &format!(
                "INSERT INTO outbox (event_id, topic, event_key, payload, created_at) VALUES {}",
                vec!["(?, ?, ?, ?, ?)"; envelopes.len()].join(", ")
            ),
            params,
        )
        .await
    }
}

/// `event` in its envelope, under a new event id, as the outbox stores it.
pub fn envelope<E: Event>(event: &E, now: Timestamp) -> DbResult<Envelope> {
    Envelope::wrap(event, new_event_id(now), now)
        .map_err(|error| DbError::Internal(format!("encoding an event: {error}")))
}

/// A time-ordered event id (UUIDv7) with 80 random bits from the host.
fn new_event_id(now: Timestamp) -> EventId {
    let mut random = [0u8; 10];
    // wasi:random cannot fail on a working host; zeroes would still be unique per ms + row.
    let _ = getrandom::fill(&mut random);
    EventId::new(now, random)
}

pub fn id(value: u64) -> ParameterValue {
    ParameterValue::Uint64(value)
}

pub fn int(value: i64) -> ParameterValue {
    ParameterValue::Int64(value)
}

pub fn text(value: impl Into<String>) -> ParameterValue {
    ParameterValue::Str(value.into())
}

pub fn datetime(at: Timestamp) -> ParameterValue {
    ParameterValue::Str(at.to_sql_datetime())
}

pub use store_sql::placeholders;

/// A result row: its values in the order of the statement's columns.
pub type Row = Vec<DbValue>;

/// A non-negative integer column, whatever integer type or text the server sent.
pub fn column_u64(row: &Row, index: usize) -> Option<u64> {
    match &row[index] {
        DbValue::Uint64(n) => Some(*n),
        DbValue::Uint32(n) => Some(u64::from(*n)),
        DbValue::Uint16(n) => Some(u64::from(*n)),
        DbValue::Uint8(n) => Some(u64::from(*n)),
        DbValue::Int64(n) => u64::try_from(*n).ok(),
        DbValue::Int32(n) => u64::try_from(*n).ok(),
        DbValue::Int16(n) => u64::try_from(*n).ok(),
        DbValue::Int8(n) => u64::try_from(*n).ok(),
        DbValue::Str(text) => text.parse().ok(),
        DbValue::Binary(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

/// A non-negative integer column through a parse constructor (an id, an amount); a NULL,
/// unreadable or invalid value is [`corrupt`], named by `what`.
pub fn column_as<T, E>(
    row: &Row,
    index: usize,
    what: &str,
    parse: impl FnOnce(u64) -> Result<T, E>,
) -> DbResult<T> {
    column_u64(row, index)
        .and_then(|n| parse(n).ok())
        .ok_or_else(|| corrupt(what))
}

pub fn column_text(row: &Row, index: usize) -> Option<String> {
    match &row[index] {
        DbValue::Str(text) => Some(text.clone()),
        DbValue::Binary(bytes) => String::from_utf8(bytes.clone()).ok(),
        _ => None,
    }
}

/// A `DATETIME` (UTC) selected as text, `CAST(column AS CHAR)`, or `None` for NULL. Spin
/// types a DATETIME column `other` and fails the whole query on its first value, so a store
/// never selects one as it is.
pub fn column_time(row: &Row, index: usize) -> Option<Timestamp> {
    Timestamp::parse_sql_datetime(&column_text(row, index)?).ok()
}

/// A column the schema makes NOT NULL came back empty or unreadable: the database and this
/// code disagree, which retrying will not fix but which must not crash the instance.
pub fn corrupt(what: &str) -> DbError {
    DbError::Internal(format!("unreadable column {what}"))
}
