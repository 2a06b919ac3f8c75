//! Who is behind a request: the hook every HTTP route and WebSocket
//! connection asks. Until accounts land (the access-control issue), the only
//! authenticator is [`Open`], which lets everyone in as an anonymous viewer.

use std::fmt::Debug;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only: the wall screen and leaders.
    Viewer,
    /// Duty officer: acknowledges, silences, approves broadcasts.
    Operator,
    /// Users and configuration.
    Admin,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (`anonymous` when nobody logged in).
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Principal {
    /// The caller when authentication is off.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Viewer,
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was given and one is required.
    #[error("a token is required")]
    Missing,
    /// The token is unknown, expired or revoked.
    #[error("the token is invalid")]
    Invalid,
}

/// Checks a bearer token.
pub trait Authenticator: Send + Sync + Debug {
    /// The principal behind `token` (`None` when the caller sent none).
    fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError>;
}

/// Lets everyone in as an anonymous viewer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Authenticator for Open {
    fn authenticate(&self, _token: Option<&str>) -> Result<Principal, AuthError> {
        Ok(Principal::anonymous())
    }
}
