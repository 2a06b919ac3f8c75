//! Submitting a sealed report to the province (operator role), audited as
//! `report_submit` on `report:{period}`, for the HTTP API and the CLI
//! alike. The work is `reports::export::province::submit`: the latest
//! revision goes into the durable delivery outbox.

use chrono::{DateTime, Utc};

use super::{audited, Actor, AppError};
use crate::auth::Accounts;
use crate::config::Config;
use crate::journal::Store;
use crate::reports::export::province::{self, Submission};

/// Submit the latest revision of period `label` to the province.
pub fn submit(
    store: &mut Store,
    accounts: &Accounts,
    actor: &Actor,
    config: &Config,
    label: &str,
    now: DateTime<Utc>,
) -> Result<Submission, AppError> {
    let r = province::submit(store.conn_mut(), config, label, now);
    Ok(audited(
        accounts,
        actor,
        "report_submit",
        &format!("report:{label}"),
        r,
    )?)
}
