//! Frigate NVR as it publishes (docs.frigate.video, MQTT):
//!
//! - `frigate/events`: `{"type":"new"|"update"|"end","before":{..},"after":{..}}`
//!   with float epoch seconds (`frame_time`, `start_time`), `sub_label` null,
//!   a string or `[name, score]`, and many keys we ignore. Each tracked object
//!   counts once: `new` and `end` are de-duplicated by object id.
//! - `frigate/reviews`: review items, same `type`/`before`/`after` shape.
//! - `frigate/available`: `online` / `offline` for Frigate itself, and
//!   `stopped` (from 0.18) when Frigate shuts down cleanly.
//!
//! Frigate camera names map to registry cameras through `frigate_name`.

use serde_json::{Map, Value};

use super::fields::{object, opt_bool, opt_f64, opt_str, req_str, timestamp, type_name};
use super::{Ctx, Draft};
use crate::model::{DeviceInfo, Event, Reason, Rejection, Source};

/// Decode `frigate/events`.
pub fn event(ctx: &Ctx<'_>) -> Result<Event, Rejection> {
    let (kind, after, id, device) = head(ctx)?;
    let after = &after;
    let reject = |r: Rejection| r.from_device(Source::Camera, Some(&device.id));
    let label = req_str(after, "label").map_err(reject)?;
    let phase = match kind {
        "new" => "detection",
        "update" => "detection_update",
        _ => "detection_end",
    };
    let mut d = Draft::new(Source::Camera, phase, Some(device));
    d.attrs.insert("via".into(), Value::from("frigate"));
    d.attrs.insert("object_id".into(), Value::from(id.as_str()));
    d.attrs.insert("label".into(), Value::from(label));
    d.attrs.insert("count".into(), Value::from(1u64));
    match after.get("sub_label") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            d.attrs.insert("sub_label".into(), Value::from(s.as_str()));
        }
        Some(Value::Array(a)) => match a.first() {
            Some(Value::String(s)) => {
                d.attrs.insert("sub_label".into(), Value::from(s.as_str()));
                if let Some(score) = a.get(1).and_then(Value::as_f64) {
                    d.attrs.insert("sub_label_score".into(), Value::from(score));
                }
            }
            _ => {
                return Err(reject(Rejection::new(
                    Reason::InvalidField,
                    "`after.sub_label` must be null, a string or [name, score]",
                )))
            }
        },
        Some(other) => {
            return Err(reject(Rejection::new(
                Reason::InvalidField,
                format!(
                    "`after.sub_label` must be null, a string or [name, score], got {}",
                    type_name(other)
                ),
            )))
        }
    }
    if let Some(score) = opt_f64(after, "top_score").map_err(reject)? {
        d.attrs.insert("score".into(), Value::from(score));
    }
    if let Some(fp) = opt_bool(after, "false_positive").map_err(reject)? {
        d.attrs.insert("false_positive".into(), Value::from(fp));
    }
    if let Some(Value::Array(zones)) = after.get("current_zones") {
        if let Some(Value::String(z)) = zones.first() {
            d.attrs.insert("zone".into(), Value::from(z.as_str()));
        }
    }
    let time_key = if kind == "new" {
        "start_time"
    } else {
        "frame_time"
    };
    let ts_value = after.get(time_key).or_else(|| after.get("frame_time"));
    if let Some(v) = ts_value.filter(|v| !v.is_null()) {
        d.ts = Some(timestamp(v, time_key, true).map_err(reject)?);
    }
    d.dedup = Some(match kind {
        "update" => format!(
            "frigate:{id}:update:{}",
            d.ts.map(|t| t.timestamp_millis()).unwrap_or_default()
        ),
        other => format!("frigate:{id}:{other}"),
    });
    d.finish(ctx)
}

