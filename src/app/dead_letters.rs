//! Acknowledging a dead letter: the operator has seen it. The dead letter
//! itself never changes; the first acknowledgement stands.

use super::{audited, Actor, AppError};
use crate::auth::Accounts;
use crate::journal::{AckOutcome, Store};

/// Acknowledge dead letter `id` as `actor` on `store` (a read-write
/// connection), and audit it (`failed` when there is no such dead letter).
pub fn ack(
    store: &Store,
    accounts: &Accounts,
    actor: &Actor,
    id: i64,
) -> Result<AckOutcome, AppError> {
    let outcome = store.ack_dead_letter(id, &actor.name)?;
    let object = format!("dead_letter:{id}");
    let r: Result<(), ()> = match outcome {
        AckOutcome::NotFound => Err(()),
        _ => Ok(()),
    };
    let _ = audited(accounts, actor, "dead_letter_ack", &object, r);
    Ok(outcome)
}
