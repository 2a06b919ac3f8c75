//! Reading one journal entry as a commune's uplink sends it
//! (`crate::uplink::wire`, docs/PROVINCE.md §3) back into the journal's
//! types. A message that cannot be read is refused with a reason
//! ([`Refused`]) and becomes a dead letter of the province's copy, in the
//! place of its seq when the headers name one.

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::model::{Event, Reason, Source};

/// An entry read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Its seq.
    pub seq: i64,
    /// When the commune journaled it, ms UTC.
    pub at_ms: i64,
    /// What it holds.
    pub content: InContent,
}

/// What an incoming entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum InContent {
    /// An event, with its topic and raw payload (empty when the uplink
    /// left it out).
    Event {
        /// The event.
        event: Box<Event>,
        /// MQTT topic at the commune.
        topic: String,
        /// The raw payload.
        payload: Vec<u8>,
    },
    /// A dead letter of the commune.
    Dead(OwnedDead),
    /// Another kind (warning, report, alert, broadcast, ...), with its
    /// body re-serialized.
    Body {
        /// Kind.
        kind: String,
        /// Body (JSON).
        body: Vec<u8>,
    },
}

/// A dead letter, owned until its batch is written: one of the commune's,
/// or the province's own for a message it could not read.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedDead {
    /// Dedup key.
    pub dedup_key: String,
    /// Reason.
    pub reason: Reason,
    /// Detail.
    pub detail: String,
    /// Topic.
    pub topic: String,
    /// Source family.
    pub source: Option<Source>,
    /// Device.
    pub device: Option<String>,
    /// Size of the whole payload (`None`: the payload's own length).
    pub size: Option<usize>,
    /// Receive time.
    pub received_at: DateTime<Utc>,
    /// The payload as kept.
    pub payload: Vec<u8>,
}

impl OwnedDead {
    /// As the journal writes it.
    pub fn as_new(&self) -> crate::journal::NewDeadLetter<'_> {
        crate::journal::NewDeadLetter {
            dedup_key: self.dedup_key.clone(),
            reason: self.reason,
            detail: &self.detail,
            topic: &self.topic,
            source: self.source,
            device: self.device.as_deref(),
            payload: &self.payload,
            received_at: self.received_at,
            size: self.size,
        }
    }
}

/// A message that is not a readable entry of this commune.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The seq its headers name, if any.
    pub seq: Option<i64>,
    /// Why (English, for the dead letter's detail).
    pub detail: String,
    /// The dead-letter reason.
    pub reason: Reason,
}

