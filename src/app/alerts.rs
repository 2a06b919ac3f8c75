//! Operators' actions on alerts: acknowledge, resolve, silence and end a
//! silence. Each one is audited (`alert_ack`, `alert_resolve`,
//! `silence_create`, `silence_delete`; `failed` when refused).

use chrono::{DateTime, Utc};

use super::{audited, Actor, AppError};
use crate::alerts::model::LABELS;
use crate::alerts::{ActionOutcome, AlertStore, Matcher, Silence};
use crate::auth::Accounts;

/// Longest comment of a silence, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;
/// Most matchers in a silence.
pub const MAX_MATCHERS: usize = 16;

/// A silence as asked for.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// Every one must match.
    pub matchers: Vec<Matcher>,
    /// From (default: now).
    pub starts_at: Option<DateTime<Utc>>,
    /// Until.
    pub ends_at: DateTime<Utc>,
    /// Why.
    pub comment: String,
}

fn outcome_result(o: &ActionOutcome) -> Result<(), ()> {
    match o {
        ActionOutcome::NotFound => Err(()),
        _ => Ok(()),
    }
}

/// Acknowledge alert `id`: its escalation and repeats stop.
pub fn ack(
    store: &mut AlertStore,
    accounts: &Accounts,
    actor: &Actor,
    id: i64,
    now: DateTime<Utc>,
) -> Result<ActionOutcome, AppError> {
    let outcome = store.ack(id, &actor.name, now)?;
    let _ = audited(
        accounts,
        actor,
        "alert_ack",
        &format!("alert:{id}"),
        outcome_result(&outcome),
    );
    Ok(outcome)
}

/// Resolve alert `id` by hand (a rule whose condition still holds raises
/// a new alert at its next evaluation).
pub fn resolve(
    store: &mut AlertStore,
    accounts: &Accounts,
    actor: &Actor,
    id: i64,
    now: DateTime<Utc>,
) -> Result<ActionOutcome, AppError> {
    let outcome = store.resolve(id, &actor.name, now)?;
    let _ = audited(
        accounts,
        actor,
        "alert_resolve",
        &format!("alert:{id}"),
        outcome_result(&outcome),
    );
    Ok(outcome)
}

/// Why a silence is refused (Vietnamese).
fn check(s: &NewSilence, now: DateTime<Utc>) -> Result<(), String> {
    if s.matchers.is_empty() {
        return Err("Cần ít nhất một điều kiện (matcher), ví dụ {\"name\":\"village\",\"value\":\"na-da\"}.".into());
    }
    if s.matchers.len() > MAX_MATCHERS {
        return Err(format!("Nhiều nhất {MAX_MATCHERS} điều kiện."));
    }
    for m in &s.matchers {
        if !LABELS.contains(&m.name.as_str()) {
            return Err(format!(
                "Nhãn `{}` không có: dùng {}.",
                m.name,
                LABELS.join(", ")
            ));
        }
        if m.value.trim().is_empty() || m.value.chars().count() > 200 {
            return Err(format!(
                "Giá trị của nhãn `{}` phải dài từ 1 đến 200 ký tự.",
                m.name
            ));
        }
    }
    let comment = s.comment.trim();
    if comment.is_empty() || comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(format!(
            "Lý do (comment) phải dài từ 1 đến {MAX_COMMENT_CHARS} ký tự."
        ));
    }
    let starts = s.starts_at.unwrap_or(now);
    if s.ends_at <= now || s.ends_at <= starts {
        return Err(
            "Thời điểm kết thúc (ends_at) phải sau bây giờ và sau thời điểm bắt đầu.".into(),
        );
    }
    if s.ends_at - starts > chrono::TimeDelta::days(30) {
        return Err("Một lần tắt thông báo dài nhất 30 ngày.".into());
    }
    Ok(())
}

/// Create a silence, authored by the actor.
pub fn silence(
    store: &mut AlertStore,
    accounts: &Accounts,
    actor: &Actor,
    s: &NewSilence,
    now: DateTime<Utc>,
) -> Result<Silence, AppError> {
    if let Err(reason) = check(s, now) {
        let _ = audited::<(), ()>(accounts, actor, "silence_create", "silence", Err(()));
        return Err(AppError::InvalidSilence(reason));
    }
    let created = store.add_silence(
        &s.matchers,
        s.starts_at.unwrap_or(now),
        s.ends_at,
        &actor.name,
        s.comment.trim(),
        now,
    );
    let object = match &created {
        Ok(x) => format!("silence:{}", x.id),
        Err(_) => "silence".into(),
    };
    Ok(audited(
        accounts,
        actor,
        "silence_create",
        &object,
        created,
    )?)
}

/// End silence `id` now; None when there is none, Some(false) when it had
/// already ended.
pub fn end_silence(
    store: &mut AlertStore,
    accounts: &Accounts,
    actor: &Actor,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<bool>, AppError> {
    let r = store.end_silence(id, &actor.name, now)?;
    let ok: Result<(), ()> = if r == Some(true) { Ok(()) } else { Err(()) };
    let _ = audited(
        accounts,
        actor,
        "silence_delete",
        &format!("silence:{id}"),
        ok,
    );
    Ok(r)
}
