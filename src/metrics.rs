//! Prometheus metrics, served at `/metrics`. One registry per running
//! instance (not a global), so tests can run several instances in a process.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label set with a single `source` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Producer family.
    pub source: String,
}

/// Label set with a single `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Dead-letter reason code.
    pub reason: String,
}

/// Label set of a delivery attempt: the target's name and what came of it
/// (`delivered`, `rejected`, `retry`, `expired`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    /// `[delivery.targets.NAME]`.
    pub target: String,
    /// What came of the attempt.
    pub outcome: String,
}

/// Label set with a single `level` label (a risk level `1`–`5`, or
/// `none`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabel {
    /// The level.
    pub level: String,
}

/// Label set with a single `status` label (an alert's status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `firing_unack`, `firing_ack`, `resolved_unack`, `resolved_ack`.
    pub status: String,
}

/// Label set with a single `quantile` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuantileLabel {
    /// `0.5`, `0.9`.
    pub quantile: String,
}

/// All metrics of one instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// MQTT messages handed to the journal.
    pub messages_received: Counter,
    /// Events committed (new, not duplicates), by source.
    pub events_committed: Family<SourceLabel, Counter>,
    /// Dead letters committed, by reason.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Messages recognised as duplicates and counted once.
    pub duplicates: Counter,
    /// Journal transactions committed.
    pub journal_batches: Counter,
    /// Journal commit failures (retried).
    pub journal_errors: Counter,
    /// Seconds per journal batch (decode + write + commit).
    pub journal_batch_seconds: Histogram,
    /// 1 while connected to the MQTT broker.
    pub mqtt_connected: Gauge,
    /// Connection attempts that failed or dropped.
    pub mqtt_connection_errors: Counter,
    /// Successful (re)connections.
    pub mqtt_connects: Counter,
    /// MQTT acknowledgements sent (after commit).
    pub mqtt_acks: Counter,
    /// Acknowledgements dropped because their connection was gone (the
    /// broker redelivers those messages).
    pub mqtt_acks_stale: Counter,
    /// Copies of messages a full in-process tap did not take
    /// (`crate::ingest::outlet`).
    pub mqtt_tap_dropped: Counter,
    /// MQTT packets larger than the client's packet limit (each costs one
    /// reconnect; see docs/PROTOCOL.md §1.4).
    pub mqtt_oversized_packets: Counter,
    /// Connections the broker closed right after accepting them: another
    /// client using our client id (session takeover) is the usual cause.
    pub mqtt_session_takeovers: Counter,
    /// Payload bytes taken from the broker and not yet committed.
    pub mqtt_queued_bytes: Gauge,
    /// Steps published by the live hub.
    pub live_steps: Counter,
    /// The live hub's newest `seq`.
    pub live_seq: Gauge,
    /// Open WebSocket connections (authenticated).
    pub live_connections: Gauge,
    /// WebSocket connections waiting for their `auth` frame.
    pub live_unauthenticated: Gauge,
    /// Snapshots sent with `resync: true` (a client fell behind or resumed
    /// too late).
    pub live_resyncs: Counter,
    /// Frames sent to WebSocket clients.
    pub live_frames: Counter,
    /// Error frames sent to WebSocket clients.
    pub live_errors: Counter,
    /// Time-series sink: points accepted by the store.
    pub influx_points_written: Counter,
    /// Time-series sink: points skipped because the backlog bound was hit.
    pub influx_points_dropped: Counter,
    /// Time-series sink: points in batches the store rejected as invalid
    /// (HTTP 400/422; InfluxDB keeps the valid points of such a batch).
    pub influx_points_rejected: Counter,
    /// Time-series sink: points waiting (events after the cursor plus queued
    /// indicator points).
    pub influx_backlog_points: Gauge,
    /// Time-series sink: the configured bound of each backlog queue.
    pub influx_backlog_limit_points: Gauge,
    /// Time-series sink: failed write requests (retried).
    pub influx_write_errors: Counter,
    /// Time-series sink: 1 while the last write succeeded.
    pub influx_up: Gauge,
    /// Time-series sink: seconds per successful write request.
    pub influx_write_seconds: Histogram,
    /// HTTP handlers that panicked (answered with a JSON 500).
    pub http_panics: Counter,
    /// Open HTTP connections (before a WebSocket upgrade).
    pub http_connections: Gauge,
    /// HTTP connections closed for idling or for a request head not
    /// finished in time.
    pub http_connections_timed_out: Counter,
    /// HTTP connections closed to admit a new one at the cap (the oldest
    /// idle one), or refused at the cap when none was idle.
    pub http_connections_shed: Counter,
    /// Logins answered 503 `login_busy` because too many were hashing or
    /// waiting.
    pub login_busy: Counter,
    /// Durable HTTP delivery: attempts by target and outcome.
    pub delivery_attempts: Family<DeliveryLabel, Counter>,
    /// Durable HTTP delivery: deliveries waiting (state `pending`).
    pub delivery_pending: Gauge,
    /// Durable HTTP delivery: requests in flight.
    pub delivery_in_flight: Gauge,
    /// Official warnings in force for the commune (state `active`), by
    /// risk level.
    pub warnings_active: Family<LevelLabel, Gauge>,
    /// Alerts in the store by status.
    pub alerts: Family<StatusLabel, Gauge>,
    /// Seconds from first seen to acknowledged, alerts acknowledged in the
    /// last 30 days (median and 90th percentile).
    pub alert_time_to_ack_seconds: Family<QuantileLabel, Gauge<f64, AtomicU64>>,
    /// The uplink to the province (`crate::uplink`).
    pub uplink: UplinkMetrics,
}

