//! Wire types of `/api/ws`: the commands clients send, error codes, and the
//! frames the server builds (pages under a size limit). See
//! docs/PROTOCOL.md §7.

use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::KeyInfo;
use super::projections::{push_json_str, push_time, LiveValue};

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
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
        }
    }
}

/// An error frame.
pub fn error_frame(code: ErrorCode, id: Option<&str>, message: &str) -> String {
    let mut v = json!({ "type": "error", "code": code.as_str(), "message": message });
    if let Some(id) = id {
        v["id"] = Value::from(id);
    }
    v.to_string()
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
