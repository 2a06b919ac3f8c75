//! Access control and hardening for every route: the bearer-token guard
//! (401 without a valid token, 403 below the route's role, refusals of
//! actions written to the audit log), security headers, and `no-store` on
//! API answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::auth::{AuthError, NewAudit, Outcome, Principal, Role};

/// Content-Security-Policy of every answer: everything from this server
/// only (the wall screen has no CDN), no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What a group of routes needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    /// Lowest role allowed.
    pub role: Role,
    /// Readable without a token when `auth.public_read` is on.
    pub public_read: bool,
}

/// Who called: the principal the guard let through and the peer address.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub principal: Principal,
    pub addr: IpAddr,
}

impl Caller {
    pub fn addr_string(&self) -> Option<String> {
        Some(self.addr.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// The peer address of a request (the TCP peer: a proxy in front must be
/// trusted explicitly, which is not supported yet).
pub(crate) fn peer(req_extensions: &axum::http::Extensions) -> IpAddr {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The token of `Authorization: Bearer …`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The guard (`route_layer` with `from_fn_with_state`).
pub(crate) async fn guard(
    State((state, need)): State<(ApiState, Need)>,
    mut req: Request,
    next: Next,
) -> Response {
    let addr = peer(req.extensions());
    let principal = match bearer(req.headers()) {
        None if need.public_read
            && state.shared.config.auth.public_read
            && req.method() == Method::GET =>
        {
            Principal::anonymous()
        }
        None => return ApiError::Unauthorized.into_response(),
        Some(token) => match state.accounts.check(&token) {
            Ok(p) => p,
            Err(AuthError::Unavailable) => {
                return ApiError::Status {
                    status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    message: "Kho dữ liệu tạm thời không truy cập được, vui lòng thử lại sau."
                        .into(),
                }
                .into_response()
            }
            Err(_) => return ApiError::Unauthorized.into_response(),
        },
    };
    if principal.role < need.role {
        let what = format!("{} {}", req.method(), req.uri().path());
        state.accounts.audit(&NewAudit {
            detail: Some("role too low"),
            ..NewAudit::by(
                &principal,
                Some(addr.to_string()),
                "forbidden",
                Some(&what),
                Outcome::Denied,
            )
        });
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Caller { principal, addr });
    next.run(req).await
}

/// Security headers on every answer, and `no-store` on the API's.
pub(crate) async fn harden(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/") || req.uri().path() == "/metrics";
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if api {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}
