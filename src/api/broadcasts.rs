//! `/api/broadcasts` and `/api/tasks`: loudspeaker broadcasts with their
//! coverage, an operator's draft, approval, cancel, and manual tasks
//! (docs/PROTOCOL.md §8, ACCESS.md).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use super::admin::blocking;
use super::error::ApiError;
use super::{guard, ApiState, Body, PathParam};
use crate::broadcasts::plan::Draft;
use crate::broadcasts::{BroadcastError, Priority};

/// A broadcast refusal as an HTTP answer.
pub(crate) fn refuse(e: BroadcastError) -> ApiError {
    let message = e.to_string();
    match e {
        BroadcastError::NotFound(_) => ApiError::NotFound {
            code: "unknown_broadcast",
            message,
        },
        BroadcastError::NoTask(_) => ApiError::NotFound {
            code: "unknown_task",
            message,
        },
        BroadcastError::WrongState { .. } => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "wrong_state",
            message,
        },
        BroadcastError::TaskClosed(_) => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "task_closed",
            message,
        },
        BroadcastError::Invalid(_) => ApiError::bad("invalid_broadcast", message),
        e @ (BroadcastError::Sqlite(_) | BroadcastError::Journal(_)) => {
            tracing::error!(error = %e, "broadcasts store failed");
            ApiError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "store_unavailable",
                message: "Kho dữ liệu phát thanh đang lỗi, hãy thử lại sau.".into(),
            }
        }
    }
}

#[utoipa::path(get, path = "/api/broadcasts", tag = "broadcasts",
    responses((status = 200, description = "Broadcasts in force and the latest ended ones, each with its clusters and per-village coverage; open manual tasks; indicators (by priority, bulletin issue → first acknowledged play, villages reached within 15 minutes, clusters unreachable)")))]
pub(crate) async fn list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let reader = Arc::clone(&s.reader);
    let config = s.shared.config.clone();
    let v = tokio::task::spawn_blocking(move || {
        crate::broadcasts::store::overview(reader.lock().conn(), &config, Utc::now())
    })
    .await
    .map_err(|_| ApiError::Task)?
    .map_err(refuse)?;
    Ok(Json(v).into_response())
}

/// An operator's broadcast.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBroadcast {
    /// Village ids.
    villages: Vec<String>,
    /// `routine` (default), `priority` or `emergency`.
    #[serde(default)]
    priority: Option<String>,
    /// The Vietnamese text.
    text_vi: String,
    /// The same text in the villages' ethnic language.
    #[serde(default)]
    text_ethnic: Option<String>,
    /// That language (e.g. `Hmông`); required with `text_ethnic`.
    #[serde(default)]
    language: Option<String>,
    /// Plays per cluster (default 1).
    #[serde(default)]
    repeats: Option<u32>,
    /// Seconds between plays (default `[broadcasts] gap_secs`).
    #[serde(default)]
    gap_secs: Option<u64>,
    /// Minutes until it expires (default `[broadcasts] expiry_mins`).
    #[serde(default)]
    expires_in_mins: Option<u64>,
}

#[utoipa::path(post, path = "/api/broadcasts", tag = "broadcasts", request_body = NewBroadcast,
    responses((status = 201, description = "Drafted: `{id}`; nothing is sent before approval"),
        (status = 400, description = "`invalid_broadcast`: unknown village, empty text, bad repeats or expiry")))]
