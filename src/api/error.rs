//! JSON errors for the HTTP API: a stable code and a Vietnamese message.

use axum::http::StatusCode;
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
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] crate::journal::JournalError),
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
        let (status, code, message) = match &self {
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
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}
