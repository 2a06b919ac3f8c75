//! Wire types of `/api/ws`: the commands clients send, error codes, and the
//! frames the server builds (pages under a size limit). See
//! docs/PROTOCOL.md §7.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::KeyInfo;
use super::projections::{push_json_str, push_time, LiveValue};
use crate::config::Live;

/// A command from a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Authenticate (when the handshake carried no token).
    Auth {
        /// Bearer token.
        token: String,
    },
    /// Subscribe to key patterns.
    Subscribe {
        /// Subscription id chosen by the client.
        id: String,
        /// Key patterns.
        keys: Vec<String>,
        /// Keep only items of these scopes.
        #[serde(default)]
        villages: Option<Vec<String>>,
        /// Resume after a dropped connection.
        #[serde(default)]
        resume: Option<Resume>,
    },
    /// End a subscription.
    Unsubscribe {
        /// Subscription id.
        id: String,
    },
    /// Application-level ping.
    Ping {
        /// Echoed back.
        #[serde(default)]
        id: Option<Value>,
    },
}

impl Command {
    /// The command's `type`, for logs (never its fields: `auth` carries a
    /// token).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Auth { .. } => "auth",
            Command::Subscribe { .. } => "subscribe",
            Command::Unsubscribe { .. } => "unsubscribe",
            Command::Ping { .. } => "ping",
        }
    }
}

/// Where a resuming client left off.
#[derive(Debug, Deserialize)]
pub struct Resume {
    /// The server run the `seq` belongs to.
    pub epoch: String,
    /// The last `seq` the client processed.
    pub seq: u64,
}

/// Stable error codes of error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, or not a known command.
    Malformed,
    /// A binary frame.
    BinaryNotSupported,
    /// A key pattern names something that does not exist.
    UnknownKey,
    /// Too many subscriptions on this connection.
    TooManySubscriptions,
    /// A command larger than `live.max_command_bytes`.
    CommandTooLarge,
    /// More commands per second than allowed.
    RateLimited,
    /// More snapshot bytes per second than allowed.
    SnapshotRateLimited,
    /// Missing or invalid token.
    Unauthorized,
    /// Too many connections open.
    TooManyConnections,
    /// The token could not be checked (store unavailable).
    Unavailable,
    /// The server is stopping.
    ShuttingDown,
}

impl ErrorCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::CommandTooLarge => "command_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SnapshotRateLimited => "snapshot_rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
        }
    }
}

/// Why an `unauthorized` error is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// The token is unknown, expired or revoked.
    Invalid,
    /// The token was valid and has since been revoked or has expired.
    Revoked,
    /// No token arrived in time (or something else came first).
    Missing,
    /// The first command was not `auth`.
    NotAuth,
}

/// Everything the server refuses, with what the error frame says. The
/// messages (Vietnamese, for the operator's screen) are written here only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not JSON or not a command; the parser's reason.
    Malformed(String),
    /// A subscription id that is empty or longer than 64 characters.
    BadSubscriptionId,
    /// No key patterns, or more than the limit.
    KeyCount {
        /// Most patterns allowed.
        max: usize,
    },
    /// A binary frame.
    Binary,
    /// A pattern or village that does not exist; the reason.
    UnknownKey(String),
    /// Too many subscriptions on one connection.
    TooManySubscriptions {
        /// `live.max_subscriptions`.
        max: usize,
    },
    /// A command over `live.max_command_bytes`.
    CommandTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Too many commands per second.
    RateLimited,
    /// A subscribe while this connection's snapshot budget is spent.
    SnapshotRateLimited {
        /// When the budget allows one again.
        retry_after_ms: u64,
    },
    /// Authentication failed.
    Unauthorized(Unauthorized),
    /// No connection slot.
    TooManyConnections,
    /// The token store could not be read.
    Unavailable,
    /// The server is stopping.
    ShuttingDown,
}

