//! The HTTP API (axum): indicators, devices, dead letters, villages, health
//! and metrics, and the wall screen's static files at `/`.

mod account;
mod admin;
mod alerts;
mod broadcasts;
pub(crate) mod dashboard;
pub mod dvcqg;
mod error;
pub mod guard;
mod history;
mod report_out;
mod reports;
mod routes;
pub mod serve;
mod warnings;
mod ws;

pub use error::ApiError;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use chrono::Utc;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Accounts, Authenticator, LoginLimiter};
use crate::indicators::{ScopeSel, Window};
use crate::journal::AckOutcome;
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
    /// A read-write connection for operators' actions (acknowledgements).
    pub actions: Arc<Mutex<Store>>,
    /// A read-write connection to the alerts tables (operators' actions,
    /// lists).
    pub alerts: Arc<Mutex<crate::alerts::AlertStore>>,
    /// The live hub behind `/api/ws`.
    pub live: Arc<Hub>,
    /// Users, tokens, audit log.
    pub accounts: Arc<Accounts>,
    /// Who is calling (the WebSocket asks this; it is `accounts`).
    pub auth: Arc<dyn Authenticator>,
    /// Failed-login counting.
    pub limiter: Arc<LoginLimiter>,
    /// WebSocket tasks, closed and awaited on shutdown.
    pub ws: WsTasks,
    /// Official warnings: validator, submission, reads.
    pub warnings: Arc<crate::warnings::Service>,
    /// The way into the commit pipeline for `POST /api/procedure/dvcqg`
    /// (`None`: answered 503).
    pub push: Option<Arc<dvcqg::PushPort>>,
}

/// The WebSocket connections' tasks, their slots and the token that
/// closes them.
#[derive(Debug, Clone)]
pub struct WsTasks {
    /// Tracks every connection task.
    pub tracker: TaskTracker,
    /// Cancelled when the server stops: connections send a close frame.
    pub cancel: CancellationToken,
    /// Connection slots (authenticated, and waiting for `auth`).
    pub slots: Arc<crate::live::session::Slots>,
}

/// The router: the route table (`routes.rs`: public probes, login and the
/// OpenAPI document; read routes for every signed-in role and for anyone
/// with `auth.public_read`; operator actions; admin routes), JSON 404/405
/// for the rest of `/api`, the wall screen. Every answer gets the security
/// headers.
pub fn router(state: ApiState) -> Router {
    let (api, _) = routes::table(&state);
    let http = &state.shared.config.http;
    let routes = api
        .route("/api/{*rest}", any(api_not_found))
        .method_not_allowed_fallback(method_not_allowed);
    let mut app = dashboard::attach(routes, &state.shared.config)
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.request_timeout_s.max(1)),
        ));
    if !http.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = http
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    guard::outer_layers(app, state.shared.metrics.http_panics.clone())
}

/// A JSON body with a JSON error (400 `invalid_body`, 413 `body_too_large`)
/// instead of axum's plain text.
pub(crate) struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::Status {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: "Nội dung yêu cầu quá lớn.".into(),
            }),
            Err(e) => Err(ApiError::bad(
                "invalid_body",
                format!("Nội dung yêu cầu không hợp lệ: {}", e.body_text()),
            )),
        }
    }
}

#[utoipa::path(post, path = "/api/dead-letters/{id}/ack", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id", example = 1)),
    responses((status = 200, description = "Acknowledged (or `already: true`)"),
        (status = 404, description = "`unknown_dead_letter`")))]
async fn ack_dead_letter(
    State(s): State<ApiState>,
    c: guard::Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.actions);
    let outcome = admin::blocking(&s, &c, move |accounts, actor| {
        crate::app::dead_letters::ack(&store.lock(), accounts, actor, id)
    })
    .await?;
    match outcome {
        AckOutcome::Acked { by, at } => {
            Ok(Json(json!({ "id": id, "acked_by": by, "acked_at": at })).into_response())
        }
        AckOutcome::Already { by, at } => Ok(Json(
            json!({ "id": id, "acked_by": by, "acked_at": at, "already": true }),
        )
        .into_response()),
        AckOutcome::NotFound => Err(ApiError::NotFound {
            code: "unknown_dead_letter",
            message: format!("Không có bản tin lỗi số {id}."),
        }),
    }
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "Không có địa chỉ API này.".into(),
    }
}

