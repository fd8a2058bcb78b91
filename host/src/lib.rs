//! `edge`: a Spin-compatible runtime on wasmtime for machines without the Spin CLI.
//!
//! It reads a Spin 2 manifest (`spin.toml`), routes HTTP exactly like Spin 4.1's HTTP
//! trigger, reuses `wasi:http@0.3` instances like Spin does, and implements the Spin
//! interfaces the components import (`spin:redis`, `spin:mysql`, `spin:variables`, outbound
//! `wasi:http`), with Redis and MySQL behind per-address connection pools. The same manifest
//! and component files run unchanged under `spin up`.
//!
//! Layout, after Spin's factors: [`loader`] wires a manifest into handlers, [`server`] is the
//! HTTP front, [`admission`] its concurrency limit and wait queue, [`instance`] the reuse
//! policy, and each host interface has its own module
//! ([`redis`], [`mysql`], [`variables_host`], [`outbound_http`]) split into wiring, host
//! implementation and configuration. What the manifest means is the `edge-app` crate.

pub mod admin;
pub mod admission;
pub mod bindings;
pub mod build_cmd;
pub mod engine;
pub mod instance;
pub mod loader;
pub mod metrics;
pub mod mysql;
pub mod outbound_http;
pub mod redis;
pub mod server;
pub mod state;
pub mod variables_host;
