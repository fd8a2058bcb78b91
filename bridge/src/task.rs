//! What every long-running part of the bridge shares.

use std::sync::Arc;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// A bridge task's configuration, metrics and health, and the signal to stop.
#[derive(Clone)]
pub(crate) struct Task {
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: Arc<Health>,
    pub(crate) shutdown: Shutdown,
}
