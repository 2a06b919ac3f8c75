//! Users and tokens in the embedded store (the journal's SQLite file, on a
//! connection of their own).
//!
//! Passwords are argon2id hashes; tokens are stored as BLAKE3 hashes. Every
//! check reads the store, so `commune-ioc user disable` on the box, a
//! logout or a revoked kiosk token take effect at once, also for a server
//! that is running.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::audit::{self, AuditEntry, AuditQuery, NewAudit};
use super::password::{self, MIN_PASSWORD_CHARS};

use super::{AuthError, Authenticator, Principal, Role, Via};
use crate::config;

/// Prefix of login tokens.
pub const SESSION_PREFIX: &str = "ioc_s_";
/// Prefix of kiosk tokens.
pub const KIOSK_PREFIX: &str = "ioc_k_";
/// Prefix of dossier push tokens.
pub const PUSH_PREFIX: &str = "ioc_p_";

/// Errors of the account store. Messages are Vietnamese: they reach the
/// admin (API and CLI).
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// SQLite failed.
    #[error("kho tài khoản lỗi: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store directory could not be opened.
    #[error("không mở được kho dữ liệu: {0}")]
    Open(#[from] crate::store::StoreError),
    /// A user name that is not allowed.
    #[error("tên đăng nhập `{0}` không hợp lệ: dùng 1–64 chữ thường không dấu, chữ số, '.', '-' hoặc '_'")]
    InvalidName(String),
    /// The user exists already.
    #[error("tài khoản `{0}` đã có")]
    Exists(String),
    /// No such user.
    #[error("không có tài khoản `{0}`")]
    NoSuchUser(String),
    /// Too short a password, or one with control characters.
    #[error("mật khẩu phải có ít nhất {MIN_PASSWORD_CHARS} ký tự không phải khoảng trắng và không được chứa ký tự điều khiển")]
    WeakPassword,
    /// The change would leave no enabled admin.
    #[error("không thể vô hiệu hóa `{0}`: đây là tài khoản quản trị (admin) cuối cùng còn hoạt động; hãy tạo hoặc bật một tài khoản quản trị khác trước")]
    LastAdmin(String),
    /// Hashing failed.
    #[error("không băm được mật khẩu: {0}")]
    Hash(String),
}

/// A successful login.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// Bearer token (shown once).
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The user's role.
    pub role: Role,
}

