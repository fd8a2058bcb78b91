//! The only module that talks to Redis and MySQL: one cheap round trip to each.

use spin_sdk::{redis, variables};
use sql_kit::Db;

pub(crate) async fn redis_ok() -> bool {
    let Ok(address) = variables::get("redis_url").await else {
        return false;
    };
    let Ok(connection) = redis::Connection::open(address).await else {
        return false;
    };
    connection
        .execute("PING", Vec::<redis::RedisParameter>::new())
        .await
        .is_ok()
}

pub(crate) async fn mysql_ok() -> bool {
    let Ok(address) = variables::get("mysql_url").await else {
        return false;
    };
    let Ok(db) = Db::open(&address).await else {
        return false;
    };
    db.query("SELECT 1", vec![]).await.is_ok()
}
