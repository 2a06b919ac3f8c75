//! Who is behind a request, and what they may do.
//!
//! - [`Authenticator`]: the hook every HTTP route and WebSocket asks (a
//!   bearer token → a [`Principal`]), implemented by [`Accounts`].
//! - [`store`]: users (argon2id passwords), login and kiosk tokens.
//! - [`audit`]: the append-only audit log.
//! - [`limiter`]: failed-login counting and lockouts.
//! - [`password`]: hashing, token generation.

pub mod audit;
pub mod limiter;
pub mod password;
pub mod store;

pub use audit::{AuditEntry, AuditQuery, NewAudit, Outcome};
pub use limiter::LoginLimiter;
pub use store::{AccountError, Accounts, KioskToken, PushToken, Session, UserView};

use std::fmt::Debug;

/// What a principal may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only: the wall screen and leaders.
    Viewer,
    /// Duty officer: acknowledges, silences, approves broadcasts.
    Operator,
    /// Users, tokens, the audit log, configuration.
    Admin,
}

impl Role {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parse the stored form.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// How a principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A login token (`POST /api/auth/login`).
    Session,
    /// A kiosk token (read only, long-lived).
    Kiosk,
    /// A dossier push token: `POST /api/procedure/dvcqg` and nothing else.
    Push,
    /// No token: `auth.public_read`.
    Anonymous,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (`kiosk:{label}` for a kiosk token, `anonymous` without
    /// a token).
    pub name: String,
    /// Role.
    pub role: Role,
    /// How it authenticated.
    pub via: Via,
    /// The token's row, for logout.
    pub token_id: Option<i64>,
}

impl Principal {
    /// The caller when no token is needed.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Viewer,
            via: Via::Anonymous,
            token_id: None,
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was given and one is required.
    #[error("a token is required")]
    Missing,
    /// The token is unknown, expired or revoked, or its user is disabled.
    #[error("the token is invalid")]
    Invalid,
    /// The store could not be read.
    #[error("the account store is unavailable")]
    Unavailable,
}

/// Checks a bearer token.
pub trait Authenticator: Send + Sync + Debug {
    /// The principal behind `token` (`None` when the caller sent none).
    fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError>;
}
