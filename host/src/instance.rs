//! Instances and their reuse, on wasmtime-wasi-http's `ProxyHandler`.
//!
//! Like Spin 4.1 for `wasi:http@0.3` components, an instance serves up to
//! `max_requests_per_instance` requests, at most `max_concurrent_per_instance` at a time,
//! and is dropped after `idle_timeout` without work. A reuse count of 1 gives a fresh
//! instance per request. Each request expires after `request_timeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use crate::metrics::Metrics;
use crate::state::{ComponentContext, HostState};

/// Spin's `--max-instance-reuse-count`, `--max-instance-concurrent-reuse-count`,
/// `--idle-instance-timeout` and `--request-timeout`.
#[derive(Clone, Copy, Debug)]
pub struct ReuseSettings {
    pub max_requests_per_instance: usize,
    pub max_concurrent_per_instance: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for ReuseSettings {
    /// Spin's defaults, with a request timeout: a hung guest must not hold a slot forever.
    fn default() -> Self {
        Self {
            max_requests_per_instance: 128,
            max_concurrent_per_instance: 16,
            idle_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Creates instances of one component.
pub struct ComponentInstances {
    pub engine: Engine,
    pub pre: ProxyPre<HostState>,
    pub context: Arc<ComponentContext>,
    pub reuse: ReuseSettings,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ComponentInstances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentInstances")
            .field("component", &self.context.id)
            .field("reuse", &self.reuse)
            .finish_non_exhaustive()
    }
}

impl HandlerState for ComponentInstances {
    type StoreData = HostState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiration, Worker>> {
        let mut store = Store::new(&self.engine, HostState::new(self.context.clone()));
        store.limiter(|state| &mut state.limits);
        // Yield to the executor at every epoch tick, so a busy guest cannot starve the
        // other requests or its own timeout.
        store.epoch_deadline_async_yield_and_update(1);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.metrics.instance_created(&self.context.id);
        Ok(Instance {
            store,
            proxy,
            view: <HostState as WasiHttpView>::http,
            expiration: Expiration::new(self.reuse),
            state: Worker {
                reuse: self.reuse,
                component: self.context.id.clone(),
                metrics: self.metrics.clone(),
            },
        })
    }
}

/// Per-instance acceptance policy.
#[derive(Debug)]
pub struct Worker {
    reuse: ReuseSettings,
    component: String,
    metrics: Arc<Metrics>,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_requests_per_instance {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrent_per_instance {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, HostState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(tokio::time::sleep(self.reuse.request_timeout))
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        match result {
            // wasmtime reports a worker whose task was cancelled (the runtime shutting down
            // under it) with this message too; only a real panic unwinds.
            Err(error) if error.to_string() == "worker panicked" && !std::thread::panicking() => {
                tracing::debug!(component = %self.component, "instance worker cancelled");
            }
            // The cause goes to the log only; clients get a bare 500.
            Err(error) => {
                tracing::error!(component = %self.component, error = format!("{error:#}"), "instance failed");
            }
            Ok(()) => {}
        }
        self.metrics.instance_dropped(&self.component);
        drop(store);
    }
}

/// How long past the request timeout the outer expiry waits before killing an instance.
const STALLED_LOOP_GRACE: Duration = Duration::from_secs(1);

/// When an instance must go: idle too long, or a request past its timeout while the event
/// loop was stalled (the second line of defence wasmtime asks for).
#[derive(Debug)]
pub struct Expiration {
    reuse: ReuseSettings,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Expiration {
    fn new(reuse: ReuseSettings) -> Self {
        Self {
            reuse,
            sleep: Box::pin(tokio::time::sleep(reuse.idle_timeout)),
        }
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        // The per-request timer inside the event loop answers a late request with a clean
        // timeout; this outer one fires a grace period later, only if the loop is stalled.
        let limit = match status {
            WorkerStatus::Idle => this.reuse.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => {
                this.reuse.request_timeout + STALLED_LOOP_GRACE
            }
        };
        let Some(deadline) = start.checked_add(limit) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}
