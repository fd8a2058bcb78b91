//! The API end-to-end tests, one module per area, in one test binary: each binary links the
//! whole runtime (wasmtime), so one binary instead of six saves five long links per build.

mod admission_script;
mod console;
mod differential;
mod events;
mod onsale;
mod payment;
mod queue;
mod seats;
mod store_model;
