//! The uplink's message contract (docs/PROVINCE.md §3): subject, headers
//! and the JSON body of one journal entry.
//!
//! - subject `{prefix}.{commune}.journal.{kind}`;
//! - headers `Nats-Msg-Id: {commune}:{seq}` (JetStream's dedup),
//!   `Ioc-Commune`, `Ioc-Seq`, `Ioc-Kind`, `Ioc-Schema: 1`,
//!   `Content-Type: application/json`;
//! - body: `{"schema":1,"commune","seq","kind","journaled_at_ms", <kind>: {...}}`
//!   with the row as journaled; a payload that is not UTF-8 goes as
//!   `payload_base64` instead of `payload`.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::journal::seq::{Content, Entry};

/// Version of the body and headers.
pub const SCHEMA: u32 = 1;

/// The subject of an entry.
pub fn subject(prefix: &str, commune: &str, kind: &str) -> String {
    format!("{prefix}.{commune}.journal.{kind}")
}

/// The message id JetStream deduplicates by.
pub fn msg_id(commune: &str, seq: i64) -> String {
    format!("{commune}:{seq}")
}

/// The headers of an entry.
pub fn headers(commune: &str, entry: &Entry) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        msg_id(commune, entry.seq).as_str(),
    );
    h.insert("Ioc-Commune", commune);
    h.insert("Ioc-Seq", entry.seq.to_string().as_str());
    h.insert("Ioc-Kind", entry.kind.as_str());
    h.insert("Ioc-Schema", SCHEMA.to_string().as_str());
    h.insert("Content-Type", "application/json");
    h
}

fn put_payload(m: &mut Map<String, Value>, payload: &[u8], keep: bool) {
    if !keep {
        m.insert("payload_omitted".into(), true.into());
        return;
    }
    match std::str::from_utf8(payload) {
        Ok(s) => m.insert("payload".into(), s.into()),
        Err(_) => m.insert(
            "payload_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(payload)
                .into(),
        ),
    };
}

fn content(entry: &Entry, keep_payload: bool) -> Value {
    match &entry.content {
        Content::Event(e) => {
            let attrs = serde_json::from_str::<Value>(&e.attrs).unwrap_or_else(|_| json!({}));
            let mut m = Map::new();
            m.insert("id".into(), e.id.into());
            m.insert("dedup_key".into(), e.dedup_key.clone().into());
            m.insert("source".into(), e.source.clone().into());
            m.insert("kind".into(), e.kind.clone().into());
            m.insert("device".into(), e.device.clone().into());
            m.insert("village".into(), e.village.clone().into());
            m.insert("ts_ms".into(), e.ts_ms.into());
            m.insert("received_at_ms".into(), e.received_at_ms.into());
            m.insert("device_seq".into(), e.device_seq.into());
            m.insert("attrs".into(), attrs);
            m.insert("topic".into(), e.topic.clone().into());
            put_payload(&mut m, &e.payload, keep_payload);
            Value::Object(m)
        }
        Content::DeadLetter(d) => {
            let mut m = Map::new();
            m.insert("id".into(), d.id.into());
            m.insert("dedup_key".into(), d.dedup_key.clone().into());
            m.insert("reason".into(), d.reason.clone().into());
            m.insert("detail".into(), d.detail.clone().into());
            m.insert("topic".into(), d.topic.clone().into());
            m.insert("source".into(), d.source.clone().into());
            m.insert("device".into(), d.device.clone().into());
            m.insert("size".into(), d.size.into());
            m.insert("received_at_ms".into(), d.received_at_ms.into());
            put_payload(&mut m, &d.payload, keep_payload);
            Value::Object(m)
        }
        Content::Body(b) => serde_json::from_slice(b).unwrap_or_else(|_| {
            let mut m = Map::new();
            put_payload(&mut m, b, keep_payload);
            Value::Object(m)
        }),
        Content::Missing => Value::Null,
    }
}

