//! `spin:mysql/mysql@3.0.0` backed by `mysql_async`: pools per address ([`pool`]), value
//! conversion between the WIT types and MySQL's ([`convert`]), and the host functions with
//! streamed query rows ([`host`]).

mod convert;
mod host;
mod pool;

use std::sync::Arc;

pub use pool::{MysqlPools, MysqlSettings};

/// A guest's open connection. It owns one pooled connection until the guest drops it, so an
/// explicit `START TRANSACTION … COMMIT` runs on one session. When it goes back to the pool
/// the session is reset, which rolls back a transaction the guest left open.
#[derive(Debug)]
pub struct MysqlConnection {
    connection: Arc<tokio::sync::Mutex<mysql_async::Conn>>,
    _in_use: InUse,
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