impl Refusal {
    /// The error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Malformed(_) | Refusal::BadSubscriptionId | Refusal::KeyCount { .. } => {
                ErrorCode::Malformed
            }
            Refusal::Binary => ErrorCode::BinaryNotSupported,
            Refusal::UnknownKey(_) => ErrorCode::UnknownKey,
            Refusal::TooManySubscriptions { .. } => ErrorCode::TooManySubscriptions,
            Refusal::CommandTooLarge { .. } => ErrorCode::CommandTooLarge,
            Refusal::RateLimited => ErrorCode::RateLimited,
            Refusal::SnapshotRateLimited { .. } => ErrorCode::SnapshotRateLimited,
            Refusal::Unauthorized(_) => ErrorCode::Unauthorized,
            Refusal::TooManyConnections => ErrorCode::TooManyConnections,
            Refusal::Unavailable => ErrorCode::Unavailable,
            Refusal::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    /// The message shown to people.
    pub fn message(&self) -> String {
        match self {
            Refusal::Malformed(reason) | Refusal::UnknownKey(reason) => reason.clone(),
            Refusal::BadSubscriptionId => "Mã đăng ký (id) phải dài từ 1 đến 64 ký tự.".into(),
            Refusal::KeyCount { max } => format!("Cần từ 1 đến {max} khóa trong `keys`."),
            Refusal::Binary => "Chỉ nhận khung văn bản JSON.".into(),
            Refusal::TooManySubscriptions { max } => {
                format!("Quá nhiều đăng ký trên một kết nối (tối đa {max}).")
            }
            Refusal::CommandTooLarge { size, max } => {
                format!("Lệnh quá lớn: {size} byte, tối đa {max} byte.")
            }
            Refusal::RateLimited => "Gửi lệnh quá nhanh; lệnh này bị bỏ qua.".into(),
            Refusal::SnapshotRateLimited { retry_after_ms } => format!(
                "Yêu cầu ảnh chụp dữ liệu quá nhiều; đăng ký này bị bỏ qua, hãy thử lại sau {retry_after_ms} ms."
            ),
            Refusal::Unauthorized(Unauthorized::Invalid) => {
                "Mã truy cập không hợp lệ hoặc đã hết hạn.".into()
            }
            Refusal::Unauthorized(Unauthorized::Revoked) => {
                "Mã truy cập đã bị thu hồi hoặc hết hạn.".into()
            }
            Refusal::Unauthorized(Unauthorized::Missing) => {
                "Cần đăng nhập: gửi lệnh auth với mã truy cập.".into()
            }
            Refusal::Unauthorized(Unauthorized::NotAuth) => {
                "Cần đăng nhập: lệnh đầu tiên phải là auth.".into()
            }
            Refusal::TooManyConnections => {
                "Máy chủ đang có quá nhiều kết nối; hãy thử lại sau.".into()
            }
            Refusal::Unavailable => {
                "Máy chủ tạm thời không kiểm tra được mã truy cập; hãy thử lại sau.".into()
            }
            Refusal::ShuttingDown => "Máy chủ đang dừng; màn hình sẽ tự kết nối lại.".into(),
        }
    }
}

/// Why the server closes a connection, with its close code (RFC 6455
/// §7.4.1) and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// The server is stopping (1001).
    Stopping,
    /// Missing, invalid or revoked token (1008).
    Unauthorized,
    /// Too many commands refused in a row (1008).
    RateLimited,
    /// A frame over the WebSocket layer's limit (1009).
    TooBig,
    /// Nothing heard for three heartbeats (1011).
    NoHeartbeat,
    /// No slot, or the token store is unavailable (1013).
    TryAgain,
}

impl CloseWhy {
    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            CloseWhy::Stopping => 1001,
            CloseWhy::Unauthorized | CloseWhy::RateLimited => 1008,
            CloseWhy::TooBig => 1009,
            CloseWhy::NoHeartbeat => 1011,
            CloseWhy::TryAgain => 1013,
        }
    }

    /// The close reason (ASCII, short).
    pub fn reason(self) -> &'static str {
        match self {
            CloseWhy::Stopping => "server stopping",
            CloseWhy::Unauthorized => "unauthorized",
            CloseWhy::RateLimited => "rate limited",
            CloseWhy::TooBig => "frame too large",
            CloseWhy::NoHeartbeat => "no heartbeat",
            CloseWhy::TryAgain => "try again",
        }
    }
}

