//! Connection pools for Redis, one per address, created on first use.
//!
//! A Redis connection is multiplexed (requests are pipelined over one socket), so a small
//! fixed set per address, used round-robin, serves any number of guests; each reconnects on
//! its own after a failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

/// Tunables, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct RedisSettings {
    pub connections_per_address: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            connections_per_address: 4,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
struct AddressPool {
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
}

impl AddressPool {
    fn pick(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

/// All Redis pools of the process, shared by every component.
#[derive(Debug, Default)]
pub struct RedisPools {
    settings: RedisSettings,
    pools: std::sync::Mutex<HashMap<String, Arc<OnceCell<AddressPool>>>>,
    /// Reported as `edge_redis_connections`.
    connections: Gauge,
}

impl RedisPools {
    pub fn new(settings: RedisSettings, connections: Gauge) -> Self {
        Self {
            settings,
            pools: Default::default(),
            connections,
        }
    }

    /// A connection to `address`. The first call for an address connects its pool; a
    /// failure is not cached, so the next call tries again.
    pub async fn connection(&self, address: &str) -> redis::RedisResult<ConnectionManager> {
        let cell = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.entry(address.to_owned()).or_default().clone()
        };
        let pool = cell.get_or_try_init(|| self.connect(address)).await?;
        Ok(pool.pick())
    }

    async fn connect(&self, address: &str) -> redis::RedisResult<AddressPool> {
        let client = redis::Client::open(address)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.response_timeout))
            // Fail fast while Redis is down: the guest answers 503 and the client retries.
            .set_number_of_retries(1);
        let mut connections = Vec::with_capacity(self.settings.connections_per_address);
        for _ in 0..self.settings.connections_per_address.max(1) {
            connections
                .push(ConnectionManager::new_with_config(client.clone(), config.clone()).await?);
        }
        self.connections.inc_by(connections.len() as i64);
        Ok(AddressPool {
            connections,
            next: AtomicUsize::new(0),
        })
    }
}
