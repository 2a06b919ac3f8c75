//! `ioc/{commune}/procedure/dossier`: dossier lifecycle events from the
//! administrative-procedure system. The field names are a contract:
//!
//! ```json
//! {"ts":"2026-11-23T09:12:00+07:00","dossier_id":"000.00.21.H37-261123-0001","event":"received","channel":"online","full_online":true,"village":"tan-binh"}
//! {"ts":"2026-11-25T16:00:00+07:00","dossier_id":"000.00.21.H37-261123-0001","event":"resolved","outcome":"early"}
//! {"ts":"2026-11-23T09:20:00+07:00","dossier_id":"000.00.21.H37-261123-0001","event":"paid","payment":"online"}
//! ```
//!
//! `resolved` may give `due` (RFC 3339) instead of `outcome`: the outcome is
//! then `on_time` when resolved at or before `due`, else `late`. The same
//! dossier event twice counts once (dedup key `dossier:{id}:{event}`).

use serde_json::Value;

use super::fields::{object, one_of, opt_bool, opt_str, opt_ts, req_id, req_str, timestamp};
use super::{Ctx, Draft};
use crate::model::{Event, Reason, Rejection, Source};

/// Dossier events.
pub const EVENTS: &[&str] = &["received", "resolved", "paid"];

/// Decode a dossier event.
pub fn dossier(ctx: &Ctx<'_>) -> Result<Event, Rejection> {
    inner(ctx).map_err(|r| r.from_device(Source::Procedure, None))
}

fn inner(ctx: &Ctx<'_>) -> Result<Event, Rejection> {
    let m = object(&ctx.raw.payload)?;
    let id = req_id(&m, "dossier_id")?;
    let event = one_of(req_str(&m, "event")?, "event", EVENTS)?;
    let mut d = Draft::new(Source::Procedure, event, None);
    d.ts = opt_ts(&m)?;
    d.attrs
        .insert("dossier_id".into(), Value::from(id.as_str()));
    match event {
        "received" => {
            let channel = one_of(
                req_str(&m, "channel")?,
                "channel",
                &["online", "direct", "postal"],
            )?;
            d.attrs.insert("channel".into(), Value::from(channel));
            if let Some(full) = opt_bool(&m, "full_online")? {
                d.attrs.insert("full_online".into(), Value::from(full));
            }
        }
        "resolved" => {
            let outcome = match opt_str(&m, "outcome")? {
                Some(o) => one_of(o, "outcome", &["early", "on_time", "late"])?.to_string(),
                None => match m.get("due") {
                    None | Some(Value::Null) => {
                        return Err(Rejection::new(
                            Reason::MissingField,
                            "a `resolved` event needs `outcome` or `due`",
                        ))
                    }
                    Some(v) => {
                        let due = timestamp(v, "due", false)?;
                        let resolved_at = d.ts.unwrap_or(ctx.raw.received_at);
                        if resolved_at <= due {
                            "on_time"
                        } else {
                            "late"
                        }
                        .to_string()
                    }
                },
            };
            d.attrs.insert("outcome".into(), Value::from(outcome));
        }
        _ => {
            let payment = one_of(req_str(&m, "payment")?, "payment", &["online", "cash"])?;
            d.attrs.insert("payment".into(), Value::from(payment));
        }
    }
    if let Some(v) = opt_str(&m, "village")? {
        if ctx.registry.has_village(v) {
            d.village = Some(v.to_string());
        } else if ctx.reject_unknown_village {
            return Err(Rejection::new(
                Reason::InvalidField,
                format!("village `{v}` is not in the registry"),
            ));
        } else {
            d.attrs.insert("unknown_village".into(), Value::from(v));
        }
    }
    d.dedup = Some(format!("dossier:{id}:{event}"));
    d.finish(ctx)
}
