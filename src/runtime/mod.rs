//! The runtime: what moves data between the rooms. [`pipeline`] is the one
//! commit pipeline (decode → commit → derive → ack → apply → publish) from
//! the ingest queue to the journal, the live state and the live stream.
//!
//! `runtime` may import every room below it (`journal`, `sources`,
//! `indicators`, `devices`, `state`, `metrics`); none of them imports it,
//! except `ingest`, which hands it messages ([`pipeline::Inbound`]).

pub mod pipeline;
