//! The report's way out over HTTP: exports of a sealed revision
//! (`GET /api/reports/{period}/export?format=xlsx|csv|dhis2|html|json`),
//! submission to the province (`POST /api/reports/{period}/submit`,
//! operator, audited) and its state with every attempt
//! (`GET /api/reports/{period}/submission`). docs/REPORTS.md.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::admin::blocking;
use super::error::ApiError;
use super::{guard, ApiState, Params, PathParam};
use crate::reports::export::province::SubmitError;
use crate::reports::export::{self, ExportError, Format, Settings};
use crate::reports::{seal, ReportError, ReportPeriod, Snapshot};

/// A report error as an HTTP answer.
pub(crate) fn refuse_report(e: ReportError) -> ApiError {
    let message = e.to_string();
    match e {
        ReportError::Period(_) => ApiError::bad("invalid_period", message),
        ReportError::NotSealed(_) => ApiError::NotFound {
            code: "not_sealed",
            message,
        },
        other => {
            tracing::error!(error = %other, "report error while answering a request");
            unavailable()
        }
    }
}

fn unavailable() -> ApiError {
    ApiError::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "report_unavailable",
        message: "Không đọc hoặc ghi được báo cáo lúc này, vui lòng thử lại sau.".into(),
    }
}

/// A submission's refusal as an HTTP answer.
pub(crate) fn refuse_submit(e: SubmitError) -> ApiError {
    let message = e.to_string();
    match e {
        SubmitError::Report(r) => refuse_report(r),
        SubmitError::NotConfigured => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "province_not_configured",
            message,
        },
        SubmitError::Export(x) => refuse_export(x),
        other => {
            tracing::error!(error = %other, "report submission failed");
            unavailable()
        }
    }
}

fn refuse_export(e: ExportError) -> ApiError {
    let message = e.to_string();
    match e {
        ExportError::UnknownFormat(_) => ApiError::bad("invalid_format", message),
        ExportError::NoDhis2Mapping => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "dhis2_not_configured",
            message,
        },
        other => {
            tracing::error!(error = %other, "report export failed");
            unavailable()
        }
    }
}

fn period(s: &ApiState, label: &str) -> Result<String, ApiError> {
    ReportPeriod::parse(label, s.shared.config.report.regime)
        .map(|p| p.label())
        .map_err(|e| refuse_report(e.into()))
}

/// Export options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// `xlsx`, `csv`, `dhis2`, `html` or `json` (default `xlsx`).
    format: Option<String>,
    /// A revision (default: the latest).
    revision: Option<u32>,
}

#[utoipa::path(get, path = "/api/reports/{period}/export", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06"), ExportQuery),
    responses((status = 200, description = "The sealed revision as an Excel workbook, CSV, DHIS2 dataValueSets JSON, the printable HTML document, or the sealed JSON; `Content-Disposition` names the file"),
        (status = 400, description = "`invalid_period`, `invalid_format`"), (status = 404, description = "`not_sealed`"),
        (status = 409, description = "`dhis2_not_configured`")))]
pub(crate) async fn export(
    State(s): State<ApiState>,
    PathParam(label): PathParam<String>,
    Params(q): Params<ExportQuery>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    let format = Format::parse(q.format.as_deref().unwrap_or("xlsx")).map_err(refuse_export)?;
    export_response(&s, label, format, q.revision).await
}

/// `GET /api/reports/{period}?format=...` (the document route) answers
/// through this too.
pub(crate) fn parse_format(f: &str) -> Result<Format, ApiError> {
    Format::parse(f).map_err(refuse_export)
}

/// A sealed revision of `label` rendered as `format`, as a file.
pub(crate) async fn export_response(
    s: &ApiState,
    label: String,
    format: Format,
    revision: Option<u32>,
) -> Result<Response, ApiError> {
    let reader = Arc::clone(&s.reader);
    let config = s.shared.config.clone();
    let out = tokio::task::spawn_blocking(move || {
        let (_, doc) = seal::revision(reader.lock().conn(), &label, revision)
            .map_err(refuse_report)?
            .ok_or_else(|| refuse_report(ReportError::NotSealed(label.clone())))?;
        let snapshot: Snapshot = serde_json::from_slice(&doc).map_err(|e| {
            tracing::error!(error = %e, "a sealed document does not parse");
            unavailable()
        })?;
        let settings = Settings {
            document: &config.report.document,
            dhis2: &config.report.dhis2,
        };
        let bytes = export::render(&snapshot, &doc, format, settings).map_err(refuse_export)?;
        Ok::<_, ApiError>((export::file_name(&snapshot, format), bytes))
    })
    .await
    .map_err(|_| ApiError::Task)??;
    let (name, bytes) = out;
    let disposition = if format == Format::Html {
        format!("inline; filename=\"{name}\"")
    } else {
        format!("attachment; filename=\"{name}\"")
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/reports/{period}/submit", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06")),
    responses((status = 202, description = "The latest revision is in the delivery outbox for the province (`new: false` when it was already): period, revision, digest, state, delivery"),
        (status = 400, description = "`invalid_period`"), (status = 404, description = "`not_sealed`"),
        (status = 409, description = "`province_not_configured`")))]
pub(crate) async fn submit(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam(label): PathParam<String>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    let store = Arc::clone(&s.actions);
    let config = s.shared.config.clone();
    let sub = blocking(&s, &c, move |accounts, actor| {
        crate::app::report_submit::submit(
            &mut store.lock(),
            accounts,
            actor,
            &config,
            &label,
            chrono::Utc::now(),
        )
    })
    .await?;
    crate::delivery::wake(&s.shared);
    Ok((StatusCode::ACCEPTED, Json(sub)).into_response())
}

#[utoipa::path(get, path = "/api/reports/{period}/submission", tag = "reports",
    params(("period" = String, Path, description = "Period label", example = "2026-06")),
    responses((status = 200, description = "The latest revision's submission: state (`submitted`, `acknowledged`, `submission_failed`), the outbox row, the province's receipt and every attempt; `submission: null` when not submitted"),
        (status = 404, description = "`not_sealed`")))]
pub(crate) async fn submission(
    State(s): State<ApiState>,
    PathParam(label): PathParam<String>,
) -> Result<Response, ApiError> {
    let label = period(&s, &label)?;
    let reader = Arc::clone(&s.reader);
    let config = s.shared.config.clone();
    let v = tokio::task::spawn_blocking(move || {
        let r = reader.lock();
        let sub = crate::reports::export::province::status(r.conn(), &config, &label)
            .map_err(refuse_submit)?;
        let attempts = match sub.as_ref().and_then(|s| s.detail.as_ref()) {
            Some(d) => crate::delivery::attempts(r.conn(), &d.key).map_err(|e| {
                tracing::error!(error = %e, "cannot read delivery attempts");
                unavailable()
            })?,
            None => Vec::new(),
        };
        Ok::<_, ApiError>(json!({ "period": label, "submission": sub, "attempts": attempts }))
    })
    .await
    .map_err(|_| ApiError::Task)??;
    Ok(Json(v).into_response())
}
