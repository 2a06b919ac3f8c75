//! The HTTP API (axum): indicators, devices, dead letters, villages, health
//! and metrics, and the wall screen's static files at `/`.

mod dashboard;
mod error;
mod history;
mod ws;

pub use error::ApiError;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::indicators::{ScopeSel, Window};
use crate::journal::Store;
use crate::live::Hub;
use crate::model::Reason;
use crate::state::Shared;

/// Handles the API reads.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Shared pipeline state.
    pub shared: Arc<Shared>,
    /// Read connection to the journal.
    pub reader: Arc<Mutex<Store>>,
    /// The live hub behind `/api/ws`.
    pub live: Arc<Hub>,
    /// Who is calling.
    pub auth: Arc<dyn Authenticator>,
    /// WebSocket tasks, closed and awaited on shutdown.
    pub ws: WsTasks,
}

/// The WebSocket connections' tasks and the token that closes them.
#[derive(Debug, Clone, Default)]
pub struct WsTasks {
    /// Tracks every connection task.
    pub tracker: TaskTracker,
    /// Cancelled when the server stops: connections send a close frame.
    pub cancel: CancellationToken,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/commune", get(commune))
        .route("/api/villages", get(villages))
        .route("/api/indicators", get(indicators))
        .route("/api/indicators/{id}/history", get(history::history))
        .route("/api/devices", get(devices))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/ws", get(ws::ws))
        .route("/api/{*rest}", get(api_not_found))
        .method_not_allowed_fallback(method_not_allowed);
    let router = dashboard::attach(router, &state.shared.config);
    router.with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "Không có địa chỉ API này.".into(),
    }
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": { "code": "method_not_allowed", "message": "Phương thức không được hỗ trợ ở địa chỉ này." } })),
    )
        .into_response()
}

/// Query-string parsing with a JSON error instead of axum's plain text.
pub(crate) struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::bad(
                "invalid_query",
                format!("Tham số truy vấn không hợp lệ: {}", e.body_text()),
            )),
        }
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let mqtt = s.shared.mqtt_connected.load(Ordering::Relaxed);
    let store = s.shared.store_ok();
    let status = if mqtt && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": mqtt && store, "mqtt_connected": mqtt, "store_writable": store })),
    )
        .into_response()
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.shared.metrics.render(),
    )
        .into_response()
}

async fn commune(State(s): State<ApiState>) -> impl IntoResponse {
    let c = &s.shared.config.commune;
    Json(json!({
        "id": c.id,
        "name": c.name,
        "province": c.province,
        "timezone": "Asia/Ho_Chi_Minh",
        "regime": s.shared.config.report.regime,
    }))
}

async fn villages(State(s): State<ApiState>) -> impl IntoResponse {
    Json(s.shared.config.villages.clone())
}

#[derive(Debug, Deserialize)]
struct IndicatorQuery {
    window: Option<String>,
    village: Option<String>,
    id: Option<String>,
}

pub(crate) fn parse_window(w: Option<&str>) -> Result<Window, ApiError> {
    match w {
        None => Ok(Window::Month),
        Some(w) => Window::parse(w).ok_or_else(|| {
            ApiError::bad(
                "invalid_window",
                format!("Khung thời gian `{w}` không hợp lệ: dùng today, 24h hoặc month."),
            )
        }),
    }
}

async fn indicators(
    State(s): State<ApiState>,
    Params(q): Params<IndicatorQuery>,
) -> Result<Response, ApiError> {
    let window = parse_window(q.window.as_deref())?;
    let sel = match q.village.as_deref() {
        None | Some("") | Some("commune") => ScopeSel::Commune,
        Some("all") => ScopeSel::All,
        Some(v) if s.shared.registry.has_village(v) => ScopeSel::Village(v),
        Some(v) => {
            return Err(ApiError::NotFound {
                code: "unknown_village",
                message: format!("Không có thôn/bản `{v}` trong cấu hình."),
            })
        }
    };
    let engine = s.shared.engine.read();
    if let Some(id) = q.id.as_deref() {
        if !engine.ids().any(|x| x == id) {
            return Err(ApiError::NotFound {
                code: "unknown_indicator",
                message: format!("Không có chỉ tiêu `{id}`."),
            });
        }
    }
    let now = Utc::now();
    let devices = s.shared.devices.read();
    let avail = |class, village: Option<&str>| devices.availability(class, village, now);
    let values = engine.values(window, sel, now, &avail, q.id.as_deref());
    Ok(Json(values).into_response())
}

async fn devices(State(s): State<ApiState>) -> impl IntoResponse {
    let list = s.shared.devices.read().list(Utc::now());
    Json(list)
}

#[derive(Debug, Deserialize)]
struct DeadLetterQuery {
    limit: Option<usize>,
    before: Option<i64>,
    reason: Option<String>,
}

async fn dead_letters(
    State(s): State<ApiState>,
    Params(q): Params<DeadLetterQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let reason = match q.reason.as_deref() {
        None | Some("") => None,
        Some(r) => Some(Reason::parse(r).ok_or_else(|| {
            ApiError::bad("invalid_reason", format!("Mã lý do `{r}` không tồn tại."))
        })?),
    };
    let excerpt = s.shared.config.ingest.excerpt_bytes;
    let reader = Arc::clone(&s.reader);
    let before = q.before;
    let (items, counts) = tokio::task::spawn_blocking(move || {
        let store = reader.lock();
        Ok::<_, ApiError>((
            store.dead_letters(limit, before, reason, excerpt)?,
            store.dead_letter_counts()?,
        ))
    })
    .await
    .map_err(|_| ApiError::Task)??;
    let counts: serde_json::Map<String, serde_json::Value> = counts
        .into_iter()
        .map(|(r, n)| (r.code().to_owned(), json!(n)))
        .collect();
    Ok(Json(json!({ "items": items, "counts": counts })).into_response())
}
