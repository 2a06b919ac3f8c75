//! Alerts and silences (PROTOCOL.md §6.13–6.14): list (viewer), and the
//! operator's acknowledge, resolve, silence and end-silence, audited
//! through `app::alerts`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::guard::Caller;
use super::{admin, ApiError, ApiState, Body, Params, PathParam};
use crate::alerts::{ActionOutcome, AlertKind, AlertQuery, AlertState, Matcher};
use crate::app::alerts::{self as uc, NewSilence};
use crate::vocab::Hazard;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertListQuery {
    /// `firing`, `resolved` (default: both).
    state: Option<String>,
    /// A hazard code, e.g. `flash_flood`.
    hazard: Option<String>,
    /// A village id.
    village: Option<String>,
    /// `warning`, `threshold`, `absence`, `camera`, `group_offline`.
    kind: Option<String>,
    /// `true`: acknowledged only; `false`: not acknowledged only.
    acked: Option<bool>,
    /// At most this many, newest first (1–1000, default 200).
    limit: Option<usize>,
}

fn bad_filter(what: &str, v: &str, allowed: &str) -> ApiError {
    ApiError::bad(
        "invalid_filter",
        format!("Giá trị `{v}` của `{what}` không hợp lệ: dùng {allowed}."),
    )
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertListQuery),
    responses((status = 200, description = "Alerts, newest first, with counts by status and time to acknowledge"),
        (status = 400, description = "`invalid_filter`, `invalid_query`"),
        (status = 404, description = "`unknown_village`")))]
pub(crate) async fn list(
    State(s): State<ApiState>,
    Params(q): Params<AlertListQuery>,
) -> Result<Response, ApiError> {
    let state = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some(v) => {
            Some(AlertState::parse(v).ok_or_else(|| bad_filter("state", v, "firing, resolved"))?)
        }
    };
    let hazard = match q.hazard.as_deref() {
        None | Some("") => None,
        Some(v) => Some(Hazard::parse(v).ok_or_else(|| {
            bad_filter("hazard", v, "một mã thiên tai như flash_flood, landslide")
        })?),
    };
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(v) => Some(AlertKind::parse(v).ok_or_else(|| {
            bad_filter(
                "kind",
                v,
                "warning, threshold, absence, camera, group_offline",
            )
        })?),
    };
    if let Some(v) = q.village.as_deref() {
        if !s.shared.registry.has_village(v) {
            return Err(ApiError::NotFound {
                code: "unknown_village",
                message: format!("Không có thôn/bản `{v}` trong cấu hình."),
            });
        }
    }
    let query = AlertQuery {
        state,
        acked: q.acked,
        hazard,
        village: q.village.clone(),
        kind,
        limit: q.limit.unwrap_or(200),
    };
    let store = Arc::clone(&s.alerts);
    let mut items = tokio::task::spawn_blocking(move || store.lock().list(&query))
        .await
        .map_err(|_| ApiError::Task)?
        .map_err(crate::app::AppError::from)?;
    let board = s.shared.alerts.get();
    for a in &mut items {
        if let Some(b) = board.alerts.iter().find(|b| b.id == a.id) {
            a.silenced_by.clone_from(&b.silenced_by);
            a.inhibited_by.clone_from(&b.inhibited_by);
        }
    }
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["status"] = json!(a.status());
            v
        })
        .collect();
    Ok(Json(json!({
        "items": items,
        "counts": board.by_status,
        "time_to_ack_s": board.time_to_ack_s,
    }))
    .into_response())
}

fn answer(id: i64, o: ActionOutcome) -> Result<Response, ApiError> {
    let (a, already) = match o {
        ActionOutcome::Done(a) => (a, false),
        ActionOutcome::Already(a) => (a, true),
        ActionOutcome::NotFound => {
            return Err(ApiError::NotFound {
                code: "unknown_alert",
                message: format!("Không có cảnh báo số {id}."),
            })
        }
    };
    let mut v = serde_json::to_value(&a).unwrap_or_default();
    v["status"] = json!(a.status());
    if already {
        v["already"] = json!(true);
    }
    Ok(Json(v).into_response())
}

#[utoipa::path(post, path = "/api/alerts/{id}/ack", tag = "alerts",
    params(("id" = i64, Path, description = "Alert id", example = 1)),
    responses((status = 200, description = "Acknowledged (or `already: true`): escalation stops"),
        (status = 404, description = "`unknown_alert`")))]
pub(crate) async fn ack(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.alerts);
    let o = admin::blocking(&s, &c, move |accounts, actor| {
        uc::ack(&mut store.lock(), accounts, actor, id, Utc::now())
    })
    .await?;
    s.shared.alerts.kick();
    answer(id, o)
}

