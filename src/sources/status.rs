//! `ioc/{commune}/{camera|speaker|sensor}/{id}/status`: device health, usually
//! retained and used as the device's MQTT last will. Either the plain
//! payload `online` / `offline`, or JSON:
//!
//! ```json
//! {"ts":"2026-11-23T08:00:00+07:00","state":"fault","detail":"amplifier overheat"}
//! ```

use serde_json::Value;

use super::fields::{object, one_of, opt_f64, opt_str, opt_ts, opt_u64, req_str};
use super::{Ctx, Draft};
use crate::model::{DeviceInfo, Event, Rejection, Source};

const STATES: &[&str] = &["online", "offline", "fault", "broadcasting"];

/// Decode a status message.
pub fn decode(ctx: &Ctx<'_>, source: Source, device: &DeviceInfo) -> Result<Event, Rejection> {
    inner(ctx, source, device).map_err(|r| r.from_device(source, Some(&device.id)))
}

fn inner(ctx: &Ctx<'_>, source: Source, device: &DeviceInfo) -> Result<Event, Rejection> {
    let trimmed = ctx.raw.payload.trim_ascii();
    let mut d = Draft::new(source, "status", Some(device));
    if trimmed == b"online" || trimmed == b"offline" {
        let state = if trimmed == b"online" {
            "online"
        } else {
            "offline"
        };
        d.attrs.insert("state".into(), Value::from(state));
        return d.finish(ctx);
    }
    let m = object(&ctx.raw.payload)?;
    let state = one_of(req_str(&m, "state")?, "state", STATES)?;
    d.attrs.insert("state".into(), Value::from(state));
    d.ts = opt_ts(&m)?;
    d.seq = opt_u64(&m, "seq")?;
    if let Some(detail) = opt_str(&m, "detail")? {
        let detail: String = detail.chars().take(200).collect();
        d.attrs.insert("detail".into(), Value::from(detail));
    }
    for key in ["volume", "battery", "signal"] {
        if let Some(v) = opt_f64(&m, key)? {
            d.attrs.insert(key.into(), Value::from(v));
        }
    }
    d.finish(ctx)
}