/// Metrics of the uplink to the province.
#[derive(Debug, Default)]
pub struct UplinkMetrics {
    /// 1 while connected and the last publish was acknowledged.
    pub up: Gauge,
    /// Entries the stream acknowledged (new or duplicate).
    pub forwarded: Counter,
    /// Acknowledgements that said duplicate (a re-send after a restart).
    pub duplicates: Counter,
    /// Failed connects, stream checks and publishes (retried).
    pub errors: Counter,
    /// The last journal number the stream acknowledged (the cursor).
    pub cursor: Gauge,
    /// The last journal number given.
    pub head: Gauge,
    /// Entries journaled and not yet acknowledged by the stream.
    pub lag_entries: Gauge,
    /// Age of the oldest entry not yet acknowledged, seconds (0 when caught
    /// up).
    pub lag_seconds: Gauge,
}

impl UplinkMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "uplink_up",
            "1 while the uplink to the province is connected and acknowledged",
            self.up.clone(),
        );
        r.register(
            "uplink_forwarded",
            "Journal entries the province stream acknowledged",
            self.forwarded.clone(),
        );
        r.register(
            "uplink_duplicates",
            "Acknowledgements that were duplicates (entries re-sent after a restart)",
            self.duplicates.clone(),
        );
        r.register(
            "uplink_errors",
            "Failed uplink connects, stream checks and publishes (retried)",
            self.errors.clone(),
        );
        r.register(
            "uplink_cursor",
            "Last journal seq the province stream acknowledged",
            self.cursor.clone(),
        );
        r.register("uplink_head", "Last journal seq given", self.head.clone());
        r.register(
            "uplink_lag_entries",
            "Journal entries not yet acknowledged by the province stream",
            self.lag_entries.clone(),
        );
        r.register(
            "uplink_lag_seconds",
            "Age of the oldest journal entry not yet acknowledged by the province stream, seconds",
            self.lag_seconds.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ioc");
        let m = Metrics {
            messages_received: Counter::default(),
            events_committed: Family::default(),
            dead_letters: Family::default(),
            duplicates: Counter::default(),
            journal_batches: Counter::default(),
            journal_errors: Counter::default(),
            journal_batch_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            mqtt_connected: Gauge::default(),
            mqtt_connection_errors: Counter::default(),
            mqtt_connects: Counter::default(),
            mqtt_acks: Counter::default(),
            mqtt_acks_stale: Counter::default(),
            mqtt_tap_dropped: Counter::default(),
            mqtt_oversized_packets: Counter::default(),
            mqtt_session_takeovers: Counter::default(),
            mqtt_queued_bytes: Gauge::default(),
            live_steps: Counter::default(),
            live_seq: Gauge::default(),
            live_connections: Gauge::default(),
            live_unauthenticated: Gauge::default(),
            live_resyncs: Counter::default(),
            live_frames: Counter::default(),
            live_errors: Counter::default(),
            delivery_attempts: Family::default(),
            delivery_pending: Gauge::default(),
            delivery_in_flight: Gauge::default(),
            warnings_active: Family::default(),
            alerts: Family::default(),
            alert_time_to_ack_seconds: Family::default(),
            influx_points_written: Counter::default(),
            influx_points_dropped: Counter::default(),
            influx_points_rejected: Counter::default(),
            influx_backlog_points: Gauge::default(),
            influx_backlog_limit_points: Gauge::default(),
            influx_write_errors: Counter::default(),
            influx_up: Gauge::default(),
            influx_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            http_panics: Counter::default(),
            http_connections: Gauge::default(),
            http_connections_timed_out: Counter::default(),
            http_connections_shed: Counter::default(),
            login_busy: Counter::default(),
            uplink: UplinkMetrics::default(),
            registry: Registry::default(),
        };
        m.uplink.register(&mut registry);
        registry.register(
            "messages_received",
            "MQTT messages handed to the journal",
            m.messages_received.clone(),
        );
        registry.register(
            "events_committed",
            "Events committed to the journal (duplicates excluded)",
            m.events_committed.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters committed, by reason",
            m.dead_letters.clone(),
        );
        registry.register(
            "duplicates",
            "Messages recognised as duplicates",
            m.duplicates.clone(),
        );
        registry.register(
            "journal_batches",
            "Journal transactions committed",
            m.journal_batches.clone(),
        );
        registry.register(
            "journal_errors",
            "Journal commit failures (the batch is retried)",
            m.journal_errors.clone(),
        );
        registry.register(
            "journal_batch_seconds",
            "Time to decode, write and commit one batch",
            m.journal_batch_seconds.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the MQTT broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "mqtt_connection_errors",
            "MQTT connection errors",
            m.mqtt_connection_errors.clone(),
        );
        registry.register(
            "mqtt_connects",
            "Successful MQTT (re)connections",
            m.mqtt_connects.clone(),
        );
        registry.register(
            "mqtt_acks",
            "MQTT acknowledgements sent after commit",
            m.mqtt_acks.clone(),
        );
        registry.register(
            "mqtt_acks_stale",
            "Acknowledgements dropped because their connection was gone",
            m.mqtt_acks_stale.clone(),
        );
        registry.register(
            "mqtt_tap_dropped",
            "Message copies dropped because an in-process tap was full",
            m.mqtt_tap_dropped.clone(),
        );
        registry.register(
            "mqtt_oversized_packets",
            "MQTT packets above the client's packet limit (one reconnect each)",
            m.mqtt_oversized_packets.clone(),
        );
        registry.register(
            "mqtt_session_takeovers",
            "MQTT connections closed by the broker right after ConnAck (another client with our client id?)",
            m.mqtt_session_takeovers.clone(),
        );
        registry.register(
            "mqtt_queued_bytes",
            "Payload bytes taken from the broker and not yet committed",
            m.mqtt_queued_bytes.clone(),
        );
        registry.register(
            "live_steps",
            "Steps published by the live hub",
            m.live_steps.clone(),
        );
        registry.register("live_seq", "The live hub's newest seq", m.live_seq.clone());
        registry.register(
            "live_connections",
            "Open WebSocket connections (authenticated)",
            m.live_connections.clone(),
        );
        registry.register(
            "live_unauthenticated",
            "WebSocket connections waiting for their auth frame",
            m.live_unauthenticated.clone(),
        );
        registry.register(
            "live_resyncs",
            "Snapshots sent with resync: true",
            m.live_resyncs.clone(),
        );
        registry.register(
            "live_frames",
            "Frames sent to WebSocket clients",
            m.live_frames.clone(),
        );
        registry.register(
            "live_errors",
            "Error frames sent to WebSocket clients",
            m.live_errors.clone(),
        );
        registry.register(
            "delivery_attempts",
            "HTTP delivery attempts by target and outcome (delivered, rejected, retry, expired)",
            m.delivery_attempts.clone(),
        );
        registry.register(
            "delivery_pending",
            "HTTP deliveries waiting to be accepted",
            m.delivery_pending.clone(),
        );
        registry.register(
            "delivery_in_flight",
            "HTTP delivery requests in flight",
            m.delivery_in_flight.clone(),
        );
        registry.register(
            "influx_points_written",
            "Points accepted by the time-series store",
            m.influx_points_written.clone(),
        );
        registry.register(
            "influx_points_dropped",
            "Points skipped because the time-series backlog reached influx.max_backlog_points",
            m.influx_points_dropped.clone(),
        );
        registry.register(
            "influx_points_rejected",
            "Points in batches the time-series store rejected as invalid",
            m.influx_points_rejected.clone(),
        );
        registry.register(
            "influx_backlog_points",
            "Points waiting for the time-series store",
            m.influx_backlog_points.clone(),
        );
        registry.register(
            "influx_backlog_limit_points",
            "Bound of each time-series backlog queue (influx.max_backlog_points)",
            m.influx_backlog_limit_points.clone(),
        );
        registry.register(
            "influx_write_errors",
            "Failed writes to the time-series store (retried)",
            m.influx_write_errors.clone(),
        );
        registry.register(
            "influx_up",
            "1 while the last write to the time-series store succeeded",
            m.influx_up.clone(),
        );
        registry.register(
            "influx_write_seconds",
            "Time of one successful write request to the time-series store",
            m.influx_write_seconds.clone(),
        );
        registry.register(
            "http_panics",
            "HTTP handlers that panicked (answered with a JSON 500)",
            m.http_panics.clone(),
        );
        registry.register(
            "http_connections",
            "Open HTTP connections (before a WebSocket upgrade)",
            m.http_connections.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "HTTP connections closed for idling or a slow request head",
            m.http_connections_timed_out.clone(),
        );
        registry.register(
            "http_connections_shed",
            "HTTP connections closed or refused at the connection cap",
            m.http_connections_shed.clone(),
        );
        registry.register(
            "login_busy",
            "Logins refused because too many were being checked at once",
            m.login_busy.clone(),
        );
        registry.register(
            "warnings_active",
            "Official warnings in force for the commune, by risk level",
            m.warnings_active.clone(),
        );
        registry.register("alerts", "Alerts in the store by status", m.alerts.clone());
        registry.register(
            "alert_time_to_ack_seconds",
            "Seconds from first seen to acknowledged over the last 30 days (quantiles)",
            m.alert_time_to_ack_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Render the Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
