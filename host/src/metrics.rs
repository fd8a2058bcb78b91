//! Prometheus metrics of the host, served on the admin listener at `/metrics`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    component: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    component: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    reason: &'static str,
}

/// Which backing service a call went to.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Redis,
    Mysql,
}

/// Latency buckets from 0.1 ms to ~6.5 s: the host's own overhead is sub-millisecond, and a
/// timeout is tens of seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_1, 2.0, 17,
    ))
}

/// Request metrics of one route. The request path only reads a map keyed by status code:
/// no label strings are built or hashed per request.
#[derive(Debug)]
pub struct RouteMetrics {
    labels: RouteLabels,
    duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    by_status: RwLock<HashMap<u16, Counter>>,
    in_flight: Gauge,
}

/// A request in flight on a route. Dropping it without [`InFlight::finished`] (the client
/// went away and the server dropped the request) still takes it off the in-flight gauge.
#[derive(Debug)]
pub struct InFlight<'a> {
    route: &'a RouteMetrics,
}

impl InFlight<'_> {
    pub fn finished(self, status: u16, elapsed: Duration) {
        self.route.record(status, elapsed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.route.in_flight.dec();
    }
}

impl RouteMetrics {
    pub fn started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight { route: self }
    }

    fn record(&self, status: u16, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let known = self
            .by_status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&status)
            .cloned();
        let counter = known.unwrap_or_else(|| {
            let counter = self
                .requests
                .get_or_create(&RequestLabels {
                    component: self.labels.component.clone(),
                    route: self.labels.route.clone(),
                    status,
                })
                .clone();
            self.by_status
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(status, counter.clone());
            counter
        });
        counter.inc();
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rejected: Family<RejectLabels, Counter>,
    instances_created: Family<ComponentLabels, Counter>,
    instances_live: Family<ComponentLabels, Gauge>,
    redis: BackendMetrics,
    mysql: BackendMetrics,
    in_flight: Gauge,
    queue_wait: Histogram,
    scheduling_delay: Histogram,
    /// Requests the front door lets run at once now.
    pub concurrency_limit: Gauge,
    /// Requests waiting for a turn past the concurrency limit now.
    pub requests_waiting: Gauge,
    /// Open Redis connections across all address pools.
    pub redis_connections: Gauge,
    /// MySQL connections held by guests right now (checked out of the pools).
    pub mysql_connections_in_use: Gauge,
}

/// Calls to one backend by operation and outcome, and their latency.
#[derive(Debug)]
struct BackendMetrics {
    calls: Family<CallLabels, Counter>,
    duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl BackendMetrics {
    /// `calls` counts by operation and outcome, `duration` is the latency histogram; the
    /// names are written out whole so the dashboard's check can find them in the source.
    fn register(registry: &mut Registry, calls: [&str; 2], duration: [&str; 2]) -> Self {
        Self {
            calls: registered(registry, calls[0], calls[1], Family::default()),
            duration: registered(
                registry,
                duration[0],
                duration[1],
                Family::new_with_constructor(latency_histogram),
            ),
        }
    }
}

/// Registers `metric` under `name` and returns the handle the host updates.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("edge");
        Self {
            requests: registered(
                &mut r,
                "requests",
                "HTTP requests by component, route and status",
                Family::default(),
            ),
            request_duration: registered(
                &mut r,
                "request_duration_seconds",
                "Time from request head to response head",
                Family::new_with_constructor(latency_histogram),
            ),
            rejected: registered(
                &mut r,
                "requests_rejected",
                "Requests answered by the host itself (no route, too large, overload)",
                Family::default(),
            ),
            redis_connections: registered(
                &mut r,
                "redis_connections",
                "Open Redis connections across all address pools",
                Gauge::default(),
            ),
            mysql_connections_in_use: registered(
                &mut r,
                "mysql_connections_in_use",
                "MySQL connections checked out of the pools by guests",
                Gauge::default(),
            ),
            in_flight: registered(
                &mut r,
                "requests_in_flight",
                "Requests being handled now",
                Gauge::default(),
            ),
            requests_waiting: registered(
                &mut r,
                "requests_waiting",
                "Requests waiting for a turn past the concurrency limit now",
                Gauge::default(),
            ),
            queue_wait: registered(
                &mut r,
                "request_queue_wait_seconds",
                "How long requests that found every turn taken waited for one (shed or not)",
                latency_histogram(),
            ),
            scheduling_delay: registered(
                &mut r,
                "scheduling_delay_seconds",
                "How late the runtime ran a 10 ms tick: the wait of ready work for a core",
                latency_histogram(),
            ),
            concurrency_limit: registered(
                &mut r,
                "concurrency_limit",
                "Requests the front door lets run at once now (it drops while work waits for a core)",
                Gauge::default(),
            ),
            instances_created: registered(
                &mut r,
                "instances_created",
                "Component instances created; requests / instances is the reuse factor",
                Family::default(),
            ),
            instances_live: registered(
                &mut r,
                "instances_live",
                "Component instances alive now",
                Family::default(),
            ),
            redis: BackendMetrics::register(
                &mut r,
                ["redis_calls", "Redis calls by operation and outcome"],
                ["redis_call_duration_seconds", "Redis call latency"],
            ),
            mysql: BackendMetrics::register(
                &mut r,
                ["mysql_calls", "MySQL calls by operation and outcome"],
                [
                    "mysql_call_duration_seconds",
                    "MySQL call latency (acquire included for open)",
                ],
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// The handles of one route's metrics, resolved once when the app loads.
    pub fn route(&self, component: &str, route: &str) -> RouteMetrics {
        let labels = RouteLabels {
            component: component.to_owned(),
            route: route.to_owned(),
        };
        RouteMetrics {
            duration: self.request_duration.get_or_create(&labels).clone(),
            labels,
            requests: self.requests.clone(),
            by_status: RwLock::default(),
            in_flight: self.in_flight.clone(),
        }
    }

    pub fn queue_wait(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }

    pub fn scheduling_delay(&self, delay: Duration) {
        self.scheduling_delay.observe(delay.as_secs_f64());
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    pub fn instance_created(&self, component: &str) {
        let labels = ComponentLabels {
            component: component.to_owned(),
        };
        self.instances_created.get_or_create(&labels).inc();
        self.instances_live.get_or_create(&labels).inc();
    }

    pub fn instance_dropped(&self, component: &str) {
        let labels = ComponentLabels {
            component: component.to_owned(),
        };
        self.instances_live.get_or_create(&labels).dec();
    }

    pub fn backend_call(
        &self,
        backend: Backend,
        operation: &'static str,
        ok: bool,
        elapsed: Duration,
    ) {
        let outcome = if ok { "ok" } else { "error" };
        let metrics = match backend {
            Backend::Redis => &self.redis,
            Backend::Mysql => &self.mysql,
        };
        metrics
            .calls
            .get_or_create(&CallLabels { operation, outcome })
            .inc();
        metrics
            .duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(metrics: &Metrics) -> String {
        metrics
            .encode()
            .lines()
            .find(|line| line.starts_with("edge_requests_in_flight "))
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_request_dropped_before_it_finishes_leaves_the_in_flight_gauge() {
        let metrics = Metrics::default();
        let route = metrics.route("queue", "/api/queue/...");
        let finished = route.started();
        let abandoned = route.started();
        assert_eq!(gauge(&metrics), "edge_requests_in_flight 2");
        finished.finished(200, Duration::from_millis(1));
        drop(abandoned);
        assert_eq!(gauge(&metrics), "edge_requests_in_flight 0");
        assert!(metrics.encode().contains(r#"status="200"} 1"#));
    }
}
