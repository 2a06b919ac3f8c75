//! Official warnings posted by an operator: the audit entry (the bulletin
//! itself goes through the commit pipeline, see `crate::warnings`).

use super::Actor;
use crate::auth::{Accounts, Outcome};

/// Audit `POST /api/warnings`: the warning id, and the CAP rule broken
/// when it was refused.
pub fn audit_post(accounts: &Accounts, actor: &Actor, warning: &str, outcome: Result<(), &str>) {
    let detail = match outcome {
        Ok(()) => None,
        Err(rule) => Some(format!("invalid_cap: {rule}")),
    };
    let mut entry = actor.entry(
        "warning_post",
        Some(warning),
        if outcome.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    );
    if let Some(d) = &detail {
        entry.detail = Some(d);
    }
    accounts.audit(&entry);
}
