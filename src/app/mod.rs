//! Use cases shared by the HTTP API and the command line: each one makes a
//! change and writes its audit entry, so both front doors behave alike.
//!
//! The functions are synchronous (the account store hashes passwords with
//! argon2 and SQLite blocks): the HTTP handlers call them inside
//! `spawn_blocking`, the CLI calls them directly.
//!
//! This room may use `auth` (accounts, audit), `journal` (the store),
//! `alerts` (the alerts store) and `config`; it never uses `api`, `live` or the binary.

pub mod alerts;
pub mod broadcasts;
pub mod dead_letters;
pub mod demo;
pub mod kiosk;
pub mod push;
pub mod report_submit;
pub mod reports;
pub mod users;
pub mod warnings;

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
    /// A silence that cannot be made (the reason, Vietnamese).
    #[error("{0}")]
    InvalidSilence(String),
    /// The alerts store failed.
    #[error(transparent)]
    Alerts(#[from] crate::alerts::AlertError),
    /// A broadcast action refused or failed.
    #[error(transparent)]
    Broadcast(#[from] crate::broadcasts::BroadcastError),
    /// Sealing or a correction refused or failed.
    #[error(transparent)]
    Report(#[from] crate::reports::ReportError),
    /// A submission to the province refused or failed.
    #[error(transparent)]
    Submit(#[from] crate::reports::export::province::SubmitError),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuditQuery, Outcome};
    use crate::journal::{AckOutcome, Store};

    fn open() -> (tempfile::TempDir, Store, crate::auth::Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let store = Store::open(&path).unwrap();
        let accounts = crate::auth::Accounts::open(&path, &crate::config::Auth::default()).unwrap();
        (dir, store, accounts)
    }

    fn last(accounts: &crate::auth::Accounts) -> crate::auth::AuditEntry {
        accounts
            .audit_log(&AuditQuery::default())
            .unwrap()
            .into_iter()
            .next()
            .expect("an audit entry")
    }

    /// A change and its audit entry go together, success or failure, with
    /// the actor as the caller gave it.
    #[test]
    fn changes_are_audited_with_their_outcome_and_actor() {
        let (_dir, store, accounts) = open();
        let cli = Actor::cli();
        let name = users::add(
            &accounts,
            &cli,
            " Truc.Ban ",
            Role::Operator,
            "mật khẩu dài đủ",
        )
        .unwrap();
        assert_eq!(name, "truc.ban");
        let e = last(&accounts);
        assert_eq!(
            (e.actor.as_str(), e.action.as_str(), e.object.as_deref()),
            ("cli", "user_create", Some("truc.ban"))
        );
        assert_eq!(e.outcome, Outcome::Ok);
        assert_eq!(e.detail.as_deref(), Some("commune-ioc user"));

        let weak = users::set_password(&accounts, &cli, "truc.ban", "ngắn");
        assert!(matches!(
            weak,
            Err(AppError::Accounts(AccountError::WeakPassword))
        ));
        let e = last(&accounts);
        assert_eq!(
            (e.action.as_str(), e.outcome),
            ("user_password", Outcome::Failed)
        );

        let admin = Actor {
            name: "admin".into(),
            role: Some(Role::Admin),
            addr: Some("127.0.0.1".into()),
            detail: None,
        };
        assert_eq!(
            dead_letters::ack(&store, &accounts, &admin, 42).unwrap(),
            AckOutcome::NotFound
        );
        let e = last(&accounts);
        assert_eq!(
            (e.actor.as_str(), e.action.as_str(), e.outcome),
            ("admin", "dead_letter_ack", Outcome::Failed)
        );
        assert_eq!(e.addr.as_deref(), Some("127.0.0.1"));
    }

    /// Kiosk labels are 1–100 characters (not bytes): 100 Vietnamese
    /// letters (300 bytes) pass, 101 do not, nor a blank label.
    #[test]
    fn kiosk_labels_are_counted_in_characters() {
        let (_dir, _store, accounts) = open();
        let admin = Actor::cli();
        let label = "ệ".repeat(kiosk::MAX_LABEL_CHARS);
        let (k, token) = kiosk::create(&accounts, &admin, &label).unwrap();
        assert_eq!(k.label, label);
        assert!(!token.is_empty());
        let long = "ệ".repeat(kiosk::MAX_LABEL_CHARS + 1);
        assert!(matches!(
            kiosk::create(&accounts, &admin, &long),
            Err(AppError::InvalidLabel)
        ));
        assert!(matches!(
            kiosk::create(&accounts, &admin, "   "),
            Err(AppError::InvalidLabel)
        ));
        assert!(kiosk::revoke(&accounts, &admin, k.id).unwrap());
        assert!(!kiosk::revoke(&accounts, &admin, k.id).unwrap());
        let e = last(&accounts);
        assert_eq!(
            (e.action.as_str(), e.outcome),
            ("kiosk_token_revoke", Outcome::Failed)
        );
    }
}
