//! Sealed reports: sealing a period and deciding correction drafts, each
//! audited (`report_seal`, `report_correction_approve`,
//! `report_correction_dismiss`), for the HTTP API and the CLI alike.

use chrono::{DateTime, Utc};

use super::{audited, Actor, AppError};
use crate::auth::Accounts;
use crate::config::Config;
use crate::indicators::Engine;
use crate::journal::Store;
use crate::reports::seal::{self, SealOutcome};
use crate::reports::{keys, service};

/// Seal period `label` (no change when it is sealed already).
pub fn seal(
    store: &mut Store,
    accounts: &Accounts,
    actor: &Actor,
    config: &Config,
    engine: &Engine,
    label: &str,
    now: DateTime<Utc>,
) -> Result<SealOutcome, AppError> {
    let r = keys::load_or_create(&keys::key_path(config)).and_then(|key| {
        service::seal_label(
            store.conn_mut(),
            config,
            engine,
            &key,
            label,
            now,
            &actor.name,
        )
    });
    Ok(audited(
        accounts,
        actor,
        "report_seal",
        &format!("report:{label}"),
        r,
    )?)
}

/// Approve correction draft `draft` of `label` with a reason.
#[allow(clippy::too_many_arguments)]
pub fn approve(
    store: &mut Store,
    accounts: &Accounts,
    actor: &Actor,
    config: &Config,
    label: &str,
    draft: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<SealOutcome, AppError> {
    let r = keys::load_or_create(&keys::key_path(config)).and_then(|key| {
        seal::approve(
            store.conn_mut(),
            &key,
            label,
            draft,
            reason,
            &actor.name,
            now,
        )
    });
    let object = format!("report:{label}:draft:{draft}");
    Ok(audited(
        accounts,
        actor,
        "report_correction_approve",
        &object,
        r,
    )?)
}

/// Dismiss correction draft `draft` of `label`.
pub fn dismiss(
    store: &Store,
    accounts: &Accounts,
    actor: &Actor,
    label: &str,
    draft: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let r = seal::dismiss(store.conn(), label, draft, reason, &actor.name, now);
    let object = format!("report:{label}:draft:{draft}");
    Ok(audited(
        accounts,
        actor,
        "report_correction_dismiss",
        &object,
        r,
    )?)
}
