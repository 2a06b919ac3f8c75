//! Admin routes: users and the audit log (read only: no route edits or
//! deletes an entry).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::guard::Caller;
use super::{ApiError, ApiState, Body, Params, PathParam};
use crate::app::{users, Actor, AppError};
use crate::auth::{AccountError, Accounts, AuditQuery};

#[utoipa::path(get, path = "/api/users", tag = "accounts",
    responses((status = 200, description = "Users with role and state")))]
pub(crate) async fn users(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(s.accounts.users()?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    role: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewPassword {
    password: String,
}

/// Account errors that are the caller's fault become 400/404/409.
fn refuse(e: AccountError) -> ApiError {
    let message = e.to_string();
    match e {
        AccountError::InvalidName(_) => ApiError::bad("invalid_username", message),
        AccountError::WeakPassword => ApiError::bad("weak_password", message),
        AccountError::Exists(_) => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "user_exists",
            message,
        },
        AccountError::LastAdmin(_) => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "last_admin",
            message,
        },
        AccountError::NoSuchUser(_) => ApiError::NotFound {
            code: "unknown_user",
            message,
        },
        other => ApiError::Accounts(other),
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        let message = e.to_string();
        match e {
            AppError::InvalidRole(_) => ApiError::bad("invalid_role", message),
            AppError::InvalidLabel => ApiError::bad("invalid_label", message),
            AppError::Accounts(e) => refuse(e),
            AppError::Journal(e) => ApiError::Store(e),
            AppError::InvalidSilence(_) => ApiError::bad("invalid_silence", message),
            AppError::Alerts(e) => {
                tracing::error!(error = %e, "alerts store failed");
                ApiError::Status {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    message: "Kho dữ liệu cảnh báo đang lỗi, hãy thử lại sau.".into(),
                }
            }
            AppError::Report(e) => super::reports::refuse(e),
            AppError::Submit(e) => super::report_out::refuse_submit(e),
            AppError::Broadcast(e) => super::broadcasts::refuse(e),
        }
    }
}

/// Run a use case off the async threads (argon2 is slow on purpose; SQLite
/// blocks) as the caller, and map its error.
pub(crate) async fn blocking<T: Send + 'static>(
    s: &ApiState,
    c: &Caller,
    f: impl FnOnce(&Accounts, &Actor) -> Result<T, AppError> + Send + 'static,
) -> Result<T, ApiError> {
    let accounts = Arc::clone(&s.accounts);
    let actor = Actor::caller(&c.principal, c.addr_string());
    Ok(tokio::task::spawn_blocking(move || f(&accounts, &actor))
        .await
        .map_err(|_| ApiError::Task)??)
}

#[utoipa::path(post, path = "/api/users", tag = "accounts", request_body = NewUser,
    responses((status = 201, description = "Created"), (status = 400, description = "Invalid name, role or password"),
        (status = 409, description = "The name exists")))]
pub(crate) async fn user_create(
    State(s): State<ApiState>,
    c: Caller,
    Body(u): Body<NewUser>,
) -> Result<Response, ApiError> {
    let role = users::parse_role(&u.role)?;
    blocking(&s, &c, move |a, actor| {
        users::add(a, actor, &u.username, role, &u.password)
    })
    .await?;
    Ok(StatusCode::CREATED.into_response())
}

#[utoipa::path(post, path = "/api/users/{name}/password", tag = "accounts", request_body = NewPassword,
    params(("name" = String, Path, description = "User name", example = "admin")),
    responses((status = 204, description = "Changed; the user's sessions are revoked")))]
pub(crate) async fn user_password(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(name): PathParam<String>,
    Body(p): Body<NewPassword>,
) -> Result<Response, ApiError> {
    blocking(&s, &c, move |a, actor| {
        users::set_password(a, actor, &name, &p.password)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/api/users/{name}/disable", tag = "accounts",
    params(("name" = String, Path, description = "User name", example = "admin")),
    responses((status = 204, description = "Disabled; the user's tokens stop at once")))]
pub(crate) async fn user_disable(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    blocking(&s, &c, move |a, actor| users::disable(a, actor, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/api/audit", tag = "accounts",
    responses((status = 200, description = "Audit entries, newest first (query: action, actor, limit, before)")))]
pub(crate) async fn audit(
    State(s): State<ApiState>,
    Params(q): Params<AuditQuery>,
) -> Result<Response, ApiError> {
    let accounts = Arc::clone(&s.accounts);
    let entries = tokio::task::spawn_blocking(move || accounts.audit_log(&q))
        .await
        .map_err(|_| ApiError::Task)??;
    Ok(Json(entries).into_response())
}
