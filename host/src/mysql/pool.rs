//! MySQL connection pools, one per address, created on first use.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

/// Tunables, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct MysqlSettings {
    /// Most connections per address; guests beyond it wait up to `acquire_timeout`.
    pub max_connections: usize,
    pub acquire_timeout: Duration,
}

impl Default for MysqlSettings {
    fn default() -> Self {
        Self {
            max_connections: 64,
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// How long a pooled connection may stay idle before it is closed.
const IDLE_CONNECTION_TTL: Duration = Duration::from_secs(60);

/// All MySQL pools of the process, shared by every component.
#[derive(Debug, Default)]
pub struct MysqlPools {
    settings: MysqlSettings,
    pools: std::sync::Mutex<HashMap<String, Pool>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("invalid MySQL address: {0}")]
    Address(String),
    #[error("no MySQL connection free within {0:?}")]
    Exhausted(Duration),
    #[error("connecting to MySQL: {0}")]
    Connect(#[from] mysql_async::Error),
}

impl MysqlPools {
    pub fn new(settings: MysqlSettings) -> Self {
        Self {
            settings,
            pools: Default::default(),
        }
    }

    fn pool(&self, address: &str) -> Result<Pool, AcquireError> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        let opts = Opts::from_url(address).map_err(|e| AcquireError::Address(e.to_string()))?;
        let constraints = PoolConstraints::new(0, self.settings.max_connections.max(1))
            .ok_or_else(|| AcquireError::Address("invalid pool size".to_owned()))?;
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            // Without an idle lifetime mysql_async keeps no idle connection above the
            // minimum (0): every request paid a new connection and login (measured).
            .with_inactive_connection_ttl(IDLE_CONNECTION_TTL)
            // Armed again at every checkout: a returned connection is reset unless its
            // guest's release clears the flag (see `session`), which keeps the server's
            // prepared statements for the next guest.
            .with_reset_connection(true);
        let pool = Pool::new(OptsBuilder::from_opts(opts).pool_opts(pool_opts));
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }

    /// One connection from the pool of `address`, waiting at most `acquire_timeout`.
    pub async fn acquire(&self, address: &str) -> Result<Conn, AcquireError> {
        let pool = self.pool(address)?;
        let timeout = self.settings.acquire_timeout;
        tokio::time::timeout(timeout, pool.get_conn())
            .await
            .map_err(|_| AcquireError::Exhausted(timeout))?
            .map_err(AcquireError::from)
    }

    /// Closes every pool, waiting for connections to be returned; for graceful shutdown.
    pub async fn disconnect_all(&self) {
        let pools: Vec<Pool> = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.drain().map(|(_, pool)| pool).collect()
        };
        for pool in pools {
            if let Err(error) = pool.disconnect().await {
                tracing::warn!(%error, "closing a MySQL pool");
            }
        }
    }
}