/// Decode `frigate/reviews`.
pub fn review(ctx: &Ctx<'_>) -> Result<Event, Rejection> {
    let (kind, after, id, device) = head(ctx)?;
    let after = &after;
    let reject = |r: Rejection| r.from_device(Source::Camera, Some(&device.id));
    let mut d = Draft::new(Source::Camera, format!("review_{kind}"), Some(device));
    d.attrs.insert("via".into(), Value::from("frigate"));
    d.attrs.insert("review_id".into(), Value::from(id.as_str()));
    if let Some(sev) = opt_str(after, "severity").map_err(reject)? {
        d.attrs.insert("severity".into(), Value::from(sev));
    }
    if let Some(Value::Object(data)) = after.get("data") {
        if let Some(Value::Array(objs)) = data.get("objects") {
            let labels: Vec<Value> = objs
                .iter()
                .filter(|v| v.is_string())
                .take(16)
                .cloned()
                .collect();
            d.attrs.insert("objects".into(), Value::Array(labels));
        }
    }
    let ts_value = if kind == "end" {
        after.get("end_time")
    } else {
        after.get("start_time")
    };
    if let Some(v) = ts_value.filter(|v| !v.is_null()) {
        d.ts = Some(timestamp(v, "start_time", true).map_err(reject)?);
    }
    // Review updates carry no time of their own that changes: leave them to
    // the content hash (identical bytes are the same update).
    if kind != "update" {
        d.dedup = Some(format!("frigate-review:{id}:{kind}"));
    }
    d.finish(ctx)
}

/// Decode `frigate/available`.
pub fn available(ctx: &Ctx<'_>) -> Result<Event, Rejection> {
    let state = match ctx.raw.payload.trim_ascii() {
        b"online" => "online",
        b"offline" => "offline",
        // Frigate 0.18 publishes `stopped` on a clean shutdown.
        b"stopped" => "stopped",
        _ => {
            return Err(src(Rejection::new(
                Reason::InvalidField,
                "frigate/available must be `online`, `offline` or `stopped`",
            )))
        }
    };
    let mut d = Draft::new(Source::Camera, "frigate_available", None);
    d.attrs.insert("via".into(), Value::from("frigate"));
    d.attrs.insert("state".into(), Value::from(state));
    d.finish(ctx)
}

/// What `frigate/events` and `frigate/reviews` share: the `type`, the `after`
/// object, its `id` and the registry camera behind its `camera` name.
type Head<'a> = (&'static str, Map<String, Value>, String, &'a DeviceInfo);

fn head<'a>(ctx: &'a Ctx<'_>) -> Result<Head<'a>, Rejection> {
    let mut m = object(&ctx.raw.payload).map_err(src)?;
    let kind = typed(&m)?;
    let after = take_after(&mut m)?;
    let id = req_str(&after, "id").map_err(src)?.to_string();
    let cam_name = req_str(&after, "camera").map_err(src)?;
    let device = ctx.registry.frigate_camera(cam_name).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownDevice,
            format!(
                "Frigate camera `{cam_name}` is not in the registry (set frigate_name on a camera)"
            ),
        )
        .from_device(Source::Camera, Some(cam_name))
    })?;
    Ok((kind, after, id, device))
}

fn src(r: Rejection) -> Rejection {
    r.from_device(Source::Camera, None)
}

fn typed(m: &Map<String, Value>) -> Result<&'static str, Rejection> {
    match req_str(m, "type").map_err(src)? {
        "new" => Ok("new"),
        "update" => Ok("update"),
        "end" => Ok("end"),
        other => Err(src(Rejection::new(
            Reason::InvalidField,
            format!(
                "`type` is `{}`, expected new, update or end",
                other.chars().take(40).collect::<String>()
            ),
        ))),
    }
}

fn take_after(m: &mut Map<String, Value>) -> Result<Map<String, Value>, Rejection> {
    match m.remove("after") {
        Some(Value::Object(a)) => Ok(a),
        None | Some(Value::Null) => Err(src(Rejection::new(
            Reason::MissingField,
            "missing field `after`",
        ))),
        Some(other) => Err(src(Rejection::new(
            Reason::InvalidField,
            format!("`after` must be an object, got {}", type_name(&other)),
        ))),
    }
}
