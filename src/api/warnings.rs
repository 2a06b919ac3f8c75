//! `/api/warnings`: official warnings (CAP 1.2) listed, read with their
//! original XML and chain, and posted by an operator (validated, then
//! committed through the same pipeline as MQTT bulletins).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::guard::Caller;
use super::{admin, ApiState, Params, PathParam};
use crate::vocab::Hazard;
use crate::warnings::service::{ReadError, SubmitError};
use crate::warnings::{cap::warning_id, store, API_TOPIC};

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        tracing::error!(error = %e, "warnings store read failed");
        ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "store_unavailable",
            message: "Kho dữ liệu tạm thời không truy cập được, vui lòng thử lại sau.".into(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        tracing::error!(error = %e, "warning not committed");
        ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "not_committed",
            message: "Chưa ghi được bản tin vào kho dữ liệu; hãy gửi lại sau.".into(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WarningQuery {
    /// Only this hazard (`flash_flood`, `landslide`, ...).
    hazard: Option<String>,
    /// Only this risk level (1–5).
    level: Option<u8>,
    /// Only warnings covering this village id.
    village: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// Active warnings and those of the last `warnings.recent_days` days.
#[utoipa::path(get, path = "/api/warnings", tag = "warnings", params(WarningQuery),
    responses((status = 200, description = "Warnings, newest first: `{\"warnings\": [...]}`"),
        (status = 400, description = "`invalid_hazard`, `invalid_level`, `unknown_village`")))]
pub(super) async fn list(
    State(s): State<ApiState>,
    Params(q): Params<WarningQuery>,
) -> Result<Response, ApiError> {
    let hazard = match q.hazard.as_deref() {
        None | Some("") => None,
        Some(h) => Some(Hazard::parse(h).ok_or_else(|| {
            ApiError::bad("invalid_hazard", format!("Loại thiên tai `{h}` không có."))
        })?),
    };
    if q.level.is_some_and(|l| !(1..=5).contains(&l)) {
        return Err(ApiError::bad(
            "invalid_level",
            "Cấp độ rủi ro phải từ 1 đến 5.",
        ));
    }
    if let Some(v) = q.village.as_deref().filter(|v| !v.is_empty()) {
        if !s.shared.config.villages.iter().any(|x| x.id == v) {
            return Err(ApiError::bad(
                "unknown_village",
                format!("Thôn/bản `{v}` không có trong cấu hình."),
            ));
        }
    }
    let now = Utc::now();
    let svc = s.warnings.clone();
    let filter = store::Filter {
        hazard,
        level: q.level,
        village: q.village.filter(|v| !v.is_empty()),
        since: svc.recent_since(now),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let items = tokio::task::spawn_blocking(move || svc.read(|c| store::list(c, &filter, now)))
        .await
        .map_err(|_| ApiError::Task)??;
    Ok(Json(json!({ "warnings": items })).into_response())
}

/// One warning: its profile, villages and how they matched, the original
/// XML, the parsed bulletin and its Update/Cancel chain.
#[utoipa::path(get, path = "/api/warnings/{id}", tag = "warnings",
    params(("id" = String, Path, description = "`sender|identifier|sent`, URL-encoded",
        example = "canhbao@kttv.example.vn|VN-LQ-0001|2026-07-14T09:30:00+07:00")),
    responses((status = 200, description = "The warning"), (status = 404, description = "`unknown_warning`")))]
pub(super) async fn get(
    State(s): State<ApiState>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let svc = s.warnings.clone();
    let key = id.clone();
    let found =
        tokio::task::spawn_blocking(move || svc.read(|c| store::detail(c, &key, Utc::now())))
            .await
            .map_err(|_| ApiError::Task)??;
    match found {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::NotFound {
            code: "unknown_warning",
            message: format!("Không có cảnh báo `{id}`."),
        }),
    }
}

/// Post a CAP 1.2 bulletin (operator; audited). 201 with the stored
/// warning (200 with `duplicate: true` when it was stored before), or 422
/// `invalid_cap` naming the rule broken (the bulletin is kept as a dead
/// letter).
#[utoipa::path(post, path = "/api/warnings", tag = "warnings",
    request_body(content = String, content_type = "application/cap+xml", description = "A CAP 1.2 <alert>"),
    responses((status = 201, description = "Stored"), (status = 200, description = "Stored before (`duplicate: true`)"),
        (status = 415, description = "`unsupported_media_type`"),
        (status = 422, description = "`invalid_cap` with `rule`, `detail` (English) and `message` (Vietnamese)")))]
pub(super) async fn post(
    State(s): State<ApiState>,
    c: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !matches!(
        ctype.as_str(),
        "application/xml" | "application/cap+xml" | "text/xml"
    ) {
        return Err(ApiError::Status {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "Gửi bản tin CAP với Content-Type: application/cap+xml hoặc application/xml."
                .into(),
        });
    }
    let svc = s.warnings.clone();
    let checked = svc.checker.check(&body);
    let id = checked.as_ref().ok().map(|(a, _)| a.id());
    let before = match &checked {
        Ok((a, _)) => {
            let (svc2, a) = (svc.clone(), a.clone());
            tokio::task::spawn_blocking(move || {
                svc2.read(|c| store::exists(c, &a.sender, &a.identifier, &a.sent_text))
            })
            .await
            .map_err(|_| ApiError::Task)??
        }
        Err(_) => false,
    };
    // Valid or not, it goes through the pipeline: stored, or kept as an
    // `invalid_cap` dead letter.
    svc.submit(API_TOPIC.into(), body.to_vec()).await?;
    let object = id.clone().unwrap_or_else(|| "(invalid)".into());
    let outcome = checked.as_ref().map(|_| ()).map_err(|e| e.rule());
    admin::blocking(&s, &c, move |accounts, actor| {
        crate::app::warnings::audit_post(accounts, actor, &object, outcome);
        Ok(())
    })
    .await?;
    match checked {
        Err(e) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": {
                "code": "invalid_cap",
                "rule": e.rule(),
                "message": e.message_vi(),
                "detail": e.to_string(),
            }})),
        )
            .into_response()),
        Ok((a, _)) => {
            let key = warning_id(&a.sender, &a.identifier, &a.sent_text);
            let d = tokio::task::spawn_blocking(move || {
                svc.read(|c| store::detail(c, &key, Utc::now()))
            })
            .await
            .map_err(|_| ApiError::Task)??;
            let Some(d) = d else {
                return Err(ApiError::Task);
            };
            let mut v = serde_json::to_value(d).unwrap_or_default();
            if before {
                v["duplicate"] = json!(true);
                Ok((StatusCode::OK, Json(v)).into_response())
            } else {
                Ok((StatusCode::CREATED, Json(v)).into_response())
            }
        }
    }
}
