//! Use cases shared by the HTTP API and the command line: each one makes a
//! change and writes its audit entry, so both front doors behave alike.
//!
//! The functions are synchronous (the account store hashes passwords with
//! argon2 and SQLite blocks): the HTTP handlers call them inside
//! `spawn_blocking`, the CLI calls them directly.
//!
//! This room may use `auth` (accounts, audit), `journal` (the store) and
//! `config`; it never uses `api`, `live` or the binary.

pub mod dead_letters;
pub mod demo;
pub mod kiosk;
pub mod users;

use crate::auth::{AccountError, NewAudit, Outcome, Principal, Role};
use crate::journal::JournalError;

/// Who asks for a change, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// User name, `kiosk:{label}` or `cli`.
    pub name: String,
    /// The actor's role, when known.
    pub role: Option<Role>,
    /// Peer address (HTTP).
    pub addr: Option<String>,
    /// A short note kept with each entry (e.g. `commune-ioc user`).
    pub detail: Option<String>,
}

impl Actor {
    /// An authenticated HTTP caller.
    pub fn caller(p: &Principal, addr: Option<String>) -> Actor {
        Actor {
            name: p.name.clone(),
            role: Some(p.role),
            addr,
            detail: None,
        }
    }

    /// Someone on the box, through `commune-ioc user`.
    pub fn cli() -> Actor {
        Actor {
            name: "cli".into(),
            role: None,
            addr: None,
            detail: Some("commune-ioc user".into()),
        }
    }

    /// The audit entry of `action` on `object` by this actor.
    pub(crate) fn entry<'a>(
        &'a self,
        action: &'a str,
        object: Option<&'a str>,
        outcome: Outcome,
    ) -> NewAudit<'a> {
        NewAudit {
            actor: &self.name,
            role: self.role,
            addr: self.addr.clone(),
            action,
            object,
            outcome,
            detail: self.detail.as_deref(),
        }
    }
}

/// Why a use case refused or failed. The messages are Vietnamese: they go
/// to the operator as they are.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not a role.
    #[error("Vai trò `{0}` không có: dùng viewer, operator hoặc admin.")]
    InvalidRole(String),
    /// A kiosk label that is empty or too long.
    #[error("Tên màn hình (label) phải dài từ 1 đến {max} ký tự.", max = kiosk::MAX_LABEL_CHARS)]
    InvalidLabel,
    /// The account store refused or failed.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Audit a change with the outcome of `result`, and pass the result on.
pub(crate) fn audited<T, E>(
    accounts: &crate::auth::Accounts,
    actor: &Actor,
    action: &str,
    object: &str,
    result: Result<T, E>,
) -> Result<T, E> {
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    accounts.audit(&actor.entry(action, Some(object), outcome));
    result
}
