//! JSON errors for the HTTP API: a stable code and a Vietnamese message.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is invalid.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Vietnamese message.
        message: String,
    },
    /// Nothing with that id.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Vietnamese message.
        message: String,
    },
    /// No valid token.
    #[error("unauthorized")]
    Unauthorized,
    /// The role does not allow it.
    #[error("forbidden")]
    Forbidden,
    /// Too many failed logins: try again later.
    #[error("locked out for {0} s")]
    LockedOut(u64),
    /// Too many logins are being checked: try again in a second.
    #[error("login busy")]
    LoginBusy,
    /// Any other refusal with its own status.
    #[error("{message}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// Vietnamese message.
        message: String,
    },
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] crate::journal::JournalError),
    /// The account store failed.
    #[error("account store error: {0}")]
    Accounts(#[from] crate::auth::AccountError),
    /// A blocking task failed.
    #[error("internal task failed")]
    Task,
}

impl ApiError {
    /// A 400 with a code and message.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut extra: Vec<(header::HeaderName, String)> = Vec::new();
        let (status, code, message) = match &self {
            ApiError::Unauthorized => {
                extra.push((header::WWW_AUTHENTICATE, "Bearer".into()));
                (
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Cần đăng nhập: thiếu mã truy cập, hoặc mã đã hết hạn hay bị thu hồi."
                        .to_string(),
                )
            }
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Tài khoản này không có quyền thực hiện thao tác này.".to_string(),
            ),
            ApiError::LockedOut(secs) => {
                extra.push((header::RETRY_AFTER, secs.to_string()));
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "locked_out",
                    format!("Đăng nhập sai quá nhiều lần; hãy thử lại sau {secs} giây."),
                )
            }
            ApiError::LoginBusy => {
                extra.push((header::RETRY_AFTER, "1".into()));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "login_busy",
                    "Đang có quá nhiều lượt đăng nhập; hãy thử lại sau giây lát.".to_string(),
                )
            }
            ApiError::Status {
                status,
                code,
                message,
            } => (*status, *code, message.clone()),
            ApiError::Accounts(e) => {
                tracing::error!(error = %e, "account store error while answering a request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "Kho dữ liệu tạm thời không truy cập được, vui lòng thử lại sau.".to_string(),
                )
            }
            ApiError::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, *code, message.clone())
            }
            ApiError::NotFound { code, message } => (StatusCode::NOT_FOUND, *code, message.clone()),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store error while answering a request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "Kho dữ liệu tạm thời không truy cập được, vui lòng thử lại sau.".to_string(),
                )
            }
            ApiError::Task => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Lỗi nội bộ, vui lòng thử lại.".to_string(),
            ),
        };
        let mut response = (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response();
        for (name, value) in extra {
            if let Ok(v) = header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

/// Whether answers under this path are JSON: the API (not `/api/` itself,
/// which belongs to the static files, PROTOCOL.md §6.1), the probes and
/// `/metrics` (its errors; the metrics text itself is not JSON).
fn json_path(path: &str) -> bool {
    (path.starts_with("/api/") && path != "/api/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The stable code and Vietnamese message of an error status that no
/// handler put in JSON (an extractor's rejection, a layer's refusal).
fn status_text(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad_request", "Yêu cầu không hợp lệ."),
        401 => ("unauthorized", "Cần đăng nhập."),
        403 => ("forbidden", "Không có quyền thực hiện thao tác này."),
        404 => ("not_found", "Không có địa chỉ này."),
        405 => (
            "method_not_allowed",
            "Phương thức không được hỗ trợ ở địa chỉ này.",
        ),
        408 => (
            "request_timeout",
            "Yêu cầu mất quá nhiều thời gian và đã bị dừng.",
        ),
        411 => ("length_required", "Thiếu độ dài nội dung yêu cầu."),
        413 => ("body_too_large", "Nội dung yêu cầu quá lớn."),
        414 => ("uri_too_long", "Địa chỉ yêu cầu quá dài."),
        415 => (
            "unsupported_media_type",
            "Kiểu nội dung không được hỗ trợ: dùng application/json.",
        ),
        422 => ("invalid_body", "Nội dung yêu cầu không hợp lệ."),
        426 => (
            "websocket_required",
            "Địa chỉ này chỉ nhận kết nối WebSocket.",
        ),
        429 => (
            "too_many_requests",
            "Quá nhiều yêu cầu, vui lòng thử lại sau.",
        ),
        431 => ("headers_too_large", "Phần đầu yêu cầu quá lớn."),
        503 => (
            "unavailable",
            "Dịch vụ tạm thời không đáp ứng được, vui lòng thử lại sau.",
        ),
        s if s >= 500 => ("internal", "Lỗi nội bộ, vui lòng thử lại."),
        _ => ("error", "Yêu cầu không thực hiện được."),
    }
}

/// The JSON answer for an error status that carries no detail of its own.
pub(crate) fn status_answer(status: StatusCode) -> Response {
    let (code, message) = status_text(status);
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// Every error answer under a JSON path is JSON: a rejection that an
/// extractor or a layer answered in plain text (or with no body) becomes
/// `{"error":{"code","message"}}` with the same status and headers.
pub(crate) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let json = json_path(req.uri().path());
    let res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json || is_json || res.status().as_u16() < 400 {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Rejection texts are short; anything longer is cut.
    let detail = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let (code, message) = status_text(parts.status);
    let message = if detail.is_empty() {
        message.to_owned()
    } else {
        format!("{message} ({detail})")
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": { "code": code, "message": message } }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The answer to a handler that panicked: a JSON 500 (the panic message
/// goes to the log, not to the caller).
pub(crate) fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "an HTTP handler panicked");
    ApiError::Task.into_response()
}
