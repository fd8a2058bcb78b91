//! `spin:mysql/mysql@3.0.0` backed by `mysql_async`: pools per address ([`pool`]), value
//! conversion between the WIT types and MySQL's ([`convert`]), the host functions with
//! streamed query rows ([`host`]), and what a guest left in its session ([`session`]).

mod convert;
mod host;
mod pool;
mod session;

use std::sync::Arc;

use mysql_async::prelude::Queryable;

pub use pool::{MysqlPools, MysqlSettings};
use session::{Release, SessionUse};

/// A guest's open connection. It owns one pooled connection until the guest drops it, so an
/// explicit `START TRANSACTION … COMMIT` runs on one session. When it goes back to the pool
/// the next guest gets it as if new: a transaction left open is rolled back and the session
/// restored or reset (see [`session`]).
#[derive(Debug)]
pub struct MysqlConnection {
    connection: Arc<tokio::sync::Mutex<mysql_async::Conn>>,
    session: std::sync::Mutex<SessionUse>,
    _in_use: InUse,
}

impl MysqlConnection {
    fn new(connection: mysql_async::Conn, in_use: InUse) -> Self {
        Self {
            connection: Arc::new(tokio::sync::Mutex::new(connection)),
            session: Default::default(),
            _in_use: in_use,
        }
    }

    /// The session, for `statement`, which is noted for the release.
    fn session_for(&self, statement: &str) -> Arc<tokio::sync::Mutex<mysql_async::Conn>> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(statement);
        self.connection.clone()
    }
}

impl Drop for MysqlConnection {
    fn drop(&mut self) {
        let release = self
            .session
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .release();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // The pool armed the reset when it handed the connection out.
            return;
        };
        let connection = self.connection.clone();
        // After a query still streaming on the session has finished with it.
        runtime.spawn(async move {
            let mut connection = connection.lock_owned().await;
            let mut reset = release == Release::Reset;
            if let Release::Restore(statements) = release {
                for statement in statements {
                    if connection.query_drop(statement).await.is_err() {
                        reset = true;
                        break;
                    }
                }
            }
            connection.reset_connection(reset);
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
