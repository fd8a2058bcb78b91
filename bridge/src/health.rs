//! What `/health` reports: each loop of the bridge says whether its last cycle worked.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Loop name → the error of its last cycle, `None` when that cycle worked.
    parts: Mutex<BTreeMap<&'static str, Option<String>>>,
}

impl Health {
    pub(crate) fn ok(&self, part: &'static str) {
        self.set(part, None);
    }

    pub(crate) fn failing(&self, part: &'static str, error: &anyhow::Error) {
        self.set(part, Some(format!("{error:#}")));
    }

    fn set(&self, part: &'static str, state: Option<String>) {
        let mut parts = self
            .parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        parts.insert(part, state);
    }

    /// Healthy when every loop's last cycle worked, and the JSON body saying so.
    pub(crate) fn report(&self) -> (bool, Value) {
        let parts = self
            .parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let healthy = parts.values().all(Option::is_none);
        let details: serde_json::Map<String, Value> = parts
            .iter()
            .map(|(part, state)| {
                let state = state
                    .as_deref()
                    .map_or(json!("ok"), |e| json!({ "error": e }));
                ((*part).to_owned(), state)
            })
            .collect();
        let status = if healthy { "ok" } else { "degraded" };
        (healthy, json!({ "status": status, "parts": details }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failing_loop_makes_the_bridge_degraded_until_it_recovers() {
        let health = Health::default();
        health.ok("relay");
        health.failing("sweeper", &anyhow::anyhow!("MySQL is down"));
        let (healthy, body) = health.report();
        assert!(!healthy);
        assert_eq!(body["parts"]["sweeper"]["error"], "MySQL is down");
        assert_eq!(body["parts"]["relay"], "ok");
        health.ok("sweeper");
        assert!(health.report().0);
    }
}
