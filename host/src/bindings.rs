//! Host-side bindings of the Spin interfaces in `host/wit`. Every function of them is WIT
//! `async`, so each becomes a concurrent host call that takes an `Accessor` and never blocks
//! the instance's other requests.

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-imports",
    imports: { default: trappable },
    additional_derives: [PartialEq],
    with: {
        "spin:redis/redis.connection": crate::redis::RedisConnection,
        "spin:mysql/mysql.connection": crate::mysql::MysqlConnection,
    },
});

pub use spin::mysql::mysql;
pub use spin::redis::redis;
pub use spin::variables::variables;
