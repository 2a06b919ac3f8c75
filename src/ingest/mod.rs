//! Ingest: the MQTT supervisor that feeds the journal, and the optional
//! embedded broker.

#[cfg(feature = "embedded-broker")]
pub mod broker;
#[cfg(feature = "embedded-broker")]
pub mod gate;
pub mod mqtt;
pub mod outlet;
