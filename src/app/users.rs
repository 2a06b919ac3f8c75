//! User accounts: create, set a password, disable. Each change is audited,
//! whether it succeeds or fails.

use super::{audited, Actor, AppError};
use crate::auth::store::valid_username;
use crate::auth::{AccountError, Accounts, Outcome, Role};

/// Parse a role name (`viewer`, `operator`, `admin`).
pub fn parse_role(role: &str) -> Result<Role, AppError> {
    Role::parse(role).ok_or_else(|| AppError::InvalidRole(role.to_owned()))
}

/// The form a user name is stored in: trimmed, lower case.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Create the user `name` (normalised) with `role`; returns the stored name.
pub fn add(
    accounts: &Accounts,
    actor: &Actor,
    name: &str,
    role: Role,
    password: &str,
) -> Result<String, AppError> {
    let name = normalize_name(name);
    let r = accounts.add_user(&name, role, password);
    audited(accounts, actor, "user_create", &name, r)?;
    Ok(name)
}

/// Set a new password (and re-enable the account); its sessions end.
pub fn set_password(
    accounts: &Accounts,
    actor: &Actor,
    name: &str,
    password: &str,
) -> Result<(), AppError> {
    let r = accounts.set_password(name, password);
    Ok(audited(accounts, actor, "user_password", name, r)?)
}

/// Disable a user and revoke its tokens.
pub fn disable(accounts: &Accounts, actor: &Actor, name: &str) -> Result<(), AppError> {
    let r = accounts.disable(name);
    Ok(audited(accounts, actor, "user_disable", name, r)?)
}

/// Lift the login lockouts of `name` (from every address) on the running
/// server: the unlock is an audit entry (`user_unlock`), which the server
/// reads back within a second (server::login_upkeep). Returns the name.
pub fn unlock(accounts: &Accounts, actor: &Actor, name: &str) -> Result<String, AppError> {
    let name = normalize_name(name);
    if !valid_username(&name) {
        return Err(AccountError::InvalidName(name).into());
    }
    accounts.audit_or_fail(&actor.entry("user_unlock", Some(&name), Outcome::Ok))?;
    Ok(name)
}
