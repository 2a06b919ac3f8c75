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
use crate::auth::{AccountError, AuditQuery, NewAudit, Outcome, Role};

pub(crate) async fn users(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(s.accounts.users()?).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    role: String,
}

#[derive(Debug, Deserialize)]
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

/// Run an account change off the async threads (argon2 is slow on
/// purpose), audit it, and answer.
async fn change(
    s: &ApiState,
    c: &Caller,
    action: &'static str,
    object: String,
    f: impl FnOnce(&crate::auth::Accounts) -> Result<(), AccountError> + Send + 'static,
) -> Result<Response, ApiError> {
    let accounts = Arc::clone(&s.accounts);
    let result = tokio::task::spawn_blocking(move || f(&accounts))
        .await
        .map_err(|_| ApiError::Task)?;
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    s.accounts.audit(&NewAudit::by(
        &c.principal,
        c.addr_string(),
        action,
        Some(&object),
        outcome,
    ));
    result.map_err(refuse)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn user_create(
    State(s): State<ApiState>,
    c: Caller,
    Body(u): Body<NewUser>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&u.role).ok_or_else(|| {
        ApiError::bad(
            "invalid_role",
            format!(
                "Vai trò `{}` không có: dùng viewer, operator hoặc admin.",
                u.role
            ),
        )
    })?;
    let name = u.username.trim().to_lowercase();
    let object = name.clone();
    let res = change(&s, &c, "user_create", object, move |a| {
        a.add_user(&name, role, &u.password)
    })
    .await?;
    Ok((StatusCode::CREATED, res).into_response())
}

pub(crate) async fn user_password(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(name): PathParam<String>,
    Body(p): Body<NewPassword>,
) -> Result<Response, ApiError> {
    let n = name.clone();
    change(&s, &c, "user_password", name, move |a| {
        a.set_password(&n, &p.password)
    })
    .await
}

pub(crate) async fn user_disable(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    let n = name.clone();
    change(&s, &c, "user_disable", name, move |a| a.disable(&n)).await
}

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
