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