/// A user as listed to admins (no hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserView {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in; their tokens stop working.
    pub disabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A kiosk token as listed to admins (the token itself is shown only when
/// created).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KioskToken {
    /// Id, for revoking.
    pub id: i64,
    /// Label, e.g. `Màn hình phòng IOC`.
    pub label: String,
    /// Who created it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A dossier push token as listed to admins: the same fields as a kiosk
/// token (the token itself is shown only when created).
pub type PushToken = KioskToken;

/// A token joined with its user: id, kind, label, user name, role,
/// disabled.
type TokenRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

/// Users, tokens and the audit log.
#[derive(Debug)]
pub struct Accounts {
    conn: Mutex<Connection>,
    session_ttl: Duration,
    public_read: bool,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// A user name: 1–64 of `a-z 0-9 . - _`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

impl Accounts {
    /// Open the account tables in the journal file at `path`.
    pub fn open(path: &Path, auth: &config::Auth) -> Result<Accounts, AccountError> {
        let conn = crate::store::open(path, config::SyncMode::Full)?;
        Ok(Accounts {
            conn: Mutex::new(conn),
            session_ttl: Duration::seconds(i64::try_from(auth.session_ttl_s).unwrap_or(i64::MAX)),
            public_read: auth.public_read,
        })
    }

    /// Keep a quarter of the store's size cap (`store.max_size_mb`, 0: no
    /// cap) for ingest: this connection (users, tokens, the audit log) may
    /// grow the file to three quarters of it only, so no flood of audited
    /// actions can leave the journal writer without room.
    pub fn reserve_for_ingest(&self, max_size_mb: u64) -> Result<(), AccountError> {
        if max_size_mb == 0 {
            return Ok(());
        }
        let conn = self.conn.lock();
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let cap = max_size_mb.saturating_mul(1024 * 1024) / page.max(512) as u64;
        let pages = (cap / 4 * 3).max(1);
        let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })?;
        Ok(())
    }

    /// The newest audit entry's id (0 for none).
    pub fn last_audit_id(&self) -> Result<i64, AccountError> {
        Ok(self
            .conn
            .lock()
            .query_row("SELECT coalesce(max(id), 0) FROM audit", [], |r| r.get(0))?)
    }

    /// Unlocks recorded by `commune-ioc user unlock` after audit entry
    /// `after`: (entry id, user name), oldest first.
    pub fn unlocks_after(&self, after: i64) -> Result<Vec<(i64, String)>, AccountError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, object FROM audit WHERE id > ?1 AND action = 'user_unlock'
               AND object IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// On a store with no user: create `admin` with `password`, or with a
    /// generated one that is returned (to be shown once).
    pub fn bootstrap_admin(
        &self,
        password: Option<&config::Secret>,
    ) -> Result<Option<String>, AccountError> {
        let n: i64 = self
            .conn
            .lock()
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
        if n > 0 {
            return Ok(None);
        }
        let (pw, generated) = match password {
            Some(p) => (p.expose().to_owned(), false),
            None => (password::generate(20), true),
        };
        self.add_user("admin", Role::Admin, &pw)?;
        self.audit(&NewAudit::system(
            "user_create",
            Some("admin"),
            "first start",
        ));
        Ok(generated.then_some(pw))
    }

    /// Create a user.
    pub fn add_user(&self, name: &str, role: Role, pw: &str) -> Result<(), AccountError> {
        if !valid_username(name) {
            return Err(AccountError::InvalidName(name.to_owned()));
        }
        if !password::acceptable(pw) {
            return Err(AccountError::WeakPassword);
        }
        let hash = password::hash(pw).map_err(AccountError::Hash)?;
        let now = ms(Utc::now());
        let r = self.conn.lock().execute(
            "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
            params![name, hash, role.as_str(), now],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(AccountError::Exists(name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set a user's password (and enable the account); revokes its login
    /// tokens.
    pub fn set_password(&self, name: &str, pw: &str) -> Result<(), AccountError> {
        if !password::acceptable(pw) {
            return Err(AccountError::WeakPassword);
        }
        let hash = password::hash(pw).map_err(AccountError::Hash)?;
        let now = ms(Utc::now());
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE users SET password_hash = ?2, disabled = 0, updated_at = ?3 WHERE username = ?1",
            params![name, hash, now],
        )?;
        if n == 0 {
            return Err(AccountError::NoSuchUser(name.to_owned()));
        }
        conn.execute(
            "UPDATE tokens SET revoked_at = ?2
             WHERE revoked_at IS NULL AND kind = 'session'
               AND user_id = (SELECT id FROM users WHERE username = ?1)",
            params![name, now],
        )?;
        Ok(())
    }

    /// Disable a user and revoke its login tokens. The last enabled admin
    /// cannot be disabled (nobody could manage users through the API any
    /// more).
    pub fn disable(&self, name: &str) -> Result<(), AccountError> {
        let now = ms(Utc::now());
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let user: Option<(String, bool)> = tx
            .query_row(
                "SELECT role, disabled FROM users WHERE username = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((role, disabled)) = user else {
            return Err(AccountError::NoSuchUser(name.to_owned()));
        };
        if role == Role::Admin.as_str() && !disabled {
            let others: i64 = tx.query_row(
                "SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0 AND username <> ?1",
                [name],
                |r| r.get(0),
            )?;
            if others == 0 {
                return Err(AccountError::LastAdmin(name.to_owned()));
            }
        }
        tx.execute(
            "UPDATE users SET disabled = 1, updated_at = ?2 WHERE username = ?1",
            params![name, now],
        )?;
        tx.execute(
            "UPDATE tokens SET revoked_at = ?2
             WHERE revoked_at IS NULL AND user_id = (SELECT id FROM users WHERE username = ?1)",
            params![name, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<UserView>, AccountError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare("SELECT username, role, disabled, created_at FROM users ORDER BY username")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (username, role, disabled, created) = row?;
            out.push(UserView {
                username,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                disabled,
                created_at: from_ms(created),
            });
        }
        Ok(out)
    }

    /// Check a user name and password; `None` when they do not match (an
    /// unknown user, a wrong password and a disabled account look the same
    /// and take the same time).
    pub fn login(&self, name: &str, pw: &str) -> Result<Option<Session>, AccountError> {
        let row: Option<(i64, String, String, bool)> = self
            .conn
            .lock()
            .query_row(
                "SELECT id, password_hash, role, disabled FROM users WHERE username = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((user_id, hash, role, disabled)) = row else {
            password::verify_nothing(pw);
            return Ok(None);
        };
        if !password::verify(pw, &hash) || disabled {
            return Ok(None);
        }
        let role = Role::parse(&role).unwrap_or(Role::Viewer);
        let now = Utc::now();
        let expires_at = now + self.session_ttl;
        let token = password::new_token(SESSION_PREFIX);
        let conn = self.conn.lock();
        // Forget login tokens that expired more than a day ago (first, so
        // their room serves the new one).
        conn.execute(
            "DELETE FROM tokens WHERE kind = 'session' AND expires_at < ?1",
            [ms(now - Duration::days(1))],
        )?;
        conn.execute(
            "INSERT INTO tokens (token_hash, kind, user_id, created_at, expires_at)
             VALUES (?1, 'session', ?2, ?3, ?4)",
            params![
                password::token_hash(&token),
                user_id,
                ms(now),
                ms(expires_at)
            ],
        )?;
        Ok(Some(Session {
            token,
            expires_at,
            role,
        }))
    }

    /// Revoke one token by id; whether it was live.
    pub fn revoke(&self, token_id: i64) -> Result<bool, AccountError> {
        let n = self.conn.lock().execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![token_id, ms(Utc::now())],
        )?;
        Ok(n > 0)
    }

    /// Create a kiosk token: read only, no expiry, revocable. Returns it
    /// with the token itself (shown once).
    pub fn create_kiosk(
        &self,
        label: &str,
        created_by: &str,
    ) -> Result<(KioskToken, String), AccountError> {
        self.create_labelled("kiosk", KIOSK_PREFIX, label, created_by)
    }

    /// Create a dossier push token: it may only `POST /api/procedure/dvcqg`
    /// (no read, no other action); no expiry, revocable. Returns it with
    /// the token itself (shown once).
    pub fn create_push(
        &self,
        label: &str,
        created_by: &str,
    ) -> Result<(PushToken, String), AccountError> {
        self.create_labelled("push", PUSH_PREFIX, label, created_by)
    }

    fn create_labelled(
        &self,
        kind: &str,
        prefix: &str,
        label: &str,
        created_by: &str,
    ) -> Result<(KioskToken, String), AccountError> {
        let token = password::new_token(prefix);
        let now = Utc::now();
        let conn = self.conn.lock();
        conn.execute(
            "INSERT INTO tokens (token_hash, kind, label, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                password::token_hash(&token),
                kind,
                label,
                created_by,
                ms(now)
            ],
        )?;
        let id = conn.last_insert_rowid();
        Ok((
            KioskToken {
                id,
                label: label.to_owned(),
                created_by: created_by.to_owned(),
                created_at: now,
                revoked_at: None,
            },
            token,
        ))
    }

    /// Every kiosk token, newest first.
    pub fn kiosk_tokens(&self) -> Result<Vec<KioskToken>, AccountError> {
        self.labelled("kiosk")
    }

    /// Every dossier push token, newest first.
    pub fn push_tokens(&self) -> Result<Vec<PushToken>, AccountError> {
        self.labelled("push")
    }

    fn labelled(&self, kind: &str) -> Result<Vec<KioskToken>, AccountError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, label, created_by, created_at, revoked_at FROM tokens
             WHERE kind = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([kind], |r| {
            Ok(KioskToken {
                id: r.get(0)?,
                label: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                created_by: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                created_at: from_ms(r.get(3)?),
                revoked_at: r.get::<_, Option<i64>>(4)?.map(from_ms),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revoke a kiosk token; whether it existed and was live.
    pub fn revoke_kiosk(&self, id: i64) -> Result<bool, AccountError> {
        self.revoke_labelled("kiosk", id)
    }

    /// Revoke a dossier push token; whether it existed and was live.
    pub fn revoke_push(&self, id: i64) -> Result<bool, AccountError> {
        self.revoke_labelled("push", id)
    }

    fn revoke_labelled(&self, kind: &str, id: i64) -> Result<bool, AccountError> {
        let n = self.conn.lock().execute(
            "UPDATE tokens SET revoked_at = ?3 WHERE id = ?1 AND kind = ?2 AND revoked_at IS NULL",
            params![id, kind, ms(Utc::now())],
        )?;
        Ok(n > 0)
    }

    /// The principal behind a token.
    pub fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let now = ms(Utc::now());
        let row: Option<TokenRow> = self
            .conn
            .lock()
            .query_row(
                "SELECT t.id, t.kind, t.label, u.username, u.role, u.disabled
                     FROM tokens t LEFT JOIN users u ON u.id = t.user_id
                     WHERE t.token_hash = ?1 AND t.revoked_at IS NULL
                       AND (t.expires_at IS NULL OR t.expires_at > ?2)",
                params![password::token_hash(token), now],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| {
                tracing::error!(error = %e, "account store read failed");
                AuthError::Unavailable
            })?;
        match row {
            Some((id, kind, label, _, _, _)) if kind == "kiosk" => Ok(Principal {
                name: format!("kiosk:{}", label.unwrap_or_default()),
                role: Role::Viewer,
                via: Via::Kiosk,
                token_id: Some(id),
            }),
            // Only the dossier push route takes it (the guard checks
            // `via` before the role); the live stream refuses it.
            Some((id, kind, label, _, _, _)) if kind == "push" => Ok(Principal {
                name: format!("push:{}", label.unwrap_or_default()),
                role: Role::Viewer,
                via: Via::Push,
                token_id: Some(id),
            }),
            Some((id, _, _, Some(name), Some(role), Some(false))) => Ok(Principal {
                name,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                via: Via::Session,
                token_id: Some(id),
            }),
            _ => Err(AuthError::Invalid),
        }
    }

    /// Append to the audit log; a failure is logged (the audit write must
    /// not turn a refusal into a success or the reverse).
    pub fn audit(&self, entry: &NewAudit<'_>) -> bool {
        match audit::append(&self.conn.lock(), entry) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, action = entry.action, "audit log write failed");
                false
            }
        }
    }

    /// Append to the audit log where the entry itself is the change (an
    /// unlock the running server reads back): a failure is an error.
    pub fn audit_or_fail(&self, entry: &NewAudit<'_>) -> Result<(), AccountError> {
        Ok(audit::append(&self.conn.lock(), entry)?)
    }

    /// Read the audit log.
    pub fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AccountError> {
        Ok(audit::list(&self.conn.lock(), q)?)
    }
}

impl Authenticator for Accounts {
    fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        match token {
            // A push token may only push dossiers: it is no login for the
            // live stream.
            Some(t) => self.check(t).and_then(|p| {
                if p.via == Via::Push {
                    Err(AuthError::Invalid)
                } else {
                    Ok(p)
                }
            }),
            None if self.public_read => Ok(Principal::anonymous()),
            None => Err(AuthError::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(dir: &Path) -> Accounts {
        Accounts::open(&dir.join("journal.db"), &config::Auth::default()).unwrap()
    }

    #[test]
    fn login_check_revoke_disable() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path());
        let generated = a.bootstrap_admin(None).unwrap().expect("generated");
        assert!(a.bootstrap_admin(None).unwrap().is_none(), "only once");
        let s = a.login("admin", &generated).unwrap().expect("login");
        assert_eq!(s.role, Role::Admin);
        let p = a.check(&s.token).unwrap();
        assert_eq!((p.name.as_str(), p.via), ("admin", Via::Session));
        assert!(a.login("admin", "wrong password!").unwrap().is_none());
        assert!(a.login("nobody", "wrong password!").unwrap().is_none());

        a.add_user("truc.ban", Role::Operator, "mật khẩu trực ban")
            .unwrap();
        assert!(matches!(
            a.add_user("truc.ban", Role::Viewer, "mật khẩu trực ban"),
            Err(AccountError::Exists(_))
        ));
        assert!(matches!(
            a.add_user("Trực Ban", Role::Viewer, "mật khẩu trực ban"),
            Err(AccountError::InvalidName(_))
        ));
        assert!(matches!(
            a.add_user("ngan", Role::Viewer, "ngắn"),
            Err(AccountError::WeakPassword)
        ));
        let op = a.login("truc.ban", "mật khẩu trực ban").unwrap().unwrap();
        a.disable("truc.ban").unwrap();
        assert_eq!(a.check(&op.token), Err(AuthError::Invalid));
        assert!(a.login("truc.ban", "mật khẩu trực ban").unwrap().is_none());
        a.set_password("truc.ban", "mật khẩu mới đủ dài").unwrap();
        assert!(a
            .login("truc.ban", "mật khẩu mới đủ dài")
            .unwrap()
            .is_some());

        let (k, token) = a.create_kiosk("Màn hình phòng IOC", "admin").unwrap();
        assert_eq!(a.check(&token).unwrap().via, Via::Kiosk);
        assert!(a.revoke_kiosk(k.id).unwrap());
        assert_eq!(a.check(&token), Err(AuthError::Invalid));
        assert!(a.revoke(p.token_id.unwrap()).unwrap());
        assert_eq!(a.check(&s.token), Err(AuthError::Invalid));
        assert_eq!(a.check("ioc_s_forged"), Err(AuthError::Invalid));
    }

    #[test]
    fn expired_sessions_stop_working() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config::Auth {
            session_ttl_s: 1,
            ..config::Auth::default()
        };
        let a = Accounts::open(&dir.path().join("journal.db"), &cfg).unwrap();
        a.add_user("lanh.dao", Role::Viewer, "mật khẩu lãnh đạo")
            .unwrap();
        let s = a.login("lanh.dao", "mật khẩu lãnh đạo").unwrap().unwrap();
        assert!(a.check(&s.token).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(a.check(&s.token), Err(AuthError::Invalid));
    }
}
