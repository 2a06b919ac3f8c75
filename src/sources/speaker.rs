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
