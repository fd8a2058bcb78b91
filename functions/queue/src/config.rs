//! The component's configuration, read once per instance from Spin variables: secrets,
//! the default queue's policy and the abuse limits.

use std::sync::OnceLock;
use std::time::Duration;

use http_kit::config::{admin_key, number, once, pass_key, text};
use ticketing_core::ApiError;
use ticketing_core::admin::AdminKey;
use ticketing_core::limits::RateLimit;
use ticketing_core::pass::PassKey;
use ticketing_core::queue::AdmissionPolicy;
use waiting_room::AbuseLimits;

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) redis_url: String,
    pub(crate) pass_key: PassKey,
    pub(crate) admin_key: AdminKey,
    /// The policy the default queue starts with; operators change it at runtime.
    pub(crate) default_policy: AdmissionPolicy,
    /// How often the waiting crowd polls, in all, and the longest pause asked of a fan.
    pub(crate) poll_budget_per_sec: u32,
    pub(crate) longest_poll: Duration,
    pub(crate) join_limits: AbuseLimits,
    pub(crate) status_limits: AbuseLimits,
}

pub(crate) async fn get() -> Result<&'static Config, ApiError> {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    once(&CONFIG, "queue", load()).await
}

fn invalid(name: &str, error: impl std::fmt::Display) -> String {
    format!("variable {name}: {error}")
}

async fn load() -> Result<Config, String> {
    let default_policy = AdmissionPolicy::new(
        number("queue_rate_per_sec", 1..=100_000).await?,
        number("queue_max_active", 1..=10_000_000).await?,
        Duration::from_secs(number("queue_pass_ttl_seconds", 30..=86_400).await?),
        Duration::from_secs(number("queue_idle_timeout_seconds", 10..=3_600).await?),
    )
    .map_err(|e| invalid("queue_*", e))?;
    let window = Duration::from_secs(number("queue_limit_window_seconds", 1..=3_600).await?);
    let limit = |max: u32| {
        RateLimit::new(max, window).map_err(|e| invalid("queue_limit_window_seconds", e))
    };
    Ok(Config {
        redis_url: text("redis_url").await?,
        pass_key: pass_key().await?,
        admin_key: admin_key().await?,
        default_policy,
        poll_budget_per_sec: number("queue_poll_budget_per_sec", 1..=1_000_000).await?,
        longest_poll: Duration::from_secs(number("queue_longest_poll_seconds", 1..=600).await?),
        join_limits: AbuseLimits {
            per_user: limit(number("queue_join_limit_per_user", 0..=u32::MAX).await?)?,
            per_address: limit(number("queue_join_limit_per_address", 0..=u32::MAX).await?)?,
        },
        status_limits: AbuseLimits {
            per_user: limit(number("queue_status_limit_per_user", 0..=u32::MAX).await?)?,
            per_address: limit(number("queue_status_limit_per_address", 0..=u32::MAX).await?)?,
        },
    })
}