/// The JSON body of an entry, at most `max` bytes when it can be: an entry
/// whose raw payload would make it larger goes without it
/// (`"payload_omitted": true`; the province still gets its place in the
/// sequence and every other field).
pub fn body(commune: &str, entry: &Entry, max: usize) -> Vec<u8> {
    let build = |keep: bool| {
        let mut m = Map::new();
        m.insert("schema".into(), SCHEMA.into());
        m.insert("commune".into(), commune.into());
        m.insert("seq".into(), entry.seq.into());
        m.insert("kind".into(), entry.kind.clone().into());
        m.insert("journaled_at_ms".into(), entry.at_ms.into());
        m.insert(entry.kind.clone(), content(entry, keep));
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    };
    let full = build(true);
    if full.len() <= max {
        full
    } else {
        build(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::seq::{DeadLetterRow, EventRow};

    fn event(payload: &[u8]) -> Entry {
        Entry {
            seq: 42,
            kind: "event".into(),
            at_ms: 1_700_000_000_123,
            content: Content::Event(EventRow {
                id: 7,
                dedup_key: "k".into(),
                source: "sensor".into(),
                kind: "telemetry".into(),
                device: Some("s-1".into()),
                village: None,
                ts_ms: 1,
                received_at_ms: 2,
                device_seq: None,
                attrs: r#"{"rain_mm":1.5}"#.into(),
                topic: "ioc/xa-a/sensor/s-1/telemetry".into(),
                payload: payload.to_vec(),
            }),
        }
    }

    #[test]
    fn subject_id_and_headers_follow_the_contract() {
        assert_eq!(subject("ioc", "xa-a", "event"), "ioc.xa-a.journal.event");
        let h = headers("xa-a", &event(b"{}"));
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(),
            "xa-a:42"
        );
        assert_eq!(h.get("Ioc-Seq").unwrap().as_str(), "42");
        assert_eq!(h.get("Ioc-Kind").unwrap().as_str(), "event");
        assert_eq!(h.get("Ioc-Commune").unwrap().as_str(), "xa-a");
    }

    #[test]
    fn the_body_carries_the_row_and_the_payload_as_text_or_base64() {
        let v: Value =
            serde_json::from_slice(&body("xa-a", &event(b"{\"x\":1}"), 1 << 20)).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["commune"], "xa-a");
        assert_eq!(v["event"]["attrs"]["rain_mm"], 1.5);
        assert_eq!(v["event"]["payload"], "{\"x\":1}");
        let v: Value =
            serde_json::from_slice(&body("xa-a", &event(&[0xff, 0x00]), 1 << 20)).unwrap();
        assert_eq!(v["event"]["payload_base64"], "/wA=");
        let dead = Entry {
            seq: 3,
            kind: "dead_letter".into(),
            at_ms: 5,
            content: Content::DeadLetter(DeadLetterRow {
                id: 1,
                dedup_key: "d".into(),
                reason: "invalid_json".into(),
                detail: "x".into(),
                topic: "t".into(),
                source: None,
                device: None,
                size: 5,
                received_at_ms: 5,
                payload: b"{nope".to_vec(),
            }),
        };
        let v: Value = serde_json::from_slice(&body("xa-a", &dead, 1 << 20)).unwrap();
        assert_eq!(v["dead_letter"]["reason"], "invalid_json");
        assert_eq!(v["dead_letter"]["payload"], "{nope");
    }

    /// A sealed report is numbered in its sealing transaction and goes
    /// out as a `report` entry carrying the signed document.
    #[test]
    fn a_sealed_report_is_a_journal_entry_with_its_document() {
        use crate::config::load_str;
        use crate::indicators::Engine;
        use crate::journal::Store;
        let site = "[commune]\nid = \"xa\"\nname = \"Xã Thử\"\nprovince = \"Lai Châu\"\n\
                    [[village]]\nid = \"a\"\nname = \"Thôn A\"\n";
        let config = load_str(site, "t.toml", &[]).unwrap();
        let engine = Engine::new(&config);
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("journal.db")).unwrap();
        store.bind_commune("xa").unwrap();
        let key = crate::reports::keys::load_or_create(&dir.path().join("k.pem")).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-06-20T00:00:00+07:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let sealed = crate::reports::service::seal_label(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            "2026-06",
            now,
            "cli",
        )
        .unwrap();
        let entries = store.entries_after("xa", 0, 10, usize::MAX).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].seq, entries[0].kind.as_str()), (1, "report"));
        let v: Value = serde_json::from_slice(&body("xa", &entries[0], 1 << 20)).unwrap();
        assert_eq!(v["report"]["period"], "2026-06");
        assert_eq!(v["report"]["revision"], 0);
        assert_eq!(v["report"]["digest"], sealed.digest.as_str());
        assert!(v["report"]["document"].is_object(), "{v}");
    }

    #[test]
    fn an_entry_over_the_server_limit_goes_without_its_payload() {
        let big = vec![b'a'; 10_000];
        let b = body("xa-a", &event(&big), 2_000);
        assert!(b.len() <= 2_000, "{}", b.len());
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["event"]["payload_omitted"], true);
        assert_eq!(v["event"]["dedup_key"], "k");
    }
}
