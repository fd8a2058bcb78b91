//! The component's configuration, read once per instance from Spin variables.

use std::sync::OnceLock;
use std::time::Duration;

use http_kit::config::{admin_key, number, once, pass_key, text};
use ticketing_core::ApiError;
use ticketing_core::admin::AdminKey;
use ticketing_core::pass::PassKey;
use ticketing_core::seats::HoldPolicy;

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) redis_url: String,
    pub(crate) mysql_url: String,
    pub(crate) pass_key: PassKey,
    /// Guards the operator's view of the schedules' sales.
    pub(crate) admin_key: AdminKey,
    pub(crate) hold_policy: HoldPolicy,
}

pub(crate) async fn get() -> Result<&'static Config, ApiError> {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    once(&CONFIG, "seats", load()).await
}

async fn load() -> Result<Config, String> {
    Ok(Config {
        redis_url: text("redis_url").await?,
        mysql_url: text("mysql_url").await?,
        pass_key: pass_key().await?,
        admin_key: admin_key().await?,
        hold_policy: HoldPolicy {
            hold_ttl: Duration::from_secs(number("hold_ttl_seconds", 30..=3600).await?),
            max_seats_per_reservation: number("max_seats_per_reservation", 1..=10).await?,
        },
    })
}
