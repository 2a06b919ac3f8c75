//! Decoders: one per producer family, each a pure function from a raw MQTT
//! message to an [`Event`] or a [`Rejection`] (which becomes a dead letter),
//! or, for a message that carries several objects (a DVCQG `data[]`), to
//! one event or rejection per object ([`Decoded`]).
//!
//! Topics (see docs/PROTOCOL.md for payload examples):
//!
//! | topic | decoder |
//! |---|---|
//! | `ioc/{commune}/camera/{id}/event` | `camera` |
//! | `ioc/{commune}/camera/{id}/status` | `status` |
//! | `frigate/events`, `frigate/reviews`, `frigate/available` | `frigate` |
//! | `ioc/{commune}/speaker/{id}/status` | `status` |
//! | `ioc/{commune}/speaker/{id}/session` | `speaker` |
//! | `ioc/{commune}/speaker/{id}/cmd` | `speaker` (a copy of our own command) |
//! | `ioc/{commune}/speaker/{id}/ack` | `speaker` |
//! | `ioc/{commune}/procedure/dossier` | `procedure` |
//! | `ioc/{commune}/procedure/dvcqg` | `dvcqg` (several events per message) |
//! | `ioc/{commune}/sensor/{id}/telemetry` | `sensor` |
//! | `ioc/{commune}/sensor/{id}/status` | `status` |
//! | the topics of the site's `[[mapped]]` sources | `mapped` |
//!
//! An empty payload on any of these topics (a cleared retained message)
//! is a `cleared` event that changes nothing (see [`CLEARED`]).

mod camera;
pub mod dvcqg;
pub mod fields;
mod frigate;
pub mod mapped;
mod procedure;
mod sensor;
mod speaker;
mod status;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Registry;
use crate::config::{Dvcqg, Ingest};
use crate::model::{DeviceClass, DeviceInfo, Event, Raw, Reason, Rejection, Source};

/// What one message decodes to.
///
/// Most topics carry one event per message: [`Decoded::One`], an event or,
/// when the message as a whole is bad, a rejection (one dead letter of the
/// whole payload). A message that carries several objects (a DVCQG
/// `data[]`) is [`Decoded::Many`]: one [`Part`] per result, each its own
/// event or its own rejection, so the good objects of a mixed message are
/// committed and each bad one becomes a dead letter of its own, with its
/// own bytes. A carrier message that is bad as a whole (not JSON, no
/// `data[]`) is still `One(Err(..))`.
#[derive(Debug)]
pub enum Decoded {
    /// One event, or the whole message rejected.
    One(Result<Event, Rejection>),
    /// The results of a message of several objects, in order.
    Many(Vec<Part>),
}

/// One result of a decoded message: an event or a rejection, and the bytes
/// it came from when that is a piece of the message rather than all of it.
#[derive(Debug)]
pub struct Part {
    /// The event, or why this object could not become one.
    pub result: Result<Event, Rejection>,
    /// The object's own bytes, journaled with its event or kept as its dead
    /// letter instead of the whole payload; `None`: the whole message.
    pub payload: Option<Vec<u8>>,
}

impl Decoded {
    /// How many results (events or rejections) the message gave.
    pub fn len(&self) -> usize {
        match self {
            Decoded::One(_) => 1,
            Decoded::Many(parts) => parts.len(),
        }
    }

    /// Whether the message gave no result at all (a `Many` of nothing).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Result<Event, Rejection>> for Decoded {
    fn from(r: Result<Event, Rejection>) -> Self {
        Decoded::One(r)
    }
}

/// The parts of a [`Decoded`], in order (no allocation for `One`).
#[derive(Debug)]
pub enum Parts {
    /// The single result, until taken.
    One(Option<Result<Event, Rejection>>),
    /// The parts of a `Many`.
    Many(std::vec::IntoIter<Part>),
}

impl Iterator for Parts {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        match self {
            Parts::One(r) => r.take().map(|result| Part {
                result,
                payload: None,
            }),
            Parts::Many(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Parts::One(r) => {
                let n = usize::from(r.is_some());
                (n, Some(n))
            }
            Parts::Many(it) => it.size_hint(),
        }
    }
}

impl IntoIterator for Decoded {
    type Item = Part;
    type IntoIter = Parts;

    fn into_iter(self) -> Parts {
        match self {
            Decoded::One(r) => Parts::One(Some(r)),
            Decoded::Many(parts) => Parts::Many(parts.into_iter()),
        }
    }
}

/// Everything a decoder needs besides the message: the registry and limits.
#[derive(Debug, Clone)]
pub struct Decoder {
    registry: Arc<Registry>,
    limits: Ingest,
    reject_unknown_village: bool,
    mapped: mapped::Mapped,
    dvcqg: Arc<Dvcqg>,
}

