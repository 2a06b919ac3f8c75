//! `/api/reports`: periods and their state, the sealed documents byte for
//! byte, sealing and correction drafts (docs/REPORTS.md, ACCESS.md).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::admin::blocking;
use super::error::ApiError;
use super::{guard, ApiState, Body, Params, PathParam};
use crate::indicators::Engine;
use crate::reports::{seal, service, ReportError, ReportPeriod};

/// A use case's refusal as an HTTP answer.
pub(crate) fn refuse(e: ReportError) -> ApiError {
    let message = e.to_string();
    match e {
        ReportError::Period(_) => ApiError::bad("invalid_period", message),
        ReportError::NoReason => ApiError::bad("reason_required", message),
        ReportError::NotClosed { .. } => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "period_open",
            message,
        },
        ReportError::DraftClosed { .. } => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "draft_closed",
            message,
        },
        ReportError::NoDraft(_) => ApiError::NotFound {
            code: "unknown_draft",
            message,
        },
        ReportError::NotSealed(_) => ApiError::NotFound {
            code: "not_sealed",
            message,
        },
        other => {
            tracing::error!(error = %other, "report error while answering a request");
            ApiError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "report_unavailable",
                message: "Không đọc hoặc ghi được báo cáo lúc này, vui lòng thử lại sau.".into(),
            }
        }
    }
}

fn period(s: &ApiState, label: &str) -> Result<String, ApiError> {
    ReportPeriod::parse(label, s.shared.config.report.regime)
        .map(|p| p.label())
        .map_err(|e| refuse(e.into()))
}

async fn read<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&crate::journal::Store) -> Result<T, ReportError> + Send + 'static,
) -> Result<T, ApiError> {
    let reader = Arc::clone(&s.reader);
    tokio::task::spawn_blocking(move || f(&reader.lock()))
        .await
        .map_err(|_| ApiError::Task)?
        .map_err(refuse)
}

#[utoipa::path(get, path = "/api/reports", tag = "reports",
    responses((status = 200, description = "Periods (sealed ones, the current month and the one before) with their state: open, sealed, corrected, submitted, acknowledged")))]
pub(crate) async fn list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let config = s.shared.config.clone();
    let periods = read(&s, move |st| {
        service::list(st.conn(), &config, chrono::Utc::now())
    })
    .await?;
    Ok(Json(json!({ "periods": periods })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevisionQuery {
    /// A revision (default: the latest).
    revision: Option<u32>,
    /// An export instead of the sealed JSON: `xlsx`, `csv`, `dhis2`,
    /// `html` (api/report_out.rs).
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/reports/{period}", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06"), RevisionQuery),
    responses((status = 200, description = "The sealed document (RFC 8785 JSON), byte for byte; `ETag` is its id; with `format=xlsx|csv|dhis2|html` an export of it (as `/export`)"),
        (status = 400, description = "`invalid_period`"), (status = 404, description = "`not_sealed`")))]
pub(crate) async fn get(
    State(s): State<ApiState>,
    PathParam(label): PathParam<String>,
    Params(q): Params<RevisionQuery>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    if let Some(f) = q.format.as_deref().filter(|f| *f != "json") {
        let format = super::report_out::parse_format(f)?;
        return super::report_out::export_response(&s, label, format, q.revision).await;
    }
    let (stored, doc) = read(&s, move |st| {
        seal::revision(st.conn(), &label, q.revision)?.ok_or(ReportError::NotSealed(label))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, format!("\"{}\"", stored.digest)),
        ],
        doc,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/reports/{period}/seal", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06")),
    responses((status = 200, description = "Sealed (or `already_sealed: true`): period, revision, digest"),
        (status = 400, description = "`invalid_period`"),
        (status = 409, description = "`period_open`: the window and its grace have not passed")))]
pub(crate) async fn seal_period(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam(label): PathParam<String>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.actions);
    let config = s.shared.config.clone();
    let outcome = blocking(&s, &c, move |accounts, actor| {
        let engine = Engine::new(&config);
        crate::app::reports::seal(
            &mut store.lock(),
            accounts,
            actor,
            &config,
            &engine,
            &label,
            chrono::Utc::now(),
        )
    })
    .await?;
    Ok(Json(outcome).into_response())
}

#[utoipa::path(get, path = "/api/reports/{period}/corrections", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06")),
    responses((status = 200, description = "Correction drafts of the period, newest first, with the values late events moved")))]
pub(crate) async fn corrections(
    State(s): State<ApiState>,
    PathParam(label): PathParam<String>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    let drafts = read(&s, move |st| seal::drafts(st.conn(), Some(&label))).await?;
    Ok(Json(json!({ "drafts": drafts })).into_response())
}

/// A decision on a draft.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Decision {
    /// Why (required).
    reason: String,
}

#[utoipa::path(post, path = "/api/reports/{period}/corrections/{id}/approve", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06"),
        ("id" = i64, Path, description = "Draft id", example = 1)),
    request_body = Decision,
    responses((status = 200, description = "Signed as the next revision: period, revision, digest"),
        (status = 400, description = "`reason_required`"), (status = 404, description = "`unknown_draft`"),
        (status = 409, description = "`draft_closed`")))]
pub(crate) async fn approve(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam((label, id)): PathParam<(String, i64)>,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    let store = Arc::clone(&s.actions);
    let config = s.shared.config.clone();
    let outcome = blocking(&s, &c, move |accounts, actor| {
        crate::app::reports::approve(
            &mut store.lock(),
            accounts,
            actor,
            &config,
            &label,
            id,
            &d.reason,
            chrono::Utc::now(),
        )
    })
    .await?;
    Ok(Json(outcome).into_response())
}

#[utoipa::path(post, path = "/api/reports/{period}/corrections/{id}/dismiss", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06"),
        ("id" = i64, Path, description = "Draft id", example = 1)),
    request_body = Decision,
    responses((status = 200, description = "Dismissed"), (status = 404, description = "`unknown_draft`")))]
pub(crate) async fn dismiss(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam((label, id)): PathParam<(String, i64)>,
    Body(d): Body<Decision>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    let store = Arc::clone(&s.actions);
    let l2 = label.clone();
    blocking(&s, &c, move |accounts, actor| {
        crate::app::reports::dismiss(
            &store.lock(),
            accounts,
            actor,
            &l2,
            id,
            &d.reason,
            chrono::Utc::now(),
        )
    })
    .await?;
    Ok(Json(json!({ "period": label, "draft": id, "state": "dismissed" })).into_response())
}
