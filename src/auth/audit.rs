//! The audit log ("lưu vết"): who did what, when, from where, on which
//! object, with what outcome. Append-only: the table refuses UPDATE and
//! DELETE (triggers), and no API edits it.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::{Principal, Role};

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused: wrong credentials, role or lockout.
    Denied,
    /// Allowed but failed (not found, invalid input, store error).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Outcome {
        match s {
            "ok" => Outcome::Ok,
            "denied" => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }
}

/// An entry to append. Never put a secret (password, token) in any field.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    /// User name, `kiosk:{label}`, `anonymous`, `system` or `cli`.
    pub actor: &'a str,
    /// The actor's role, when known.
    pub role: Option<Role>,
    /// Peer address.
    pub addr: Option<String>,
    /// What, e.g. `login`, `logout`, `kiosk_token_create`.
    pub action: &'a str,
    /// On which object, e.g. a user name or a dead letter id.
    pub object: Option<&'a str>,
    /// Outcome.
    pub outcome: Outcome,
    /// A short note.
    pub detail: Option<&'a str>,
}

impl<'a> NewAudit<'a> {
    /// An action of the server itself.
    pub fn system(action: &'a str, object: Option<&'a str>, detail: &'a str) -> Self {
        NewAudit {
            actor: "system",
            role: None,
            addr: None,
            action,
            object,
            outcome: Outcome::Ok,
            detail: Some(detail),
        }
    }

    /// An action of an authenticated caller.
    pub fn by(
        who: &'a Principal,
        addr: Option<String>,
        action: &'a str,
        object: Option<&'a str>,
        outcome: Outcome,
    ) -> Self {
        NewAudit {
            actor: &who.name,
            role: Some(who.role),
            addr,
            action,
            object,
            outcome,
            detail: None,
        }
    }
}

/// An entry as read back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Their role.
    pub role: Option<String>,
    /// From where.
    pub addr: Option<String>,
    /// What.
    pub action: String,
    /// On which object.
    pub object: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Note.
    pub detail: Option<String>,
}

/// Filters for reading the log (newest first).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Entries with an id below this (paging).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

pub(crate) fn append(conn: &Connection, e: &NewAudit<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (at, actor, role, addr, action, object, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            Utc::now().timestamp_millis(),
            e.actor,
            e.role.map(Role::as_str),
            e.addr,
            e.action,
            e.object,
            e.outcome.as_str(),
            e.detail
        ],
    )?;
    Ok(())
}

pub(crate) fn list(conn: &Connection, q: &AuditQuery) -> rusqlite::Result<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, role, addr, action, object, outcome, detail FROM audit
         WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2)
           AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![q.actor, q.action, q.before, limit as i64], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: DateTime::from_timestamp_millis(r.get(1)?).unwrap_or_default(),
            actor: r.get(2)?,
            role: r.get(3)?,
            addr: r.get(4)?,
            action: r.get(5)?,
            object: r.get(6)?,
            outcome: Outcome::parse(&r.get::<_, String>(7)?),
            detail: r.get(8)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_cannot_be_edited_or_deleted() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        append(
            &conn,
            &NewAudit::system("user_create", Some("admin"), "first start"),
        )
        .unwrap();
        let err = conn
            .execute("UPDATE audit SET actor = 'someone else'", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = conn.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let all = list(&conn, &AuditQuery::default()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].actor, "system");
        assert_eq!(all[0].outcome, Outcome::Ok);
    }
}