/// What the topic says about a message, before its payload is read.
pub(crate) struct Ctx<'a> {
    pub raw: &'a Raw,
    pub limits: &'a Ingest,
    pub registry: &'a Registry,
    pub reject_unknown_village: bool,
}

impl Decoder {
    /// A decoder for one commune.
    pub fn new(registry: Arc<Registry>, limits: Ingest, reject_unknown_village: bool) -> Self {
        Decoder {
            registry,
            limits,
            reject_unknown_village,
            mapped: mapped::Mapped::default(),
            dvcqg: Arc::new(Dvcqg::default()),
        }
    }

    /// The site's codes of the national-portal dossier sync
    /// (`[procedure.dvcqg]`; the defaults otherwise).
    pub fn with_dvcqg(mut self, codes: Dvcqg) -> Self {
        self.dvcqg = Arc::new(codes);
        self
    }

    /// Whether `topic` is this commune's `ioc/{commune}/procedure/dvcqg`.
    fn is_dvcqg(&self, topic: &str) -> bool {
        topic
            .strip_prefix("ioc/")
            .and_then(|t| t.strip_prefix(self.registry.commune.as_str()))
            == Some("/procedure/dvcqg")
    }

    /// The same decoder, also decoding the site's mapped sources.
    pub fn with_mapped(mut self, mapped: mapped::Mapped) -> Self {
        self.mapped = mapped;
        self
    }

    /// The mapped sources this decoder applies.
    pub fn mapped(&self) -> &mapped::Mapped {
        &self.mapped
    }

    /// The registry this decoder resolves devices against.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The MQTT topic filters to subscribe to.
    pub fn topic_filters(&self) -> Vec<String> {
        let mut filters = vec![
            format!("ioc/{}/#", self.registry.commune),
            "frigate/events".into(),
            "frigate/reviews".into(),
            "frigate/available".into(),
        ];
        filters.extend(self.mapped.filters());
        filters
    }

    /// What a mapped rule makes of `raw`: `None` when the topic is not a
    /// mapped one (a native topic, or no rule takes it).
    pub fn decode_mapped(&self, raw: &Raw) -> Option<mapped::Outcome> {
        let levels = raw.topic.split('/').next();
        if matches!(levels, Some("ioc" | "frigate"))
            || raw.payload.len() > self.limits.max_payload_bytes
        {
            return None;
        }
        let ctx = Ctx {
            raw,
            limits: &self.limits,
            registry: &self.registry,
            reject_unknown_village: self.reject_unknown_village,
        };
        self.mapped.decode(&ctx)
    }

    /// Decode one message: one event or rejection, or one per object of a
    /// message that carries several (see [`Decoded`]). Never panics,
    /// whatever the bytes.
    pub fn decode(&self, raw: &Raw) -> Decoded {
        if !raw.payload.is_empty() && self.is_dvcqg(&raw.topic) {
            let ctx = Ctx {
                raw,
                limits: &self.limits,
                registry: &self.registry,
                reject_unknown_village: self.reject_unknown_village,
            };
            return dvcqg::decode(&ctx, &self.dvcqg);
        }
        if !self.mapped.is_empty() {
            if let Some(out) = self.decode_mapped(raw) {
                return out.decoded;
            }
        }
        self.decode_one(raw).into()
    }

