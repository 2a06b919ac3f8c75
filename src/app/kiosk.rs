//! Kiosk tokens: long-lived, read-only tokens for wall screens.

use super::{audited, Actor, AppError};
use crate::auth::{Accounts, KioskToken, Outcome};

/// Longest kiosk label, in characters (not bytes).
pub const MAX_LABEL_CHARS: usize = 100;

/// Create a kiosk token labelled `label` (trimmed, 1–100 characters);
/// returns it with the token itself (shown once).
pub fn create(
    accounts: &Accounts,
    actor: &Actor,
    label: &str,
) -> Result<(KioskToken, String), AppError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(AppError::InvalidLabel);
    }
    let (kiosk, token) = accounts.create_kiosk(label, &actor.name)?;
    let object = format!("kiosk:{}", kiosk.id);
    let mut entry = actor.entry("kiosk_token_create", Some(&object), Outcome::Ok);
    entry.detail = Some(label);
    accounts.audit(&entry);
    Ok((kiosk, token))
}

/// Revoke kiosk token `id`; false when there is no such live token.
pub fn revoke(accounts: &Accounts, actor: &Actor, id: i64) -> Result<bool, AppError> {
    let done = accounts.revoke_kiosk(id)?;
    let object = format!("kiosk:{id}");
    let r: Result<(), ()> = if done { Ok(()) } else { Err(()) };
    let _ = audited(accounts, actor, "kiosk_token_revoke", &object, r);
    Ok(done)
}
