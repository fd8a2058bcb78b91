//! `spin:redis/redis@3.0.0` backed by the `redis` crate: pooled, multiplexed connections
//! per address ([`pool`]) and the interface's host functions ([`host`]).

mod host;
mod pool;

pub use pool::{RedisPools, RedisSettings};

/// A guest's open connection: a handle on a pooled, auto-reconnecting connection.
pub struct RedisConnection {
    connection: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisConnection")
    }
}
