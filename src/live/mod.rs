//! The live stream behind `/api/ws`: a hub that numbers every change of an
//! indicator, device, feed or dead-letter summary, and the WebSocket
//! connections that forward those changes to screens.
//!
//! - [`keys`]: key names and subscription patterns.
//! - [`hub`]: current values, steps with `seq`, resume history.
//! - [`session`]: one connection's state machine without I/O (auth,
//!   slots, subscriptions, resume, rate limits, merging, heartbeats).
//! - [`conn`]: the socket glue that runs a session.
//! - [`protocol`]: commands, error codes and every frame the server sends.
//!
//! The contract is docs/PROTOCOL.md §7.

pub mod conn;
pub mod hub;
pub mod keys;
pub mod projections;
pub mod protocol;
pub mod session;

pub use hub::{run, Hub};
