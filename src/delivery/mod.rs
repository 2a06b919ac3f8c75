//! Durable HTTP delivery: an outbox of POST requests kept in the store,
//! sent by one worker until the receiver accepts them.
//!
//! Used for the province's report submissions and alert webhooks. The API
//! is three calls:
//!
//! ```no_run
//! # use commune_ioc::delivery::{self, NewDelivery};
//! # fn f(conn: &mut rusqlite::Connection, shared: &commune_ioc::state::Shared) -> Result<(), delivery::DeliveryError> {
//! let tx = conn.transaction()?;
//! // ... the caller's own writes ...
//! delivery::enqueue(&tx, &NewDelivery {
//!     key: "report:2026-06:5f1c…",          // idempotency key, unique
//!     target: "province",                   // [delivery.targets.province]
//!     content_type: "application/json",
//!     body: br#"{"period":"2026-06"}"#,
//! }, chrono::Utc::now())?;
//! tx.commit()?;
//! delivery::wake(shared);                   // send now, not at the next poll
//! let state = delivery::get(conn, "report:2026-06:5f1c…")?; // state, receipt
//! # Ok(()) }
//! ```
//!
//! - [`enqueue`] writes one row in the caller's transaction (any
//!   `&rusqlite::Connection`: a `Transaction` derefs to one; on a plain
//!   connection the insert is its own transaction). The key is unique:
//!   enqueuing a key that exists changes nothing and answers
//!   [`Enqueued::Existing`].
//! - The worker ([`run`], started by `serve` with the shutdown token) POSTs
//!   each due row to its target's URL with the key as the
//!   `Idempotency-Key` header (the receiver uses it to count a resend
//!   once), at most `delivery.max_in_flight` at a time, with the request
//!   timeouts of `[delivery]`. Targets are named in the row and resolved
//!   from `[delivery.targets.NAME]` at send time (URL, bearer token or
//!   client certificate for mutual TLS, extra CA), so secrets never land
//!   in the store.
//! - Outcomes: a 2xx answer → `delivered`, with the answer kept as the
//!   receipt (status, the first [`EXCERPT_BYTES`] of the body, time). 400,
//!   410, 413, 415, 422 (the request itself is wrong) → `rejected`, receipt
//!   kept. Anything else (transport error, timeout, 5xx, 401/403/404/429,
//!   an unknown target) → retried after a delay that doubles per attempt
//!   from `backoff_initial_ms` to `backoff_max_ms` with jitter (at least
//!   the receiver's `Retry-After`); the next attempt's time is stored, so
//!   the schedule survives restarts. A row not accepted within
//!   `expire_after_h` of its creation → `expired`. Every attempt is a row
//!   of `delivery_attempts`.
//! - A crash (kill -9) between a send and the recording of its answer
//!   sends that row again after the restart, with the same key.
//!
//! Metrics: `ioc_delivery_attempts_total{target,outcome}`,
//! `ioc_delivery_pending`, `ioc_delivery_in_flight`.

mod worker;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::state::Shared;

pub use worker::run;

/// Most bytes of a receiver's answer kept (per attempt and in the receipt).
pub const EXCERPT_BYTES: usize = 2048;

/// Errors of the delivery outbox.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// SQLite failed.
    #[error("delivery outbox database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A blocking store task failed.
    #[error("delivery outbox task failed: {0}")]
    Task(String),
    /// An argument was empty.
    #[error("delivery: {0} must not be empty")]
    Empty(&'static str),
}

/// A request to deliver.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    /// Idempotency key: unique over every delivery ever enqueued; sent as
    /// the `Idempotency-Key` header. Make it say what it is
    /// (`report:2026-06:{digest}`, `alert:{id}:{transition}`).
    pub key: &'a str,
    /// The name of a `[delivery.targets.NAME]` entry.
    pub target: &'a str,
    /// The body's media type, sent as `Content-Type`.
    pub content_type: &'a str,
    /// The request body.
    pub body: &'a [u8],
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row with this id.
    New(i64),
    /// The key existed already (row id); nothing changed.
    Existing(i64),
}