pub(crate) async fn create(
    State(s): State<ApiState>,
    c: guard::Caller,
    Body(b): Body<NewBroadcast>,
) -> Result<Response, ApiError> {
    let priority = match b.priority.as_deref() {
        None => Priority::Routine,
        Some(p) => Priority::parse(p).ok_or_else(|| {
            ApiError::bad(
                "invalid_broadcast",
                format!("Mức ưu tiên `{p}` không có: dùng routine, priority hoặc emergency."),
            )
        })?,
    };
    if b.text_ethnic.is_some() != b.language.is_some() {
        return Err(ApiError::bad(
            "invalid_broadcast",
            "Nội dung tiếng dân tộc cần đi kèm tên ngôn ngữ (language) và ngược lại.",
        ));
    }
    let cfg = s.shared.config.clone();
    let now = Utc::now();
    // No text of the operator's own in an ethnic language: the commune's
    // recorded one for the villages' language, if any.
    let (text_ethnic, language) = match (b.text_ethnic, b.language) {
        (Some(t), Some(l)) => (Some(t), Some(l)),
        _ => crate::broadcasts::plan::ethnic_for(&cfg, &b.villages, None)
            .map(|(l, t)| (Some(t.to_owned()), Some(l.to_owned())))
            .unwrap_or((None, None)),
    };
    let d = Draft {
        origin: "operator",
        warning_id: None,
        chain: None,
        priority,
        villages: b.villages,
        text_vi: b.text_vi,
        text_ethnic,
        language,
        repeats: b.repeats.unwrap_or(1),
        gap_secs: b.gap_secs.unwrap_or(cfg.broadcasts.gap_secs),
        issued: None,
        expires: now
            + TimeDelta::minutes(
                b.expires_in_mins
                    .unwrap_or(cfg.broadcasts.expiry_mins)
                    .min(7 * 24 * 60) as i64,
            ),
    };
    let store = Arc::clone(&s.actions);
    let id = blocking(&s, &c, move |accounts, actor| {
        crate::app::broadcasts::draft(store.lock().conn_mut(), accounts, actor, &cfg, &d, now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[utoipa::path(post, path = "/api/broadcasts/{id}/approve", tag = "broadcasts",
    params(("id" = i64, Path, description = "Broadcast id")),
    responses((status = 200, description = "Approved: commands queued, manual tasks opened, plans of the same bulletin superseded"),
        (status = 404, description = "`unknown_broadcast`"), (status = 409, description = "`wrong_state`: not a draft, or expired")))]
pub(crate) async fn approve(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.actions);
    let cfg = s.shared.config.clone();
    let a = blocking(&s, &c, move |accounts, actor| {
        crate::app::broadcasts::approve(
            store.lock().conn_mut(),
            accounts,
            actor,
            &cfg,
            id,
            Utc::now(),
        )
    })
    .await?;
    Ok(Json(a).into_response())
}

#[utoipa::path(post, path = "/api/broadcasts/{id}/cancel", tag = "broadcasts",
    params(("id" = i64, Path, description = "Broadcast id")),
    responses((status = 200, description = "Cancelled: pending commands and repeats stop, open tasks close"),
        (status = 404, description = "`unknown_broadcast`"), (status = 409, description = "`wrong_state`: already ended")))]
pub(crate) async fn cancel(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.actions);
    blocking(&s, &c, move |accounts, actor| {
        crate::app::broadcasts::cancel(store.lock().conn_mut(), accounts, actor, id, Utc::now())
    })
    .await?;
    Ok(Json(json!({ "id": id, "state": "cancelled" })).into_response())
}

#[utoipa::path(post, path = "/api/tasks/{id}/done", tag = "broadcasts",
    params(("id" = i64, Path, description = "Task id")),
    request_body(content = String, description = "Optional JSON `{\"note\": \"...\"}`", content_type = "application/json"),
    responses((status = 200, description = "Done"), (status = 404, description = "`unknown_task`"),
        (status = 409, description = "`task_closed`")))]
pub(crate) async fn task_done(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam(id): PathParam<i64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad(
                "invalid_body",
                format!("Nội dung không phải JSON hợp lệ: {e}"),
            )
        })?;
        v["note"]
            .as_str()
            .map(|n| n.chars().take(500).collect::<String>())
    };
    let store = Arc::clone(&s.actions);
    blocking(&s, &c, move |accounts, actor| {
        crate::app::broadcasts::task_done(
            store.lock().conn_mut(),
            accounts,
            actor,
            id,
            note.as_deref(),
            Utc::now(),
        )
    })
    .await?;
    Ok(Json(json!({ "id": id, "state": "done" })).into_response())
}