    fn decode_one(&self, raw: &Raw) -> Result<Event, Rejection> {
        if raw.payload.len() > self.limits.max_payload_bytes {
            return Err(Rejection::new(
                Reason::Oversized,
                format!(
                    "payload is {} bytes, the limit (ingest.max_payload_bytes) is {}",
                    raw.payload.len(),
                    self.limits.max_payload_bytes
                ),
            ));
        }
        if raw.payload.is_empty() {
            if let Some(e) = cleared(raw, &self.registry.commune) {
                return Ok(e);
            }
        }
        let ctx = Ctx {
            raw,
            limits: &self.limits,
            registry: &self.registry,
            reject_unknown_village: self.reject_unknown_village,
        };
        let levels: Vec<&str> = raw.topic.split('/').collect();
        match levels.as_slice() {
            ["frigate", "events"] => frigate::event(&ctx),
            ["frigate", "reviews"] => frigate::review(&ctx),
            ["frigate", "available"] => frigate::available(&ctx),
            ["ioc", commune, rest @ ..] => {
                if *commune != self.registry.commune {
                    return Err(Rejection::new(
                        Reason::WrongCommune,
                        format!(
                            "topic names commune `{commune}`, this instance serves `{}`",
                            self.registry.commune
                        ),
                    ));
                }
                match rest {
                    ["camera", id, "event"] => {
                        camera::event(&ctx, known(&ctx, DeviceClass::Camera, Source::Camera, id)?)
                    }
                    ["camera", id, "status"] => status::decode(
                        &ctx,
                        Source::Camera,
                        known(&ctx, DeviceClass::Camera, Source::Camera, id)?,
                    ),
                    ["speaker", id, "status"] => status::decode(
                        &ctx,
                        Source::Speaker,
                        known(&ctx, DeviceClass::Speaker, Source::Speaker, id)?,
                    ),
                    ["speaker", id, "session"] => speaker::session(
                        &ctx,
                        known(&ctx, DeviceClass::Speaker, Source::Speaker, id)?,
                    ),
                    ["speaker", id, "cmd"] => speaker::command(
                        &ctx,
                        known(&ctx, DeviceClass::Speaker, Source::Speaker, id)?,
                    ),
                    ["speaker", id, "ack"] => speaker::ack(
                        &ctx,
                        known(&ctx, DeviceClass::Speaker, Source::Speaker, id)?,
                    ),
                    ["procedure", "dossier"] => procedure::dossier(&ctx),
                    ["sensor", id, "telemetry"] => sensor::telemetry(
                        &ctx,
                        known(&ctx, DeviceClass::Sensor, Source::Sensor, id)?,
                    ),
                    ["sensor", id, "status"] => status::decode(
                        &ctx,
                        Source::Sensor,
                        known(&ctx, DeviceClass::Sensor, Source::Sensor, id)?,
                    ),
                    _ => Err(unknown_topic(raw)),
                }
            }
            _ => Err(unknown_topic(raw)),
        }
    }
}

/// The kind of the event an empty payload becomes.
pub const CLEARED: &str = "cleared";

/// An empty payload on a topic this service decodes: in MQTT, that is how a
/// retained message is cleared (an empty retained publish), so it is valid
/// input, not an error. It becomes a `cleared` event that changes nothing:
/// no device (so no `last_seen`), no indicator (see
/// `indicators::Engine::delta`). The device id, even one not in the
/// registry (a device taken out of service is the usual reason to clear its
/// retained status), is kept in `attrs.device_id`, the topic in
/// `attrs.topic`. Topics this service does not decode stay dead letters.
fn cleared(raw: &Raw, commune: &str) -> Option<Event> {
    let levels: Vec<&str> = raw.topic.split('/').collect();
    let (source, device) = match levels.as_slice() {
        ["frigate", "events" | "reviews" | "available"] => (Source::Camera, None),
        ["ioc", c, rest @ ..] if *c == commune => match rest {
            ["camera", id, "event" | "status"] => (Source::Camera, Some(*id)),
            ["speaker", id, "status" | "session"] => (Source::Speaker, Some(*id)),
            ["sensor", id, "telemetry" | "status"] => (Source::Sensor, Some(*id)),
            ["procedure", "dossier" | "dvcqg"] => (Source::Procedure, None),
            _ => return None,
        },
        _ => return None,
    };
    let mut attrs = serde_json::Map::new();
    attrs.insert("topic".into(), serde_json::Value::from(raw.topic.as_str()));
    if let Some(id) = device {
        attrs.insert("device_id".into(), serde_json::Value::from(id));
    }
    Some(Event {
        source,
        kind: CLEARED.into(),
        device: None,
        village: None,
        ts: raw.received_at,
        received_at: raw.received_at,
        seq: None,
        attrs,
        dedup_key: format!(
            "{}:{}",
            content_key(raw, false),
            raw.received_at.timestamp_micros()
        ),
        retained: raw.retained,
    })
}

/// Whether `topic` is one this instance publishes itself (the sealed
/// reports on `ioc/{commune}/report/{period}`): ingest skips those, so
/// they never become events or dead letters.
pub fn is_own_output(topic: &[u8], commune: &str) -> bool {
    let mut levels = topic.split(|&b| b == b'/');
    levels.next() == Some(b"ioc")
        && levels.next() == Some(commune.as_bytes())
        && levels.next() == Some(b"report")
}

fn unknown_topic(raw: &Raw) -> Rejection {
    let mut shown: String = raw.topic.chars().take(120).collect();
    if shown.len() < raw.topic.len() {
        shown.push('…');
    }
    Rejection::new(
        Reason::UnknownTopic,
        format!("no decoder for topic `{shown}`"),
    )
}

