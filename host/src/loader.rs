//! Turns a `spin.toml` into something that serves: resolved variables, a router, and one
//! instance factory per routed component, each compiled and pre-instantiated once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use edge_app::outbound::AllowedHosts;
use edge_app::routes::Router;
use edge_app::schema::{AppManifest, ComponentSpec, RouteSpec};
use edge_app::variables::{AppVariables, ComponentVariables};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime_wasi_http::handler::{ProxyHandler, ProxyPre};

use crate::bindings::SpinImports;
use crate::instance::{ComponentInstances, ReuseSettings};
use crate::metrics::{Metrics, RouteMetrics};
use crate::mysql::MysqlPools;
use crate::outbound_http::{HttpClient, OutboundHttp};
use crate::redis::RedisPools;
use crate::state::{ComponentContext, HostState};

/// Everything shared by the components of one application.
#[derive(Clone, Debug)]
pub struct Shared {
    pub engine: Engine,
    pub redis: Arc<RedisPools>,
    pub mysql: Arc<MysqlPools>,
    pub http: HttpClient,
    pub metrics: Arc<Metrics>,
    pub reuse: ReuseSettings,
    pub max_instance_memory: usize,
}

/// A loaded application, ready to serve.
pub struct LoadedApp {
    pub name: String,
    pub router: Router,
    pub components: HashMap<String, ProxyHandler<ComponentInstances>>,
    /// Request metrics per `[[trigger.http]]`, by trigger index.
    pub route_metrics: Vec<RouteMetrics>,
    pub shared: Shared,
}

impl std::fmt::Debug for LoadedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedApp")
            .field("name", &self.name)
            .field("components", &self.components.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The imports every component may use: WASI 0.2 (what Rust's std links against) and 0.3,
/// wasi-http 0.3 with its client, and the Spin interfaces.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    let wasm = |e: wasmtime::Error| anyhow::anyhow!("{e}");
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasm)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(wasm)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wasm)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(wasm)?;
    SpinImports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
        .map_err(wasm)?;
    Ok(linker)
}

/// Loads `manifest_path` with variables from `env` (`SPIN_VARIABLE_<NAME>`).
pub fn load(
    manifest_path: &Path,
    env: impl Fn(&str) -> Option<String>,
    shared: Shared,
) -> anyhow::Result<LoadedApp> {
    let manifest = AppManifest::from_file(manifest_path)?;
    let variables = AppVariables::resolve(&manifest.variables, env)?;
    let router = Router::build(&manifest.http_triggers)?;
    let linker = linker(&shared.engine)?;

    let mut components = HashMap::new();
    for trigger in &manifest.http_triggers {
        if matches!(trigger.route, RouteSpec::Private) {
            continue;
        }
        let id = trigger.component.to_string();
        if components.contains_key(&id) {
            continue;
        }
        let spec = manifest
            .components
            .get(&trigger.component)
            .with_context(|| format!("trigger names unknown component `{id}`"))?;
        let handler = prepare_component(spec, &variables, &linker, &shared)
            .with_context(|| format!("component `{id}`"))?;
        components.insert(id, handler);
    }
    let route_metrics = manifest
        .http_triggers
        .iter()
        .map(|trigger| {
            let route = match &trigger.route {
                RouteSpec::Route(route) => route.as_str(),
                RouteSpec::Private => "private",
            };
            shared.metrics.route(trigger.component.as_str(), route)
        })
        .collect();
    Ok(LoadedApp {
        name: manifest.name,
        router,
        components,
        route_metrics,
        shared,
    })
}

fn prepare_component(
    spec: &ComponentSpec,
    variables: &AppVariables,
    linker: &Linker<HostState>,
    shared: &Shared,
) -> anyhow::Result<ProxyHandler<ComponentInstances>> {
    if !spec.source.exists() {
        bail!(
            "{} does not exist: build the components first (`edge build`, or `make build`)",
            spec.source.display()
        );
    }
    if !spec.ignored_keys.is_empty() {
        tracing::warn!(
            component = %spec.id,
            keys = ?spec.ignored_keys,
            "manifest keys this host does not implement are ignored"
        );
    }
    let allowed_hosts = Arc::new(AllowedHosts::parse(
        &spec.allowed_outbound_hosts,
        variables,
    )?);
    let context = Arc::new(ComponentContext {
        id: spec.id.to_string(),
        variables: ComponentVariables::resolve(spec, variables)?,
        outbound_http: OutboundHttp::new(
            spec.id.as_str(),
            allowed_hosts.clone(),
            shared.http.clone(),
        ),
        allowed_hosts,
        redis: shared.redis.clone(),
        mysql: shared.mysql.clone(),
        metrics: shared.metrics.clone(),
        max_memory_bytes: shared.max_instance_memory,
    });
    let component = Component::from_file(&shared.engine, &spec.source)
        .map_err(|e| anyhow::anyhow!("compiling {}: {e}", spec.source.display()))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| anyhow::anyhow!("linking: {e}"))?;
    let pre = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre).map_err(|e| {
        anyhow::anyhow!("not an HTTP component (it must export wasi:http/handler@0.3.0): {e}")
    })?;
    Ok(ProxyHandler::new(ComponentInstances {
        engine: shared.engine.clone(),
        pre: ProxyPre::P3(pre),
        context,
        reuse: shared.reuse,
        metrics: shared.metrics.clone(),
    }))
}