/// An error frame for `refusal`, about subscription `id` when given.
pub fn error_frame(refusal: &Refusal, id: Option<&str>) -> String {
    let mut v = json!({
        "type": "error",
        "code": refusal.code().as_str(),
        "message": refusal.message(),
    });
    if let Some(id) = id {
        v["id"] = Value::from(id);
    }
    if let Refusal::SnapshotRateLimited { retry_after_ms } = refusal {
        v["retry_after_ms"] = Value::from(*retry_after_ms);
    }
    v.to_string()
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `hello` frame.
pub fn hello_frame(epoch: &str, seq: u64, at: DateTime<Utc>, limits: &Live) -> String {
    json!({
        "type": "hello",
        "epoch": epoch,
        "seq": seq,
        "at": time(at),
        "heartbeat_s": limits.heartbeat_s,
        "limits": {
            "max_subscriptions": limits.max_subscriptions,
            "max_frame_bytes": limits.max_frame_bytes,
            "max_command_bytes": limits.max_command_bytes,
            "commands_per_second": limits.commands_per_second,
            "snapshot_bytes_per_second": limits.snapshot_bytes_per_second,
            "snapshot_burst_bytes": limits.snapshot_burst_bytes,
        },
    })
    .to_string()
}

/// The `heartbeat` frame.
pub fn heartbeat_frame(seq: u64, at: DateTime<Utc>) -> String {
    json!({"type": "heartbeat", "seq": seq, "at": time(at)}).to_string()
}

/// The `pong` frame answering a `ping` with `id`.
pub fn pong_frame(id: Option<&Value>, seq: u64, at: DateTime<Utc>) -> String {
    json!({"type": "pong", "id": id, "seq": seq, "at": time(at)}).to_string()
}

/// The `resumed` frame.
pub fn resumed_frame(id: &str, from: u64, seq: u64) -> String {
    json!({"type": "resumed", "id": id, "from": from, "seq": seq}).to_string()
}

/// What a frame of items is.
#[derive(Debug, Clone, Copy)]
pub enum Items<'a> {
    /// The answer to a subscribe (or a resync) of subscription `id`.
    Snapshot {
        /// Subscription id.
        id: &'a str,
        /// A snapshot that replaces what the client had.
        resync: bool,
    },
    /// Changes of one or more steps.
    Update,
}

/// The frames (pages of at most `max` bytes) of a snapshot or an update of
/// pre-serialized `items`, current at `seq`.
pub fn item_frames(
    kind: Items<'_>,
    seq: u64,
    at: DateTime<Utc>,
    items: &[&str],
    max: usize,
) -> Vec<String> {
    let mut head = String::with_capacity(96);
    match kind {
        Items::Snapshot { id, .. } => {
            head.push_str("\"type\":\"snapshot\",\"id\":");
            // Serializing a &str cannot fail.
            head.push_str(&serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into()));
        }
        Items::Update => head.push_str("\"type\":\"update\""),
    }
    head.push_str(&format!(",\"seq\":{seq}"));
    if let Items::Snapshot { resync, .. } = kind {
        head.push_str(&format!(",\"resync\":{resync}"));
    }
    head.push_str(&format!(",\"at\":\"{}\"", time(at)));
    pages(&head, items, max)
}

/// Parse a text frame into a command, with a Vietnamese reason on failure.
pub fn parse_command(text: &str) -> Result<Command, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("Khung không phải JSON hợp lệ ({e})."))?;
    serde_json::from_value(value).map_err(|e| {
        format!(
            "Lệnh không hợp lệ: cần `type` là subscribe, unsubscribe, ping hoặc auth với đủ trường ({e})."
        )
    })
}

/// An item as a snapshot carries it:
/// `{"key":…,"scope":…,"updated_at":…,"value":{…whole value…}}`.
pub fn whole_item(key: &KeyInfo, value: &dyn LiveValue) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"key\":");
    push_json_str(&mut out, &key.name);
    out.push_str(",\"scope\":");
    push_json_str(&mut out, &key.scope);
    out.push_str(",\"updated_at\":");
    push_time(&mut out, value.updated_at());
    out.push_str(",\"value\":");
    value.write_whole(&mut out);
    out.push('}');
    out
}