impl Enqueued {
    /// The row id either way.
    pub fn id(self) -> i64 {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for (another) attempt.
    Pending,
    /// Accepted by the receiver (2xx); the receipt is its answer.
    Delivered,
    /// Refused for good by the receiver (400, 410, 413, 415, 422).
    Rejected,
    /// Not accepted within `delivery.expire_after_h`.
    Expired,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Rejected => "rejected",
            State::Expired => "expired",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "delivered" => State::Delivered,
            "rejected" => State::Rejected,
            "expired" => State::Expired,
            _ => State::Pending,
        }
    }

    /// Nothing more will be attempted.
    pub fn is_final(self) -> bool {
        self != State::Pending
    }
}

/// The receiver's final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Receipt {
    /// HTTP status.
    pub status: u16,
    /// The start of the answer's body (at most [`EXCERPT_BYTES`], lossy
    /// UTF-8).
    pub body: String,
    /// When it came.
    pub at: DateTime<Utc>,
}

/// One delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// Target name.
    pub target: String,
    /// Where it stands.
    pub state: State,
    /// Attempts made.
    pub attempts: u32,
    /// When it was enqueued.
    pub created: DateTime<Utc>,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt: DateTime<Utc>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The receiver's final answer (delivered or rejected).
    pub receipt: Option<Receipt>,
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1, 2, ...
    pub attempt: u32,
    /// When the request started.
    pub started: DateTime<Utc>,
    /// When the answer (or the error) came.
    pub finished: DateTime<Utc>,
    /// The URL posted to.
    pub url: String,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Transport error or failure reason.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub body_excerpt: Option<String>,
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Enqueue a delivery, due at once, in the caller's transaction (or alone
/// on a plain connection). An existing key changes nothing.
pub fn enqueue(
    conn: &Connection,
    d: &NewDelivery<'_>,
    now: DateTime<Utc>,
) -> Result<Enqueued, DeliveryError> {
    if d.key.is_empty() {
        return Err(DeliveryError::Empty("key"));
    }
    if d.target.is_empty() {
        return Err(DeliveryError::Empty("target"));
    }
    let now = ms(now);
    let inserted = conn.execute(
        "INSERT INTO delivery_outbox (key, target, content_type, body, created_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (key) DO NOTHING",
        params![d.key, d.target, d.content_type, d.body, now],
    )?;
    let id: i64 = conn.query_row(
        "SELECT id FROM delivery_outbox WHERE key = ?1",
        [d.key],
        |r| r.get(0),
    )?;
    Ok(if inserted == 1 {
        Enqueued::New(id)
    } else {
        Enqueued::Existing(id)
    })
}

/// Wake the worker of this process now (after the enqueue committed); a
/// worker in another process finds the row at its next poll.
pub fn wake(shared: &Shared) {
    shared.delivery_wake.notify_one();
}

const COLUMNS: &str = "id, key, target, state, attempts, created_ms, next_attempt_ms, last_error,
     receipt_status, receipt_body, receipt_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = r.get(3)?;
    let status: Option<i64> = r.get(8)?;
    let receipt = match status {
        Some(s) => Some(Receipt {
            status: u16::try_from(s).unwrap_or(0),
            body: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
            at: from_ms(r.get::<_, Option<i64>>(10)?.unwrap_or(0)),
        }),
        None => None,
    };
    Ok(Delivery {
        id: r.get(0)?,
        key: r.get(1)?,
        target: r.get(2)?,
        state: State::parse(&state),
        attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        created: from_ms(r.get(5)?),
        next_attempt: from_ms(r.get(6)?),
        last_error: r.get(7)?,
        receipt,
    })
}

/// The delivery with this idempotency key.
pub fn get(conn: &Connection, key: &str) -> Result<Option<Delivery>, DeliveryError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM delivery_outbox WHERE key = ?1"),
            [key],
            row,
        )
        .optional()?)
}

