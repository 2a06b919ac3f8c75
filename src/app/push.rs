//! Dossier push tokens: long-lived tokens with one right, pushing the
//! one-stop software's national-portal sync to `POST /api/procedure/dvcqg`.

use super::{audited, Actor, AppError};
use crate::auth::{Accounts, Outcome, PushToken};

/// Create a push token labelled `label` (trimmed, 1–100 characters, as a
/// kiosk label); returns it with the token itself (shown once).
pub fn create(
    accounts: &Accounts,
    actor: &Actor,
    label: &str,
) -> Result<(PushToken, String), AppError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > super::kiosk::MAX_LABEL_CHARS {
        return Err(AppError::InvalidLabel);
    }
    let (push, token) = accounts.create_push(label, &actor.name)?;
    let object = format!("push:{}", push.id);
    let mut entry = actor.entry("push_token_create", Some(&object), Outcome::Ok);
    entry.detail = Some(label);
    accounts.audit(&entry);
    Ok((push, token))
}

/// Revoke push token `id`; false when there is no such live token.
pub fn revoke(accounts: &Accounts, actor: &Actor, id: i64) -> Result<bool, AppError> {
    let done = accounts.revoke_push(id)?;
    let object = format!("push:{id}");
    let r: Result<(), ()> = if done { Ok(()) } else { Err(()) };
    let _ = audited(accounts, actor, "push_token_revoke", &object, r);
    Ok(done)
}