fn known<'a>(
    ctx: &'a Ctx<'_>,
    class: DeviceClass,
    source: Source,
    id: &str,
) -> Result<&'a DeviceInfo, Rejection> {
    ctx.registry.device(class, id).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownDevice,
            format!("{} `{id}` is not in the registry", class.as_str()),
        )
        .from_device(source, Some(id))
    })
}

/// Check an event time against the configured skew and age limits.
pub(crate) fn check_time(ts: DateTime<Utc>, ctx: &Ctx<'_>) -> Result<DateTime<Utc>, Rejection> {
    let received = ctx.raw.received_at;
    let ahead = ts.signed_duration_since(received).num_seconds();
    if ahead > ctx.limits.max_future_skew_secs {
        return Err(Rejection::new(
            Reason::TimestampInFuture,
            format!(
                "event time {} is {ahead} s ahead of the receive time (limit ingest.max_future_skew_secs = {})",
                ts.to_rfc3339(),
                ctx.limits.max_future_skew_secs
            ),
        ));
    }
    let age_days = received.signed_duration_since(ts).num_days();
    if age_days > ctx.limits.max_age_days {
        return Err(Rejection::new(
            Reason::TimestampTooOld,
            format!(
                "event time {} is {age_days} days old (limit ingest.max_age_days = {})",
                ts.to_rfc3339(),
                ctx.limits.max_age_days
            ),
        ));
    }
    Ok(ts)
}

/// Dedup key from the content: a hash of topic and payload. When the
/// payload carries no time of its own, the receive hour is added so that a
/// device repeating an identical message later is not merged with it.
pub(crate) fn content_key(raw: &Raw, has_own_time: bool) -> String {
    content_key_of(raw, &raw.payload, has_own_time)
}

/// The content key of a piece of a message (one object of a DVCQG
/// `data[]`): as [`content_key`], over the piece's own bytes.
pub(crate) fn content_key_of(raw: &Raw, payload: &[u8], has_own_time: bool) -> String {
    let mut h = blake3::Hasher::new();
    h.update(raw.topic.as_bytes());
    h.update(&[0]);
    h.update(payload);
    if !has_own_time {
        h.update(&(raw.received_at.timestamp() / 3600).to_le_bytes());
    }
    let hex = h.finalize().to_hex();
    format!("h:{}", &hex.as_str()[..32])
}

/// The parts of an event a decoder has worked out; [`Draft::finish`] checks
/// the time and fills in defaults.
pub(crate) struct Draft<'a> {
    pub source: Source,
    pub kind: String,
    pub device: Option<&'a DeviceInfo>,
    pub village: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub seq: Option<u64>,
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// Explicit dedup key (dossier id, Frigate object id...). When `None`,
    /// `{device}:{seq}` is used if there is a seq, else a content hash.
    pub dedup: Option<String>,
}

impl<'a> Draft<'a> {
    pub fn new(source: Source, kind: impl Into<String>, device: Option<&'a DeviceInfo>) -> Self {
        Draft {
            source,
            kind: kind.into(),
            device,
            village: device.and_then(|d| d.village.clone()),
            ts: None,
            seq: None,
            attrs: serde_json::Map::new(),
            dedup: None,
        }
    }

    pub fn finish(self, ctx: &Ctx<'_>) -> Result<Event, Rejection> {
        let device_id = self.device.map(|d| d.id.clone());
        let reject = |r: Rejection| r.from_device(self.source, device_id.as_deref());
        let ts = match self.ts {
            Some(t) => check_time(t, ctx).map_err(reject)?,
            None => ctx.raw.received_at,
        };
        let dedup_key = match (self.dedup, self.seq, &device_id, self.ts) {
            (Some(k), ..) => k,
            // A device sequence number is unique together with the device's
            // own time (counters restart when a device reboots).
            (None, Some(seq), Some(dev), Some(t)) => format!(
                "{}:{}:{}:{}:{}",
                self.source.as_str(),
                dev,
                self.kind,
                seq,
                t.timestamp_millis()
            ),
            // A status without a time of its own is never merged: repeating
            // the same state is harmless, losing a flap is not.
            (None, _, _, None) if self.kind == "status" => {
                format!(
                    "{}:{}",
                    content_key(ctx.raw, false),
                    ctx.raw.received_at.timestamp_micros()
                )
            }
            _ => content_key(ctx.raw, self.ts.is_some()),
        };
        Ok(Event {
            source: self.source,
            kind: self.kind,
            device: device_id,
            village: self.village,
            ts,
            received_at: ctx.raw.received_at,
            seq: self.seq,
            attrs: self.attrs,
            dedup_key,
            retained: ctx.raw.retained,
        })
    }
}

#[cfg(test)]
mod tests;