/// The deliveries whose key starts with `prefix` (e.g. `report:2026-06:`),
/// newest first, at most `limit`.
pub fn with_prefix(
    conn: &Connection,
    prefix: &str,
    limit: usize,
) -> Result<Vec<Delivery>, DeliveryError> {
    // `key >= prefix AND key < prefix + U+10FFFF` uses the unique index.
    let upper = format!("{prefix}\u{10FFFF}");
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM delivery_outbox WHERE key >= ?1 AND key < ?2
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![prefix, upper, i64::try_from(limit).unwrap_or(i64::MAX)],
            row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The attempts of the delivery with this key, in order.
pub fn attempts(conn: &Connection, key: &str) -> Result<Vec<Attempt>, DeliveryError> {
    let mut stmt = conn.prepare(
        "SELECT a.attempt, a.started_ms, a.finished_ms, a.url, a.status, a.error, a.body_excerpt
         FROM delivery_attempts a JOIN delivery_outbox o ON o.id = a.delivery_id
         WHERE o.key = ?1 ORDER BY a.attempt",
    )?;
    let rows = stmt
        .query_map([key], |r| {
            Ok(Attempt {
                attempt: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                started: from_ms(r.get(1)?),
                finished: from_ms(r.get(2)?),
                url: r.get(3)?,
                status: r
                    .get::<_, Option<i64>>(4)?
                    .and_then(|s| u16::try_from(s).ok()),
                error: r.get(5)?,
                body_excerpt: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Connection) {
        let tmp = tempfile::tempdir().unwrap();
        let conn = crate::store::open(
            &tmp.path().join("journal.db"),
            crate::config::SyncMode::Normal,
        )
        .unwrap();
        (tmp, conn)
    }

    fn new<'a>(key: &'a str, body: &'a [u8]) -> NewDelivery<'a> {
        NewDelivery {
            key,
            target: "province",
            content_type: "application/json",
            body,
        }
    }

    #[test]
    fn an_existing_key_is_not_enqueued_twice() {
        let (_tmp, conn) = store();
        let now = Utc::now();
        let a = enqueue(&conn, &new("k1", b"{\"a\":1}"), now).unwrap();
        let b = enqueue(&conn, &new("k1", b"{\"a\":2}"), now).unwrap();
        assert!(matches!(a, Enqueued::New(_)));
        assert_eq!(b, Enqueued::Existing(a.id()));
        let n: i64 = conn
            .query_row("SELECT count(*) FROM delivery_outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let body: Vec<u8> = conn
            .query_row("SELECT body FROM delivery_outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(body, b"{\"a\":1}", "the first body is kept");
        let d = get(&conn, "k1").unwrap().unwrap();
        assert_eq!(d.state, State::Pending);
        assert_eq!(d.attempts, 0);
        assert!(d.receipt.is_none());
    }

    #[test]
    fn an_enqueue_rolled_back_with_its_transaction_leaves_nothing() {
        let (_tmp, mut conn) = store();
        let tx = conn.transaction().unwrap();
        enqueue(&tx, &new("k2", b"x"), Utc::now()).unwrap();
        drop(tx);
        assert!(get(&conn, "k2").unwrap().is_none());
        let tx = conn.transaction().unwrap();
        enqueue(&tx, &new("k2", b"x"), Utc::now()).unwrap();
        tx.commit().unwrap();
        assert!(get(&conn, "k2").unwrap().is_some());
    }

    #[test]
    fn prefix_lists_only_matching_keys() {
        let (_tmp, conn) = store();
        let now = Utc::now();
        for k in [
            "report:2026-05:a",
            "report:2026-06:b",
            "report:2026-06:c",
            "alert:1",
        ] {
            enqueue(&conn, &new(k, b"x"), now).unwrap();
        }
        let got: Vec<String> = with_prefix(&conn, "report:2026-06:", 10)
            .unwrap()
            .into_iter()
            .map(|d| d.key)
            .collect();
        assert_eq!(got, ["report:2026-06:c", "report:2026-06:b"]);
    }

    #[test]
    fn empty_key_or_target_is_refused() {
        let (_tmp, conn) = store();
        let mut d = new("", b"x");
        assert!(matches!(
            enqueue(&conn, &d, Utc::now()),
            Err(DeliveryError::Empty("key"))
        ));
        d.key = "k";
        d.target = "";
        assert!(matches!(
            enqueue(&conn, &d, Utc::now()),
            Err(DeliveryError::Empty("target"))
        ));
    }

    #[test]
    fn target_urls_must_be_https_unless_loopback() {
        use crate::config::check_delivery_url as check;
        assert!(check("https://baocao.laichau.gov.vn/api/xa").is_ok());
        assert!(check("http://127.0.0.1:9000/hook").is_ok());
        assert!(check("http://[::1]:9000/hook").is_ok());
        assert!(check("http://localhost/hook").is_ok());
        let e = check("http://10.0.0.5/hook").unwrap_err();
        assert!(e.contains("https://"), "{e}");
        assert!(check("ftp://x/y").is_err());
        assert!(check("baocao.laichau.gov.vn").is_err());
    }
}
