//! `ioc/{commune}/camera/{id}/event`: detections, counts, intrusion, fire,
//! smoke and tamper events from cameras that publish directly.
//!
//! ```json
//! {"ts":"2026-11-23T08:15:02+07:00","seq":42,"kind":"count","label":"person","count":3,"score":0.91,"zone":"cong-truong"}
//! ```

use serde_json::Value;

use super::fields::{object, one_of, opt_f64, opt_str, opt_ts, opt_u64, req_str};
use super::{Ctx, Draft};
use crate::model::{DeviceInfo, Event, Reason, Rejection, Source};

/// Event kinds a camera may send.
pub const KINDS: &[&str] = &["detection", "count", "intrusion", "fire", "smoke", "tamper"];

/// Decode a camera event.
pub fn event(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    decode(ctx, device).map_err(|r| r.from_device(Source::Camera, Some(&device.id)))
}

fn decode(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    let m = object(&ctx.raw.payload)?;
    let kind = one_of(req_str(&m, "kind")?, "kind", KINDS)?;
    let mut d = Draft::new(Source::Camera, kind, Some(device));
    d.ts = opt_ts(&m)?;
    d.seq = opt_u64(&m, "seq")?;
    if let Some(label) = opt_str(&m, "label")? {
        d.attrs.insert("label".into(), Value::from(label));
    }
    let count = opt_u64(&m, "count")?;
    match (kind, count) {
        ("count", None) => {
            return Err(Rejection::new(
                Reason::MissingField,
                "a `count` event needs `count`",
            ));
        }
        (_, Some(c)) => {
            d.attrs.insert("count".into(), Value::from(c));
        }
        ("detection", None) => {
            d.attrs.insert("count".into(), Value::from(1u64));
        }
        _ => {}
    }
    if let Some(score) = opt_f64(&m, "score")? {
        if !(0.0..=1.0).contains(&score) {
            return Err(Rejection::new(
                Reason::InvalidField,
                "`score` must be between 0 and 1",
            ));
        }
        d.attrs.insert("score".into(), Value::from(score));
    }
    if let Some(zone) = opt_str(&m, "zone")? {
        d.attrs.insert("zone".into(), Value::from(zone));
    }
    d.finish(ctx)
}
