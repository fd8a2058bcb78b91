//! What a Spin 4.1 application *means*, for the `edge` host: the manifest, variables, HTTP
//! routing and `allowed_outbound_hosts`, with Spin's semantics and no I/O (apart from
//! [`manifest::AppManifest::from_file`] reading the file). The runtime crate does the
//! wasmtime and network work and asks this crate every question whose answer must match
//! `spin up`, so the same `spin.toml` behaves the same under both.
//!
//! Modules follow Spin's own small crates: [`manifest`] (spin-manifest), [`variables`]
//! (spin-expressions and the variables factor), [`routes`] (spin-http-routes) and
//! [`outbound`] (spin-outbound-networking-config).
//!
//! Typical startup:
//! 1. [`AppManifest::from_file`] parses and validates everything that can be checked
//!    without values: ids, names, templates against declared variables, literal allowed
//!    hosts, routes.
//! 2. [`AppVariables::resolve`] reads `SPIN_VARIABLE_*`; then per component
//!    [`ComponentVariables::resolve`] and [`AllowedHosts::parse`].
//! 3. [`Router::build`] once; [`Router::route`] per request.

pub mod manifest;
pub mod outbound;
pub mod routes;
pub mod variables;

pub use manifest::{
    AppManifest, ComponentId, ComponentSpec, HttpTrigger, ManifestError, RouteSpec,
};
pub use outbound::{AllowedHosts, OutboundConfigError};
pub use routes::{RouteError, RouteMatch, Router};
pub use variables::{
    AppVariables, ComponentVariables, GetError, Template, VariableError, VariableName,
};
