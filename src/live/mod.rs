//! The live stream behind `/api/ws`: a hub that numbers every change of an
//! indicator, device, feed or dead-letter summary, and the WebSocket
//! connections that forward those changes to screens.
//!
//! - [`keys`]: key names and subscription patterns.
//! - [`hub`]: current values, steps with `seq`, resume history.
//! - [`conn`]: one connection's loop (commands, merging, heartbeats, close).
//! - [`protocol`]: commands, error codes, paged frames.
//!
//! The contract is docs/PROTOCOL.md §7.

pub mod conn;
pub mod hub;
pub mod keys;
pub mod projections;
pub mod protocol;

pub use hub::{run, Hub};
