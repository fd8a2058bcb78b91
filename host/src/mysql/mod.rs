//! `spin:mysql/mysql@3.0.0` backed by `mysql_async`: pools per address ([`pool`]), value
//! conversion between the WIT types and MySQL's ([`convert`]), the host functions with
//! streamed query rows ([`host`]), and what a guest left in its session ([`session`]).

mod convert;
mod host;
mod pool;
mod session;

use std::sync::Arc;

use mysql_async::prelude::Queryable;

use pool::{Checkout, Parked, SharedConn};
pub use pool::{MysqlPools, MysqlSettings};
use session::{Release, SessionUse, Step};

/// A guest's open connection. It owns one pooled connection until the guest drops it, so an
/// explicit `START TRANSACTION … COMMIT` runs on one session. When it goes back to the pool
/// the next guest gets it as if new: a transaction left open is rolled back and the session
/// restored, carried or reset (see [`session`]).
#[derive(Debug)]
pub struct MysqlConnection {
    connection: SharedConn,
    session: std::sync::Mutex<SessionUse>,
    parked: Arc<Parked>,
    _in_use: InUse,
}

impl MysqlConnection {
    fn new(checkout: Checkout, in_use: InUse) -> Self {
        Self {
            connection: checkout.connection,
            session: std::sync::Mutex::new(SessionUse::inheriting(checkout.inherited)),
            parked: checkout.parked,
            _in_use: in_use,
        }
    }

    fn session(&self) -> std::sync::MutexGuard<'_, SessionUse> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session, and what to do for `statement`, which is noted for the release.
    fn session_for(&self, statement: &str, skippable: bool) -> (SharedConn, Step) {
        let step = self.session().record(statement, skippable);
        (self.connection.clone(), step)
    }
}

impl Drop for MysqlConnection {
    fn drop(&mut self) {
        let release = self.session().release();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // The pool armed the reset when it handed the connection out.
            return;
        };
        let connection = self.connection.clone();
        let parked = self.parked.clone();
        // After a query still streaming on the session has finished with it.
        runtime.spawn(async move {
            let restore = match release {
                // Parked as it is, unless it lost its server: the pool discards that one.
                Release::Carry(settings) => {
                    if !connection.lock().await.is_disconnected() {
                        parked.park(connection, settings);
                    }
                    return;
                }
                Release::AsIs => Some(vec![]),
                Release::Restore(statements) => Some(statements),
                Release::Reset => None,
            };
            let mut session = connection.lock().await;
            let mut reset = restore.is_none();
            for statement in restore.into_iter().flatten() {
                if session.query_drop(statement).await.is_err() {
                    reset = true;
                    break;
                }
            }
            session.reset_connection(reset);
        });
    }
}

/// Counts a checked-out connection in `edge_mysql_connections_in_use` while it lives.
#[derive(Debug)]
struct InUse(prometheus_client::metrics::gauge::Gauge);

impl InUse {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.dec();
    }
}
