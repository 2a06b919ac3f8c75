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

use prometheus_client::metrics::counter::Counter;
use tower_http::catch_panic::CatchPanicLayer;

use super::{ApiError, ApiState};
use crate::auth::{AuthError, NewAudit, Outcome, Principal, Role, Via};

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
    /// The dossier push route: only a push token may call it, and a push
    /// token may call nothing else (whatever the role).
    pub push: bool,
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

/// The token of `Authorization: Bearer …` (the scheme is
/// case-insensitive, RFC 9110 §11.1).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
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
            && (req.method() == Method::GET || req.method() == Method::HEAD) =>
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
    let refused = if need.push != (principal.via == Via::Push) {
        Some(if need.push {
            "a dossier push token is required"
        } else {
            "a dossier push token may only push dossiers"
        })
    } else if principal.role < need.role {
        Some("role too low")
    } else {
        None
    };
    if let Some(why) = refused {
        let what = format!("{} {}", req.method(), req.uri().path());
        state.accounts.audit(&NewAudit {
            detail: Some(why),
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

/// The layers around every route, inside out: every error answer of the
/// API in JSON ([`super::error::json_errors`]), a handler's panic turned
/// into a JSON 500 and counted (`ioc_http_panics_total`), the security
/// headers.
pub(crate) fn outer_layers(app: axum::Router, panics: Counter) -> axum::Router {
    app.layer(axum::middleware::from_fn(super::error::json_errors))
        .layer(CatchPanicLayer::custom(move |panic| {
            panics.inc();
            super::error::panicked(panic)
        }))
        .layer(axum::middleware::from_fn(harden))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    async fn call(app: &axum::Router, uri: &str) -> (u16, String, serde_json::Value) {
        use tower::ServiceExt;
        let res = app
            .clone()
            .oneshot(Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            ctype,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn a_panic_becomes_a_counted_json_500_and_rejections_become_json() {
        use axum::routing::get;
        let panics = Counter::default();
        let app = outer_layers(
            axum::Router::new()
                .route(
                    "/api/boom",
                    get(|| async {
                        if true {
                            panic!("boom");
                        }
                    }),
                )
                .route(
                    "/api/n/{id}",
                    get(
                        |axum::extract::Path(id): axum::extract::Path<i64>| async move {
                            id.to_string()
                        },
                    ),
                ),
            panics.clone(),
        );
        let (status, ctype, v) = call(&app, "/api/boom").await;
        assert_eq!((status, ctype.as_str()), (500, "application/json"));
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(panics.get(), 1);
        let (status, ctype, v) = call(&app, "/api/n/abc").await;
        assert_eq!((status, ctype.as_str()), (400, "application/json"), "{v}");
        assert_eq!(v["error"]["code"], "bad_request");
        let (status, _, v) = call(&app, "/api/nowhere").await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("not_found"))
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR   abc "] {
            assert_eq!(bearer(&auth(v)).as_deref(), Some("abc"), "{v}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer(&auth(v)), None, "{v}");
        }
    }
}
