//! The test kit, shared by the integration tests (`mod kit;`) and the
//! benchmarks (`#[path = "../tests/kit/mod.rs"] mod kit;`): real parts on
//! loopback, nothing mocked.
//!
//! - `proc`: child processes killed by their own handle, free ports,
//!   waiting on conditions;
//! - `mosquitto`: a real Mosquitto (tests: persistent, restartable;
//!   benchmarks: `$SYS` every second);
//! - `backend`: the real `commune-ioc serve` (tests: `Backend`, panics
//!   with the log; benchmarks: `start_backend`), the test commune's config;
//! - `publisher`: QoS 1 publishers (one at a time and acknowledged, or
//!   pipelined with PubAck counts);
//! - `http`: an HTTP client with the admin's token, `/metrics` scrapes;
//! - `victoria`: a real VictoriaMetrics;
//! - `nats`: a real nats-server with JetStream (the province uplink), or a
//!   three-node cluster (`Cluster`);
//! - `nats_auth`: a nats-server from a config file: TLS, mutual TLS, NKey
//!   users (the uplink's logins);
//! - `province`: site configs for N communes, simulated communes that
//!   publish their journal into JetStream, the province process;
//! - `proxy`: a loopback TCP proxy a test cuts and restores (a link);
//! - `browser`: headless Chromium over the DevTools protocol;
//! - `receiver`: a local HTTP endpoint that records what it is sent
//!   (webhooks, the province's report endpoint), over HTTP or HTTPS;
//! - `pki`: a private CA, server and client certificates for HTTPS
//!   receivers and mutual TLS;
//! - `shipped`: the shipped Mosquitto config with its accounts and ACL;
//! - `measure`: CPU, memory and load figures for the benchmarks.
//!
//! A missing program (mosquitto, victoria-metrics, chromium) fails with the
//! command that installs it; scripts/test installs them.

#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod browser;
pub mod http;
pub mod measure;
pub mod mosquitto;
pub mod nats;
pub mod nats_auth;
pub mod pki;
pub mod proc;
pub mod province;
pub mod proxy;
pub mod publisher;
pub mod receiver;
pub mod shipped;
pub mod victoria;

pub use backend::{dossier_received, stack, stack_with, test_config, Backend, DOSSIER};
pub use mosquitto::Mosquitto;
pub use nats::Nats;
pub use proc::{free_port, wait_until};
pub use publisher::{Pipelined, Publisher};
