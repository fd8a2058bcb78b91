//! What a Spin 4.1 application *means*, for the `edge` host: the manifest, variables, HTTP
//! routing and `allowed_outbound_hosts`, with Spin's semantics and no I/O (apart from
//! [`manifest::AppManifest::from_file`] reading the file). The runtime crate does the
//! wasmtime and network work and asks this crate every question whose answer must match
//! `spin up`, so the same `spin.toml` behaves the same under both.
//!
//! Modules follow Spin's own small crates, each layer importing only those below it:
//! [`template`] (spin-expressions' names and templates) at the bottom; [`schema`] (what a
//! validated application is, spin-manifest's schema); [`routes`] (spin-http-routes),
//! [`variables`] (the variables factor) and [`outbound`] (spin-outbound-networking-config)
//! over it; and [`manifest`] (parsing and checking `spin.toml`) on top.
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
pub mod schema;
pub mod template;
pub mod variables;

pub use manifest::ManifestError;
pub use outbound::{AllowedHosts, OutboundConfigError};
pub use routes::{RouteError, RouteMatch, Router};
pub use schema::{AppManifest, ComponentId, ComponentSpec, HttpTrigger, RouteSpec};
pub use template::{Template, VariableName};
pub use variables::{AppVariables, ComponentVariables, GetError, VariableError};
