//! What every long-running part of the bridge shares.

use std::sync::Arc;
use std::time::Duration;

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

impl Task {
    /// Does `work` every `interval` until the bridge stops, reporting each outcome as the
    /// health of `part`: a failed round is logged and tried again next time.
    pub(crate) async fn repeat<Round: Future<Output = anyhow::Result<()>>>(
        mut self,
        part: &'static str,
        interval: Duration,
        mut work: impl FnMut() -> Round,
    ) {
        loop {
            match work().await {
                Ok(()) => self.health.ok(part),
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), part, "a bridge round failed");
                    self.health.failing(part, &error);
                }
            }
            if !self.shutdown.sleep(interval).await {
                return;
            }
        }
    }
}