fn ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn payload_of(m: &Map<String, Value>) -> Vec<u8> {
    if let Some(s) = m.get("payload").and_then(Value::as_str) {
        return s.as_bytes().to_vec();
    }
    m.get("payload_base64")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default()
}

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// Read a message of `commune`'s journal; `header_seq` is its `Ioc-Seq`
/// header, when readable.
pub fn parse(commune: &str, header_seq: Option<i64>, body: &[u8]) -> Result<Incoming, Refused> {
    let refuse = |reason: Reason, detail: String| Refused {
        seq: header_seq,
        detail,
        reason,
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        refuse(
            Reason::InvalidJson,
            format!("journal entry is not JSON: {e}"),
        )
    })?;
    let Value::Object(top) = v else {
        return Err(refuse(
            Reason::InvalidJson,
            "journal entry is not a JSON object".into(),
        ));
    };
    let seq = top.get("seq").and_then(Value::as_i64);
    let refuse = |reason: Reason, detail: String| Refused {
        seq: header_seq.or(seq),
        detail,
        reason,
    };
    let Some(seq) = seq.filter(|s| *s > 0) else {
        return Err(refuse(
            Reason::MissingField,
            "journal entry without a positive `seq`".into(),
        ));
    };
    if header_seq.is_some_and(|h| h != seq) {
        return Err(refuse(
            Reason::InvalidField,
            format!("`seq` {seq} differs from the Ioc-Seq header"),
        ));
    }
    match top.get("commune").and_then(Value::as_str) {
        Some(c) if c == commune => {}
        other => {
            return Err(refuse(
                Reason::WrongCommune,
                format!(
                    "entry of commune {:?} on the subject of `{commune}`",
                    other.unwrap_or("")
                ),
            ))
        }
    }
    let kind = top
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| refuse(Reason::MissingField, "journal entry without `kind`".into()))?
        .to_owned();
    let at_ms = top
        .get("journaled_at_ms")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            refuse(
                Reason::MissingField,
                "journal entry without `journaled_at_ms`".into(),
            )
        })?;
    let inner = top.get(&kind).cloned().unwrap_or(Value::Null);
    let content = match kind.as_str() {
        crate::journal::seq::kind::EVENT => {
            let Value::Object(m) = inner else {
                return Err(refuse(
                    Reason::MissingField,
                    "event entry without its `event` object".into(),
                ));
            };
            let source = text(&m, "source")
                .and_then(|s| Source::parse(&s))
                .ok_or_else(|| {
                    refuse(
                        Reason::InvalidField,
                        "event with an unknown `source`".into(),
                    )
                })?;
            let dedup_key = text(&m, "dedup_key")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| refuse(Reason::MissingField, "event without `dedup_key`".into()))?;
            let num = |k: &str| m.get(k).and_then(Value::as_i64);
            let (Some(ts), Some(received)) = (num("ts_ms"), num("received_at_ms")) else {
                return Err(refuse(
                    Reason::MissingField,
                    "event without `ts_ms` or `received_at_ms`".into(),
                ));
            };
            let attrs = match m.get("attrs") {
                Some(Value::Object(a)) => a.clone(),
                _ => Map::new(),
            };
            InContent::Event {
                event: Box::new(Event {
                    source,
                    kind: text(&m, "kind").unwrap_or_default(),
                    device: text(&m, "device"),
                    village: text(&m, "village"),
                    ts: ms(ts),
                    received_at: ms(received),
                    seq: num("device_seq").and_then(|s| u64::try_from(s).ok()),
                    attrs,
                    dedup_key,
                    retained: false,
                }),
                topic: text(&m, "topic").unwrap_or_default(),
                payload: payload_of(&m),
            }
        }
        crate::journal::seq::kind::DEAD_LETTER => {
            let Value::Object(m) = inner else {
                return Err(refuse(
                    Reason::MissingField,
                    "dead_letter entry without its `dead_letter` object".into(),
                ));
            };
            let dedup_key = text(&m, "dedup_key")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    refuse(
                        Reason::MissingField,
                        "dead letter without `dedup_key`".into(),
                    )
                })?;
            let payload = payload_of(&m);
            InContent::Dead(OwnedDead {
                dedup_key,
                reason: text(&m, "reason")
                    .and_then(|r| Reason::parse(&r))
                    .unwrap_or(Reason::InvalidField),
                detail: text(&m, "detail").unwrap_or_default(),
                topic: text(&m, "topic").unwrap_or_default(),
                source: text(&m, "source").and_then(|s| Source::parse(&s)),
                device: text(&m, "device"),
                size: Some(
                    m.get("size")
                        .and_then(Value::as_u64)
                        .map_or(payload.len(), |s| s as usize),
                ),
                received_at: ms(m
                    .get("received_at_ms")
                    .and_then(Value::as_i64)
                    .unwrap_or(at_ms)),
                payload,
            })
        }
        _ => InContent::Body {
            body: serde_json::to_vec(&inner).unwrap_or_default(),
            kind,
        },
    };
    Ok(Incoming {
        seq,
        at_ms,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::seq::{Content, Entry, EventRow};

    fn entry() -> Entry {
        Entry {
            seq: 7,
            kind: "event".into(),
            at_ms: 1_700_000_000_500,
            content: Content::Event(EventRow {
                id: 1,
                dedup_key: "k1".into(),
                source: "procedure".into(),
                kind: "received".into(),
                device: None,
                village: Some("ban-a".into()),
                ts_ms: 1_700_000_000_000,
                received_at_ms: 1_700_000_000_400,
                device_seq: Some(3),
                attrs: r#"{"dossier_id":"H1","channel":"online"}"#.into(),
                topic: "ioc/xa/procedure/dossier".into(),
                payload: b"{\"x\":1}".to_vec(),
            }),
        }
    }

    #[test]
    fn what_the_uplink_sends_reads_back_as_the_same_event() {
        let body = crate::uplink::wire::body("xa", &entry(), 1 << 20);
        let got = parse("xa", Some(7), &body).unwrap();
        assert_eq!((got.seq, got.at_ms), (7, 1_700_000_000_500));
        let InContent::Event {
            event,
            topic,
            payload,
        } = got.content
        else {
            panic!("not an event: {got:?}")
        };
        assert_eq!(event.source, Source::Procedure);
        assert_eq!(event.kind, "received");
        assert_eq!(event.village.as_deref(), Some("ban-a"));
        assert_eq!(event.ts.timestamp_millis(), 1_700_000_000_000);
        assert_eq!(event.seq, Some(3));
        assert_eq!(event.attr_str("dossier_id"), Some("H1"));
        assert_eq!(event.dedup_key, "k1");
        assert_eq!(topic, "ioc/xa/procedure/dossier");
        assert_eq!(payload, b"{\"x\":1}");
    }

    #[test]
    fn unreadable_entries_are_refused_with_their_reason_and_place() {
        let r = parse("xa", Some(9), b"{nope").unwrap_err();
        assert_eq!((r.seq, r.reason), (Some(9), Reason::InvalidJson));
        let body = crate::uplink::wire::body("xa", &entry(), 1 << 20);
        let r = parse("xb", Some(7), &body).unwrap_err();
        assert_eq!(r.reason, Reason::WrongCommune);
        let r = parse("xa", Some(8), &body).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidField);
        let r = parse(
            "xa",
            None,
            br#"{"commune":"xa","kind":"event","journaled_at_ms":1}"#,
        )
        .unwrap_err();
        assert_eq!((r.seq, r.reason), (None, Reason::MissingField));
        let r = parse(
            "xa",
            None,
            br#"{"commune":"xa","seq":3,"kind":"event","journaled_at_ms":1,"event":{"source":"x"}}"#,
        )
        .unwrap_err();
        assert_eq!((r.seq, r.reason), (Some(3), Reason::InvalidField));
    }

    #[test]
    fn other_kinds_keep_their_body() {
        let got = parse(
            "xa",
            None,
            br#"{"schema":1,"commune":"xa","seq":4,"kind":"warning","journaled_at_ms":9,"warning":{"id":"w1","state":"active"}}"#,
        )
        .unwrap();
        assert_eq!(
            got.content,
            InContent::Body {
                kind: "warning".into(),
                body: br#"{"id":"w1","state":"active"}"#.to_vec()
            }
        );
    }
}
