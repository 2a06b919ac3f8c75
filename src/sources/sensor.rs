//! `ioc/{commune}/sensor/{id}/telemetry`: flat numeric key/values with an
//! optional timestamp, or ThingsBoard's `{ts, values}` shape.
//!
//! ```json
//! {"ts":"2026-11-23T05:00:00+07:00","rain_mm":12.5,"water_level_cm":184}
//! {"ts":1795406400000,"values":{"temperature_c":1.5}}
//! ```
//!
//! Numbers and booleans (as 0/1) become metrics; other fields are kept in the
//! journal with the payload but not used. At least one metric is required.

use serde_json::{Map, Value};

use super::fields::{object, opt_ts, opt_u64};
use super::{Ctx, Draft};
use crate::model::{DeviceInfo, Event, Reason, Rejection, Source};

/// Largest number of metrics in one message.
pub const MAX_METRICS: usize = 64;

/// Decode telemetry.
pub fn telemetry(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    inner(ctx, device).map_err(|r| r.from_device(Source::Sensor, Some(&device.id)))
}

fn inner(ctx: &Ctx<'_>, device: &DeviceInfo) -> Result<Event, Rejection> {
    let m = object(&ctx.raw.payload)?;
    let mut d = Draft::new(Source::Sensor, "telemetry", Some(device));
    d.ts = opt_ts(&m)?;
    d.seq = opt_u64(&m, "seq")?;
    let values: &Map<String, Value> = match m.get("values") {
        Some(Value::Object(v)) => v,
        Some(_) => {
            return Err(Rejection::new(
                Reason::InvalidField,
                "`values` must be an object",
            ));
        }
        None => &m,
    };
    for (k, v) in values {
        if k == "ts" || k == "seq" {
            continue;
        }
        let n = match v {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        };
        if let Some(n) = n {
            if d.attrs.len() >= MAX_METRICS {
                return Err(Rejection::new(
                    Reason::InvalidField,
                    format!("more than {MAX_METRICS} metrics in one message"),
                ));
            }
            d.attrs.insert(k.clone(), Value::from(n));
        }
    }
    if d.attrs.is_empty() {
        return Err(Rejection::new(
            Reason::MissingField,
            "telemetry carries no numeric value",
        ));
    }
    d.finish(ctx)
}
