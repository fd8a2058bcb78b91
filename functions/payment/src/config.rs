//! The component's configuration, read once per instance from Spin variables.

use std::sync::OnceLock;
use std::time::Duration;

use http_kit::config::{number, once, pass_key, text};
use ticketing_core::ApiError;
use ticketing_core::pass::PassKey;

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) redis_url: String,
    pub(crate) mysql_url: String,
    pub(crate) pass_key: PassKey,
    /// Base URL of the payment gateway, e.g. `http://127.0.0.1:18080`.
    pub(crate) gateway_url: String,
    /// How long an authorization may take before the payment fails as unavailable.
    pub(crate) gateway_timeout: Duration,
}

pub(crate) async fn get() -> Result<&'static Config, ApiError> {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    once(&CONFIG, "payment", load()).await
}

async fn load() -> Result<Config, String> {
    Ok(Config {
        redis_url: text("redis_url").await?,
        mysql_url: text("mysql_url").await?,
        pass_key: pass_key().await?,
        gateway_url: text("gateway_url").await?.trim_end_matches('/').to_owned(),
        gateway_timeout: Duration::from_millis(number("gateway_timeout_ms", 100..=60_000).await?),
    })
}
