//! Loudspeaker broadcasts: an operator's draft, approval, cancel, and a
//! manual task marked done, each audited (`broadcast_draft`,
//! `broadcast_approve`, `broadcast_cancel`, `broadcast_task_done`).

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{audited, Actor, AppError};
use crate::auth::Accounts;
use crate::broadcasts::plan::{self, Draft};
use crate::broadcasts::store::{self, Approved};
use crate::broadcasts::BroadcastError;
use crate::config::Config;

/// Store an operator's draft (checked against the site); its id.
pub fn draft(
    conn: &mut Connection,
    accounts: &Accounts,
    actor: &Actor,
    config: &Config,
    d: &Draft,
    now: DateTime<Utc>,
) -> Result<i64, AppError> {
    let r = plan::check(d, config, now)
        .map_err(BroadcastError::Invalid)
        .and_then(|()| store::insert_draft(conn, d, config, &actor.name, now));
    let object = match &r {
        Ok(id) => format!("broadcast:{id}"),
        Err(_) => "broadcast:new".into(),
    };
    Ok(audited(accounts, actor, "broadcast_draft", &object, r)?)
}

/// Approve draft `id`: its commands are queued.
pub fn approve(
    conn: &mut Connection,
    accounts: &Accounts,
    actor: &Actor,
    config: &Config,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Approved, AppError> {
    let r = store::approve(conn, id, config, &actor.name, now);
    Ok(audited(
        accounts,
        actor,
        "broadcast_approve",
        &format!("broadcast:{id}"),
        r,
    )?)
}

/// Cancel broadcast `id`: pending commands stop.
pub fn cancel(
    conn: &mut Connection,
    accounts: &Accounts,
    actor: &Actor,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let r = store::cancel(conn, id, &actor.name, now);
    Ok(audited(
        accounts,
        actor,
        "broadcast_cancel",
        &format!("broadcast:{id}"),
        r,
    )?)
}

/// Mark manual task `id` done (the village head was called).
pub fn task_done(
    conn: &mut Connection,
    accounts: &Accounts,
    actor: &Actor,
    id: i64,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let r = store::task_done(conn, id, &actor.name, note, now);
    Ok(audited(
        accounts,
        actor,
        "broadcast_task_done",
        &format!("task:{id}"),
        r,
    )?)
}