/// An item as an update carries it when only its changing part changed:
/// `{"key":…,"updated_at":…,"value":{…changing fields…}}`. The client
/// merges `value` into the value it has (docs/PROTOCOL.md §7.3).
pub fn change_item(key: &KeyInfo, value: &dyn LiveValue) -> String {
    let mut out = String::with_capacity(64 + key.name.len());
    out.push_str("{\"key\":");
    push_json_str(&mut out, &key.name);
    out.push_str(",\"updated_at\":");
    push_time(&mut out, value.updated_at());
    out.push_str(",\"value\":");
    value.write_change(&mut out);
    out.push('}');
    out
}

/// Split pre-serialized items into frames of at most `max` bytes: each
/// frame is `{head,"page":k,"pages":n,"items":[…]}` where `head` is the
/// JSON members before the page fields (without braces). An item larger
/// than `max` on its own gets a frame of its own.
pub fn pages(head: &str, items: &[&str], max: usize) -> Vec<String> {
    // Room for the braces, the page fields and the items array.
    let overhead = head.len() + 64;
    let budget = max.saturating_sub(overhead).max(1);
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, item) in items.iter().enumerate() {
        let add = item.len() + 1;
        if i > start && size + add > budget {
            groups.push((start, i));
            start = i;
            size = 0;
        }
        size += add;
    }
    if start < items.len() || items.is_empty() {
        groups.push((start, items.len()));
    }
    let n = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(k, (a, b))| {
            let body: usize = items[a..b].iter().map(|s| s.len() + 1).sum();
            let mut out = String::with_capacity(overhead + body);
            out.push('{');
            out.push_str(head);
            out.push_str(&format!(",\"page\":{},\"pages\":{n},\"items\":[", k + 1));
            for (j, item) in items[a..b].iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str(item);
            }
            out.push_str("]}");
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stay_under_the_limit_and_keep_every_item() {
        let items: Vec<String> = (0..100)
            .map(|i| format!("{{\"key\":\"k{i}\",\"v\":\"{}\"}}", "x".repeat(i % 37)))
            .collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let frames = pages("\"type\":\"snapshot\",\"seq\":7", &refs, 1024);
        assert!(frames.len() > 1);
        let mut seen = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            assert!(f.len() <= 1024, "frame {k} is {} bytes", f.len());
            let v: Value = serde_json::from_str(f).unwrap();
            assert_eq!(v["page"], k + 1);
            assert_eq!(v["pages"], frames.len());
            assert_eq!(v["seq"], 7);
            for item in v["items"].as_array().unwrap() {
                seen.push(item["key"].as_str().unwrap().to_string());
            }
        }
        let want: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn an_oversized_item_travels_alone_and_empty_is_one_page() {
        let big = format!("{{\"key\":\"big\",\"v\":\"{}\"}}", "x".repeat(5000));
        let frames = pages(
            "\"type\":\"update\"",
            &["{\"key\":\"a\"}", &big, "{\"key\":\"b\"}"],
            1024,
        );
        assert_eq!(frames.len(), 3);
        let empty = pages("\"type\":\"snapshot\"", &[], 1024);
        assert_eq!(empty.len(), 1);
        let v: Value = serde_json::from_str(&empty[0]).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn commands_parse_and_errors_are_vietnamese() {
        assert!(matches!(
            parse_command(r#"{"type":"subscribe","id":"a","keys":["indicator"]}"#),
            Ok(Command::Subscribe { .. })
        ));
        assert!(parse_command("{not json")
            .unwrap_err()
            .starts_with("Khung không phải JSON"));
        assert!(parse_command(r#"{"type":"dance"}"#)
            .unwrap_err()
            .starts_with("Lệnh không hợp lệ"));
        assert!(parse_command(r#"{"type":"subscribe","id":"a"}"#).is_err());
    }
}
