//! commune-ioc: the backend of a Vietnamese commune's Intelligent Operations
//! Center (Trung tâm giám sát và điều hành thông minh).
//!
//! Data flows MQTT → [`sources`] (decode) → [`journal`] (commit, then ack) →
//! [`indicators`] and [`devices`] → [`api`]. [`server::run`] wires it all on
//! an already-bound listener, so tests can use port 0. See docs/ARCHITECTURE.md.

#![warn(missing_docs)]

pub mod alerts;
pub mod api;
pub mod app;
pub mod auth;
pub mod broadcasts;
pub mod config;
pub mod delivery;
pub mod devices;
pub mod indicators;
pub mod ingest;
pub mod journal;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod province;
pub mod reports;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod store;
pub mod tls;
pub mod uplink;
pub mod vocab;
pub mod warnings;
