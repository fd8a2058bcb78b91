//! The data each wasmtime `Store` carries: WASI and wasi-http contexts, the resource table
//! shared by every interface, and the calling component's configuration.
//!
//! One store serves one component instance, which with instance reuse serves many requests
//! (sequentially and concurrently), so nothing request-specific lives here.

use std::sync::Arc;

use edge_app::outbound::AllowedHosts;
use edge_app::variables::ComponentVariables;
use wasmtime::component::{Accessor, HasSelf, Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::metrics::Metrics;
use crate::mysql::MysqlPools;
use crate::outbound_http::OutboundHttp;
use crate::redis::RedisPools;

/// What a component may reach and read, shared by all its instances.
#[derive(Debug)]
pub struct ComponentContext {
    pub id: String,
    pub variables: ComponentVariables,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub redis: Arc<RedisPools>,
    pub mysql: Arc<MysqlPools>,
    /// Its guests' `wasi:http` requests, through the same allowed hosts.
    pub outbound_http: OutboundHttp,
    pub metrics: Arc<Metrics>,
    /// Most bytes one instance's linear memories may grow to.
    pub max_memory_bytes: usize,
}

/// The context of the component making a concurrent host call. Cloned out, because the
/// store may not stay borrowed across the call's awaits.
pub fn calling_component(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
) -> Arc<ComponentContext> {
    accessor.with(|mut access| access.get().component.clone())
}

/// `open` of every outbound database interface: an address the component did not declare
/// is refused with `refused`, else `connect` runs and its connection becomes the guest's
/// resource.
pub async fn open_connection<C, E, Connecting>(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
    address: String,
    scheme: &str,
    refused: E,
    connect: impl FnOnce(Arc<ComponentContext>, String) -> Connecting,
) -> wasmtime::Result<Result<Resource<C>, E>>
where
    C: Send + 'static,
    Connecting: Future<Output = Result<C, E>>,
{
    let component = calling_component(accessor);
    if !component.permits(&address, scheme) {
        return Ok(Err(refused));
    }
    match connect(component, address).await {
        Ok(connection) => Ok(Ok(
            accessor.with(|mut access| access.get().table.push(connection))?
        )),
        Err(error) => Ok(Err(error)),
    }
}

/// Ends a guest's connection resource; a handle the table does not hold is a host bug, so
/// it traps.
pub fn close_connection<C: Send + 'static>(
    state: &mut HostState,
    connection: Resource<C>,
) -> wasmtime::Result<()> {
    state.table.delete(connection)?;
    Ok(())
}

impl ComponentContext {
    /// Whether the component may connect to `address` (a `scheme://` URL); a refusal is
    /// logged, because the guest only sees an error value.
    pub fn permits(&self, address: &str, scheme: &str) -> bool {
        let allowed = self.allowed_hosts.allows(address, scheme);
        if !allowed {
            tracing::info!(component = %self.id, scheme, "address refused: not in allowed_outbound_hosts");
        }
        allowed
    }
}

/// The store data of one component instance.
pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub outbound: OutboundHttp,
    pub component: Arc<ComponentContext>,
    pub limits: StoreLimits,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("component", &self.component.id)
            .finish_non_exhaustive()
    }
}

impl HostState {
    pub fn new(component: Arc<ComponentContext>) -> Self {
        // Guests log to the host's stdout/stderr, as under `spin up`.
        let wasi = WasiCtx::builder().inherit_stdout().inherit_stderr().build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(component.max_memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: component.outbound_http.clone(),
            component,
            limits,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