async fn method_not_allowed() -> Response {
    error::status_answer(StatusCode::METHOD_NOT_ALLOWED)
}

/// Path parameters with a JSON 400 `invalid_path` instead of axum's plain
/// text (`Invalid URL: Cannot parse…`).
pub(crate) struct PathParam<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for PathParam<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParam(v)),
            Err(e) => Err(ApiError::bad(
                "invalid_path",
                format!("Địa chỉ không hợp lệ: {}", e.body_text()),
            )),
        }
    }
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

#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The process runs")))]
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses((status = 200, description = "MQTT connected and the store writable"),
        (status = 503, description = "Not ready (same body)")))]
async fn readyz(State(s): State<ApiState>) -> Response {
    let mqtt = s.shared.mqtt_connected.load(Ordering::Relaxed);
    let store = s.shared.store_ok();
    let status = if mqtt && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body =
        json!({ "ready": mqtt && store, "mqtt_connected": mqtt, "store_writable": store });
    if crate::sinks::enabled(&s.shared) {
        // Informational: the time-series store never gates readiness.
        let m = &s.shared.metrics;
        body["influx"] = json!({
            "up": m.influx_up.get() == 1,
            "backlog_points": m.influx_backlog_points.get(),
            "max_backlog_points": m.influx_backlog_limit_points.get(),
            "dropped_points": m.influx_points_dropped.get(),
        });
    }
    if crate::uplink::enabled(&s.shared) {
        // Informational too: the commune works alone during an outage.
        let u = &s.shared.metrics.uplink;
        body["uplink"] = json!({
            "up": u.up.get() == 1,
            "cursor": u.cursor.get(),
            "head": u.head.get(),
            "lag_entries": u.lag_entries.get(),
            "lag_seconds": u.lag_seconds.get(),
        });
    }
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus / OpenMetrics text", content_type = "application/openmetrics-text")))]
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

#[utoipa::path(get, path = "/api/commune", tag = "site",
    responses((status = 200, description = "The commune: id, name, province, time zone, report regime")))]
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

#[utoipa::path(get, path = "/api/villages", tag = "site",
    responses((status = 200, description = "The villages of the config")))]
async fn villages(State(s): State<ApiState>) -> impl IntoResponse {
    Json(s.shared.config.villages.clone())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

#[utoipa::path(get, path = "/api/indicators", tag = "indicators", params(IndicatorQuery),
    responses((status = 200, description = "Indicator values (PROTOCOL.md §6)"),
        (status = 400, description = "`invalid_window`, `invalid_query`"),
        (status = 404, description = "`unknown_village`, `unknown_indicator`")))]
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
    let view = s.shared.view(Utc::now());
    if let Some(id) = q.id.as_deref() {
        if !view.engine().ids().any(|x| x == id) {
            return Err(ApiError::NotFound {
                code: "unknown_indicator",
                message: format!("Không có chỉ tiêu `{id}`."),
            });
        }
    }
    let values = view.indicators(window, sel, q.id.as_deref());
    Ok(Json(values).into_response())
}

#[utoipa::path(get, path = "/api/devices", tag = "devices",
    responses((status = 200, description = "Every device with its health")))]
async fn devices(State(s): State<ApiState>) -> impl IntoResponse {
    let list = s.shared.view(Utc::now()).device_list();
    Json(list)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadLetterQuery {
    limit: Option<usize>,
    before: Option<i64>,
    reason: Option<String>,
}

#[utoipa::path(get, path = "/api/dead-letters", tag = "dead letters", params(DeadLetterQuery),
    responses((status = 200, description = "Dead letters, newest first, with counts per reason"),
        (status = 400, description = "`invalid_reason`, `invalid_query`")))]
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
