//! `ioc/{commune}/speaker/{id}/session`: broadcast sessions on a smart
//! loudspeaker cluster.
//!
//! ```json
//! {"ts":"2026-11-23T06:30:00+07:00","session_id":"s-2026-11-23-01","event":"start","priority":"routine","content":"Bản tin sáng"}
//! ```

use serde_json::Value;

use super::fields::{object, one_of, opt_f64, opt_str, opt_ts, opt_u64, req_str};
use super::{Ctx, Draft};
use crate::model::{DeviceInfo, Event, Rejection, Source};

/// Broadcast priorities.
pub const PRIORITIES: &[&str] = &["routine", "priority", "emergency"];

/// Decode a session start or end.
pub fn session(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    inner(ctx, device).map_err(|r| r.from_device(Source::Speaker, Some(&device.id)))
}

fn inner(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    let m = object(&ctx.raw.payload)?;
    let phase = one_of(req_str(&m, "event")?, "event", &["start", "end"])?;
    let mut d = Draft::new(Source::Speaker, format!("session_{phase}"), Some(device));
    d.ts = opt_ts(&m)?;
    d.seq = opt_u64(&m, "seq")?;
    let priority = match opt_str(&m, "priority")? {
        Some(p) => one_of(p, "priority", PRIORITIES)?,
        None => "routine",
    };
    d.attrs.insert("priority".into(), Value::from(priority));
    if let Some(c) = opt_str(&m, "content")? {
        let c: String = c.chars().take(200).collect();
        d.attrs.insert("content".into(), Value::from(c));
    }
    if let Some(secs) = opt_f64(&m, "duration_s")? {
        d.attrs.insert("duration_s".into(), Value::from(secs));
    }
    if let Some(sid) = opt_str(&m, "session_id")? {
        d.attrs.insert("session_id".into(), Value::from(sid));
        d.dedup = Some(format!("speaker:{}:session:{sid}:{phase}", device.id));
    }
    d.finish(ctx)
}

/// Answers a cluster may give to a command (docs/PROTOCOL.md §8.2).
pub const ACK_STATUSES: &[&str] = &[
    "accepted",
    "duplicate",
    "busy",
    "rejected",
    "expired",
    "failed",
];

/// `ioc/{commune}/speaker/{id}/cmd`: a command this service sent (the
/// ingest subscription sees it too). Journaled as a `command` event with
/// no device (so it says nothing about the cluster's health), the cluster
/// in `attrs.device_id`; one event per idempotency key (resends are
/// duplicates).
pub fn command(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    let r = (|| {
        let m = object(&ctx.raw.payload)?;
        let key = req_str(&m, "idempotency_key")?;
        let mut d = Draft::new(Source::Speaker, "command", None);
        d.village = device.village.clone();
        d.attrs
            .insert("device_id".into(), Value::from(device.id.as_str()));
        d.attrs.insert("key".into(), Value::from(key));
        if let Some(p) = opt_str(&m, "priority")? {
            d.attrs.insert(
                "priority".into(),
                Value::from(one_of(p, "priority", PRIORITIES)?),
            );
        }
        if let Some(b) = opt_u64(&m, "broadcast")? {
            d.attrs.insert("broadcast".into(), Value::from(b));
        }
        d.dedup = Some(format!("speaker:{}:cmd:{key}", device.id));
        d.finish(ctx)
    })();
    r.map_err(|r| r.from_device(Source::Speaker, Some(&device.id)))
}

/// `ioc/{commune}/speaker/{id}/ack`: a cluster's answer to a command,
/// journaled as a `command_ack` event of the cluster (it is alive).
pub fn ack(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    let r = (|| {
        let m = object(&ctx.raw.payload)?;
        let key = req_str(&m, "idempotency_key")?;
        let status = one_of(req_str(&m, "status")?, "status", ACK_STATUSES)?;
        let mut d = Draft::new(Source::Speaker, "command_ack", Some(device));
        d.ts = opt_ts(&m)?;
        d.attrs.insert("key".into(), Value::from(key));
        d.attrs.insert("status".into(), Value::from(status));
        if let Some(reason) = opt_str(&m, "reason")? {
            let reason: String = reason.chars().take(200).collect();
            d.attrs.insert("reason".into(), Value::from(reason));
        }
        d.dedup = Some(format!("speaker:{}:ack:{key}:{status}", device.id));
        d.finish(ctx)
    })();
    r.map_err(|r| r.from_device(Source::Speaker, Some(&device.id)))
}
