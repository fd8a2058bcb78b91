//! MySQL connection pools, one per address, created on first use, each with the sessions
//! parked beside it that carry settings for their next guest (see `session`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use super::session::Settings;

/// A connection shared between a guest's statements and the tasks that finish them.
pub(super) type SharedConn = Arc<tokio::sync::Mutex<Conn>>;

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

/// Prepared statements kept per connection. Every guest statement is prepared (as under
/// Spin), and the components together run about 60 distinct ones over pooled connections
/// shared by all of them; mysql_async's default of 32 would prepare some again and again.
/// 64 connections × 128 stays well under MySQL's `max_prepared_stmt_count` (16,382).
const STATEMENT_CACHE_SIZE: usize = 128;

/// All MySQL pools of the process, shared by every component.
#[derive(Debug, Default)]
pub struct MysqlPools {
    settings: MysqlSettings,
    pools: std::sync::Mutex<HashMap<String, AddressPool>>,
}

#[derive(Debug, Clone)]
struct AddressPool {
    pool: Pool,
    parked: Arc<Parked>,
}

/// Sessions a guest left with settings on them. They stay checked out of the pool (and
/// count against its size), armed for a reset should they be dropped, until a guest takes
/// one or they have idled for [`IDLE_CONNECTION_TTL`] (see [`Parked::sweep_every`]). `None`
/// once the pool is closing: a session released then goes straight back to it.
#[derive(Debug)]
pub(super) struct Parked {
    sessions: std::sync::Mutex<Option<Vec<ParkedSession>>>,
    /// Wakes a guest waiting for a connection: a parked session never returns to the pool
    /// by itself, so waiting on the pool alone could time out with sessions parked.
    arrived: tokio::sync::Notify,
}

impl Default for Parked {
    fn default() -> Self {
        Self {
            sessions: std::sync::Mutex::new(Some(Vec::new())),
            arrived: tokio::sync::Notify::new(),
        }
    }
}

#[derive(Debug)]
struct ParkedSession {
    connection: SharedConn,
    settings: Settings,
    since: Instant,
}

impl Parked {
    pub(super) fn park(&self, connection: SharedConn, settings: Settings) {
        let session = ParkedSession {
            connection,
            settings,
            since: Instant::now(),
        };
        let mut dropped = vec![];
        {
            let mut parked = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match parked.as_mut() {
                Some(sessions) => {
                    sessions.push(session);
                    dropped = Self::take_expired(sessions);
                }
                None => dropped.push(session),
            }
        }
        self.arrived.notify_one();
        // Dropped outside the lock: each goes back to its pool, which resets it, once the
        // last task holding it lets go.
        drop(dropped);
    }

    /// The most recently parked session, the likeliest to be warm.
    fn take(&self) -> Option<(SharedConn, Settings)> {
        let (taken, expired) = {
            let mut parked = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let sessions = parked.as_mut()?;
            let expired = Self::take_expired(sessions);
            (sessions.pop(), expired)
        };
        drop(expired);
        taken.map(|session| (session.connection, session.settings))
    }

    /// Hands sessions idle past their time back to the pool every `period`, as the pool does
    /// with its own idle connections, until the pool closes or is gone.
    fn sweep_every(parked: &Arc<Self>, period: Duration) {
        let parked = Arc::downgrade(parked);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                let Some(parked) = parked.upgrade() else {
                    break;
                };
                let expired = {
                    let mut sessions = parked.sessions.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(sessions) = sessions.as_mut() else {
                        break;
                    };
                    Self::take_expired(sessions)
                };
                drop(expired);
            }
        });
    }

    fn take_expired(sessions: &mut Vec<ParkedSession>) -> Vec<ParkedSession> {
        let (expired, live) = std::mem::take(sessions)
            .into_iter()
            .partition(|session| session.since.elapsed() >= IDLE_CONNECTION_TTL);
        *sessions = live;
        expired
    }

    /// Hands every parked session back to the pool and parks no more.
    fn close(&self) {
        let parked = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(parked);
    }
}

/// A connection for a guest, with what its previous guest left set on it.
pub(super) struct Checkout {
    pub(super) connection: SharedConn,
    pub(super) inherited: Settings,
    /// Where the session goes if its guest leaves settings on it too.
    pub(super) parked: Arc<Parked>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum AcquireError {
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

    fn pool(&self, address: &str) -> Result<AddressPool, AcquireError> {
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
        let pool = AddressPool {
            pool: Pool::new(
                OptsBuilder::from_opts(opts)
                    .pool_opts(pool_opts)
                    .stmt_cache_size(STATEMENT_CACHE_SIZE),
            ),
            parked: Arc::default(),
        };
        Parked::sweep_every(&pool.parked, IDLE_CONNECTION_TTL / 2);
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }

    /// A connection to `address`: a parked session if there is one, else whichever comes
    /// first of a connection from the pool and a session parked meanwhile, waiting at most
    /// `acquire_timeout`.
    pub(super) async fn acquire(&self, address: &str) -> Result<Checkout, AcquireError> {
        let AddressPool { pool, parked } = self.pool(address)?;
        let checkout = |connection, inherited| Checkout {
            connection,
            inherited,
            parked: parked.clone(),
        };
        let wait = async {
            loop {
                // Registered before looking, so a session parked in between still wakes us.
                let arrived = parked.arrived.notified();
                let mut arrived = std::pin::pin!(arrived);
                arrived.as_mut().enable();
                if let Some((connection, inherited)) = parked.take() {
                    return Ok(checkout(connection, inherited));
                }
                tokio::select! {
                    connection = pool.get_conn() => {
                        let connection = Arc::new(tokio::sync::Mutex::new(connection?));
                        return Ok(checkout(connection, Settings::new()));
                    }
                    () = arrived => {}
                }
            }
        };
        let timeout = self.settings.acquire_timeout;
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| AcquireError::Exhausted(timeout))?
    }

    /// Closes every pool, waiting for connections to be returned; for graceful shutdown.
    pub async fn disconnect_all(&self) {
        let pools: Vec<AddressPool> = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.drain().map(|(_, pool)| pool).collect()
        };
        for AddressPool { pool, parked } in pools {
            // The pool waits for every connection to come back, the parked ones too.
            parked.close();
            if let Err(error) = pool.disconnect().await {
                tracing::warn!(%error, "closing a MySQL pool");
            }
        }
    }
}
