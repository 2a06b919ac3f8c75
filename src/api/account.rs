//! `/api/auth/*`: login, logout, who am I, kiosk tokens.

use std::sync::Arc;

use axum::extract::{FromRequest, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::guard::{peer, Caller};
use super::{ApiError, ApiState, Body, PathParam};
use crate::auth::store::valid_username;
use crate::auth::{NewAudit, Outcome};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// What the audit log records as the name tried: a name that cannot be a
/// user name (it may be a password typed in the wrong field) is not kept.
fn attempted(name: &str) -> &str {
    if valid_username(name) {
        name
    } else {
        "(tên không hợp lệ)"
    }
}

/// `POST /api/auth/login`. In order: a place among the logins being
/// checked (503 `login_busy` at once when full), the lockout of this name
/// from this address and of the address (429; refused attempts are counted
/// and audited once per pair and window), the attempt counted, then the
/// password checked on one of the few hashing slots.
#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = LoginBody,
    responses((status = 200, description = "A session token, its role and expiry"),
        (status = 401, description = "`invalid_credentials`"),
        (status = 429, description = "`locked_out`, with Retry-After"),
        (status = 503, description = "`login_busy`")))]
pub(crate) async fn login(
    State(s): State<ApiState>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let addr = peer(req.extensions());
    let Body(body): Body<LoginBody> = Body::from_request(req, &s).await?;
    let name = body.username.trim().to_lowercase();
    let audit = |outcome: Outcome, detail: &str| {
        s.accounts.audit(&NewAudit {
            actor: attempted(&name),
            role: None,
            addr: Some(addr.to_string()),
            action: "login",
            object: None,
            outcome,
            detail: Some(detail),
        });
    };
    let Ok(admission) = s.limiter.admit() else {
        s.shared.metrics.login_busy.inc();
        return Err(ApiError::LoginBusy);
    };
    let attempt = match s.limiter.begin(attempted(&name), addr) {
        Ok(a) => a,
        Err(locked) => {
            // One audit row per name and address (or per address, when it
            // is the address that is locked) and window: the first at once,
            // the rest as one count (server::audit_refusals).
            if s.limiter.refused(attempted(&name), addr, &locked) {
                audit(
                    Outcome::Denied,
                    if locked.address {
                        "locked out (address)"
                    } else {
                        "locked out"
                    },
                );
            }
            return Err(ApiError::LockedOut(locked.retry_after.as_secs().max(1)));
        }
    };
    let Some(slot) = admission.hashing().await else {
        return Err(ApiError::Task);
    };
    let accounts = Arc::clone(&s.accounts);
    let (n, p) = (name.clone(), body.password);
    let session = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        accounts.login(&n, &p)
    })
    .await
    .map_err(|_| ApiError::Task)??;
    drop(admission);
    match session {
        Some(session) => {
            s.limiter.succeeded(attempt);
            audit(Outcome::Ok, "password");
            Ok(Json(session).into_response())
        }
        None => {
            audit(
                Outcome::Denied,
                if attempt.locked_now {
                    "wrong credentials; now locked out"
                } else {
                    "wrong credentials"
                },
            );
            Err(ApiError::Status {
                status: StatusCode::UNAUTHORIZED,
                code: "invalid_credentials",
                message: "Tên đăng nhập hoặc mật khẩu không đúng.".into(),
            })
        }
    }
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts",
    responses((status = 204, description = "The session token is revoked")))]
pub(crate) async fn logout(State(s): State<ApiState>, c: Caller) -> Result<Response, ApiError> {
    let Some(id) = c.principal.token_id else {
        return Err(ApiError::Unauthorized);
    };
    s.accounts.revoke(id)?;
    s.accounts.audit(&NewAudit::by(
        &c.principal,
        c.addr_string(),
        "logout",
        None,
        Outcome::Ok,
    ));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/api/auth/me", tag = "accounts",
    responses((status = 200, description = "Who is calling: username, role, via")))]
pub(crate) async fn me(c: Caller) -> impl IntoResponse {
    Json(json!({
        "username": c.principal.name,
        "role": c.principal.role,
        "via": c.principal.via,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct KioskBody {
    label: String,
}

#[utoipa::path(post, path = "/api/auth/kiosk-tokens", tag = "accounts", request_body = KioskBody,
    responses((status = 201, description = "The kiosk token (shown once) and its record")))]
pub(crate) async fn kiosk_create(
    State(s): State<ApiState>,
    c: Caller,
    Body(body): Body<KioskBody>,
) -> Result<Response, ApiError> {
    let (kiosk, token) = super::admin::blocking(&s, &c, move |a, actor| {
        crate::app::kiosk::create(a, actor, &body.label)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "kiosk": kiosk })),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/auth/kiosk-tokens", tag = "accounts",
    responses((status = 200, description = "Kiosk tokens (without the secrets)")))]
pub(crate) async fn kiosk_list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(s.accounts.kiosk_tokens()?).into_response())
}

#[utoipa::path(delete, path = "/api/auth/kiosk-tokens/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "Kiosk token id", example = 1)),
    responses((status = 204, description = "Revoked"), (status = 404, description = "`unknown_token`")))]
pub(crate) async fn kiosk_revoke(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let done = super::admin::blocking(&s, &c, move |a, actor| {
        crate::app::kiosk::revoke(a, actor, id)
    })
    .await?;
    if !done {
        return Err(ApiError::NotFound {
            code: "unknown_token",
            message: format!("Không có mã màn hình số {id} còn hiệu lực."),
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/api/auth/push-tokens", tag = "accounts", request_body = KioskBody,
    responses((status = 201, description = "The dossier push token (shown once) and its record")))]
pub(crate) async fn push_create(
    State(s): State<ApiState>,
    c: Caller,
    Body(body): Body<KioskBody>,
) -> Result<Response, ApiError> {
    let (push, token) = super::admin::blocking(&s, &c, move |a, actor| {
        crate::app::push::create(a, actor, &body.label)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "push": push })),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/auth/push-tokens", tag = "accounts",
    responses((status = 200, description = "Dossier push tokens (without the secrets)")))]
pub(crate) async fn push_list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(s.accounts.push_tokens()?).into_response())
}

#[utoipa::path(delete, path = "/api/auth/push-tokens/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "Push token id", example = 1)),
    responses((status = 204, description = "Revoked"), (status = 404, description = "`unknown_token`")))]
pub(crate) async fn push_revoke(
    State(s): State<ApiState>,
    c: Caller,
    PathParam(id): PathParam<i64>,
) -> Result<Response, ApiError> {
    let done = super::admin::blocking(&s, &c, move |a, actor| {
        crate::app::push::revoke(a, actor, id)
    })
    .await?;
    if !done {
        return Err(ApiError::NotFound {
            code: "unknown_token",
            message: format!("Không có mã đẩy hồ sơ số {id} còn hiệu lực."),
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