#[utoipa::path(post, path = "/api/alerts/{id}/resolve", tag = "alerts",
    params(("id" = i64, Path, description = "Alert id", example = 1)),
    responses((status = 200, description = "Resolved (or `already: true`)"),
        (status = 404, description = "`unknown_alert`")))]
pub(crate) async fn resolve(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.alerts);
    let o = admin::blocking(&s, &c, move |accounts, actor| {
        uc::resolve(&mut store.lock(), accounts, actor, id, Utc::now())
    })
    .await?;
    s.shared.alerts.kick();
    answer(id, o)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SilenceListQuery {
    /// `true`: expired ones too (the newest 500).
    all: Option<bool>,
}

fn silence_json(x: &crate::alerts::Silence, now: DateTime<Utc>) -> serde_json::Value {
    let mut v = serde_json::to_value(x).unwrap_or_default();
    v["status"] = json!(x.status(now));
    v
}

#[utoipa::path(get, path = "/api/silences", tag = "alerts", params(SilenceListQuery),
    responses((status = 200, description = "Silences not expired (or all), newest first, with `status` pending/active/expired")))]
pub(crate) async fn silences(
    State(s): State<ApiState>,
    Params(q): Params<SilenceListQuery>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.alerts);
    let now = Utc::now();
    let all = q.all.unwrap_or(false);
    let list = tokio::task::spawn_blocking(move || store.lock().silences(now, all))
        .await
        .map_err(|_| ApiError::Task)?
        .map_err(crate::app::AppError::from)?;
    let items: Vec<_> = list.iter().map(|x| silence_json(x, now)).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// `POST /api/silences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilenceBody {
    /// Every matcher must match an alert's label.
    matchers: Vec<Matcher>,
    /// From (RFC 3339; default now).
    #[schema(value_type = Option<String>, format = DateTime)]
    starts_at: Option<DateTime<Utc>>,
    /// Until (RFC 3339), or give `duration`.
    #[schema(value_type = Option<String>, format = DateTime)]
    ends_at: Option<DateTime<Utc>>,
    /// `30m`, `2h`... from `starts_at`, instead of `ends_at`.
    duration: Option<String>,
    /// Why (required).
    comment: String,
}

#[utoipa::path(post, path = "/api/silences", tag = "alerts", request_body = SilenceBody,
    responses((status = 201, description = "Created; matching alerts get no notification until it ends"),
        (status = 400, description = "`invalid_silence`, `invalid_body`")))]
pub(crate) async fn silence_create(
    State(s): State<ApiState>,
    c: Caller,
    Body(b): Body<SilenceBody>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let start = b.starts_at.unwrap_or(now);
    let ends_at = match (b.ends_at, b.duration.as_deref()) {
        (Some(e), None) => e,
        (None, Some(d)) => {
            start
                + crate::config::alerts::parse_duration(d)
                    .map_err(|e| ApiError::bad("invalid_silence", e))?
        }
        _ => {
            return Err(ApiError::bad(
                "invalid_silence",
                "Cần đúng một trong `ends_at` hoặc `duration`.",
            ))
        }
    };
    let new = NewSilence {
        matchers: b.matchers,
        starts_at: b.starts_at,
        ends_at,
        comment: b.comment,
    };
    let store = Arc::clone(&s.alerts);
    let created = admin::blocking(&s, &c, move |accounts, actor| {
        uc::silence(&mut store.lock(), accounts, actor, &new, now)
    })
    .await?;
    s.shared.alerts.kick();
    Ok((StatusCode::CREATED, Json(silence_json(&created, now))).into_response())
}

#[utoipa::path(delete, path = "/api/silences/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "Silence id", example = 1)),
    responses((status = 200, description = "Ended now (or `already: true` when it had ended)"),
        (status = 404, description = "`unknown_silence`")))]
pub(crate) async fn silence_delete(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.alerts);
    let now = Utc::now();
    let r = admin::blocking(&s, &c, move |accounts, actor| {
        uc::end_silence(&mut store.lock(), accounts, actor, id, now)
    })
    .await?;
    s.shared.alerts.kick();
    match r {
        None => Err(ApiError::NotFound {
            code: "unknown_silence",
            message: format!("Không có lần tắt thông báo số {id}."),
        }),
        Some(done) => {
            let store = Arc::clone(&s.alerts);
            let x = tokio::task::spawn_blocking(move || store.lock().silence(id))
                .await
                .map_err(|_| ApiError::Task)?
                .map_err(crate::app::AppError::from)?;
            let mut v = x.map(|x| silence_json(&x, now)).unwrap_or_default();
            if !done {
                v["already"] = json!(true);
            }
            Ok(Json(v).into_response())
        }
    }
}
