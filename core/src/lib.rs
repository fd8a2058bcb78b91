//! The ticketing domain: every business rule of the waiting room, seat holds, payments and
//! events, with no I/O. Adapters (Spin components, the bridge) pass in the clock, ids and
//! randomness, persist what these functions decide, and map [`error::ApiError`] to HTTP.
//!
//! The crate builds for native targets and `wasm32-wasip2` alike, so the same rules run in
//! the edge functions, the bridge and the test suite.

pub mod admin;
pub mod cache;
pub mod draw;
pub mod error;
pub mod events;
pub mod ids;
pub mod limits;
pub mod money;
pub mod pass;
pub mod payment;
pub mod queue;
pub mod ranking;
pub mod sale;
pub mod seats;
pub mod time;
pub mod waitlist;

pub use error::{ApiError, DomainError, ErrorCode};
