//! The province wall screen and what its failover needs (docs/SCREEN.md,
//! "Province").
//!
//! - `/province/`: the page, `dashboards/province/` embedded in the binary
//!   (debug builds read the source tree); `/province/common/…` is the
//!   commune screen's folder (`dashboards/ioc/`), whose formatting and
//!   fitting modules the province page imports rather than copies.
//! - CORS on `/api/province/*`: a page served by one instance reads the
//!   overview of another when its own stops answering (the overview names
//!   `peers`). Only the configured peers' origins may read, only with GET
//!   (and HEAD), only with the `Authorization` header besides the simple
//!   ones; credentials (cookies) are never allowed, the screen sends its
//!   token as a bearer header.

use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::dashboard::{serve_embedded, Screen};

/// `dashboards/province/`, embedded in release builds.
#[derive(RustEmbed)]
#[folder = "dashboards/province/"]
struct ProvinceScreen;

/// A `province.peers` entry that is not a base URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScreenError {
    /// Not `http://host[:port][/path]` or `https://…`.
    #[error("province.peers: `{0}` is not an http(s) base URL (e.g. http://10.0.0.2:8080)")]
    BadPeer(String),
}

/// The browser origin of a peer's base URL: `scheme://host[:port]`, lower
/// case, the default port left out (as browsers send `Origin`).
pub fn origin(peer: &str) -> Result<HeaderValue, ScreenError> {
    let bad = || ScreenError::BadPeer(peer.to_owned());
    let uri: Uri = peer.trim().parse().map_err(|_| bad())?;
    let scheme = uri
        .scheme_str()
        .map(str::to_ascii_lowercase)
        .filter(|s| s == "http" || s == "https")
        .ok_or_else(bad)?;
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(bad());
    }
    let host = authority.host().to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    let text = match uri.port_u16() {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    };
    HeaderValue::from_str(&text).map_err(|_| bad())
}

/// The CORS layer for `/api/province/*`: GET/HEAD from the peers' origins.
/// The peers are checked when the config loads (`province.peers`); one
/// that still is not a base URL is left out, with a warning.
pub fn cors(peers: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = peers
        .iter()
        .filter_map(|p| {
            origin(p)
                .inspect_err(|e| tracing::warn!(error = %e, "peer left out of CORS"))
                .ok()
        })
        .collect();
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([header::AUTHORIZATION])
        .max_age(Duration::from_secs(600))
}

/// The page's Content-Security-Policy: the server's own
/// (`api::guard::CSP`) with the peers' origins added to `connect-src`, so
/// the page may read their overview when it fails over.
pub fn csp(peers: &[String]) -> String {
    let origins: Vec<String> = peers
        .iter()
        .filter_map(|p| origin(p).ok())
        .filter_map(|o| o.to_str().ok().map(str::to_owned))
        .collect();
    let extra = if origins.is_empty() {
        String::new()
    } else {
        format!(" {}", origins.join(" "))
    };
    crate::api::guard::CSP.replacen(
        "connect-src 'self'",
        &format!("connect-src 'self'{extra}"),
        1,
    )
}

/// The province screen's routes: `province_api` (the `/api/province/*`
/// routes, with their guards) under the peers' CORS; the page at
/// `/province/` (`/province` redirects there) with a CSP that lets it
/// reach the peers; and `/site/{id}/` for each of `sites` (the ids served
/// under `/site/{id}`): the commune screen's `index.html`, which a nested
/// router at `/site/{id}` does not answer (axum 0.8 matches `/site/{id}`
/// but not `/site/{id}/`). Merge the result into the province router
/// after the nested sites (`Router::merge`, not `nest`: absolute paths).
pub fn router<S>(province_api: Router<S>, peers: &[String], sites: &[String]) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let policy = HeaderValue::from_str(&csp(peers))
        .unwrap_or_else(|_| HeaderValue::from_static(crate::api::guard::CSP));
    let page: Router<S> = Router::new()
        .route(
            "/province",
            get(|| async { Redirect::permanent("province/") }),
        )
        .route("/province/", get(index))
        .route("/province/{*path}", get(file))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            policy,
        ));
    let mut commune_pages: Router<S> = Router::new();
    for id in sites {
        commune_pages = commune_pages.route(&format!("/site/{id}/"), get(site_index));
    }
    let commune_pages = commune_pages.layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::api::guard::CSP),
    ));
    province_api
        .layer(cors(peers))
        .merge(page)
        .merge(commune_pages)
}

async fn site_index(method: Method, headers: HeaderMap) -> Response {
    serve_embedded::<Screen>(&method, "index.html", &headers)
}

async fn index(method: Method, headers: HeaderMap) -> Response {
    serve_embedded::<ProvinceScreen>(&method, "index.html", &headers)
}

async fn file(method: Method, headers: HeaderMap, Path(path): Path<String>) -> Response {
    match path.strip_prefix("common/") {
        Some(rest) => serve_embedded::<Screen>(&method, rest, &headers),
        None => serve_embedded::<ProvinceScreen>(&method, &path, &headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// As src/province/mod.rs builds it: each site's own router nested at
    /// `/site/{id}` (with the commune screen as its fallback), then this.
    fn app() -> Router {
        let commune = Router::new()
            .route("/api/commune", get(|| async { "xa-001" }))
            .fallback(|m: Method, u: Uri, h: HeaderMap| async move {
                serve_embedded::<Screen>(&m, u.path(), &h)
            });
        let api = Router::new()
            .route(
                "/api/province/overview",
                get(|| async { axum::Json(serde_json::json!({"sites": []})) }),
            )
            .nest("/site/xa-001", commune);
        router(
            api,
            &[
                "http://127.0.0.1:18081/".into(),
                "https://B.example:443".into(),
                "not a url".into(),
            ],
            &["xa-001".into()],
        )
    }

    async fn send(req: Request<Body>) -> Response {
        app().oneshot(req).await.expect("infallible")
    }

    #[test]
    fn origins_are_as_browsers_send_them() {
        assert_eq!(
            origin("http://127.0.0.1:18081/").unwrap(),
            "http://127.0.0.1:18081"
        );
        assert_eq!(
            origin("HTTPS://Tinh.Example:443/ioc").unwrap(),
            "https://tinh.example"
        );
        assert_eq!(origin("http://[::1]:80").unwrap(), "http://[::1]");
        for bad in ["127.0.0.1:8080", "ftp://x", "http://u:p@x", "/province", ""] {
            assert_eq!(origin(bad), Err(ScreenError::BadPeer(bad.into())), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_peer_origin_may_read_the_overview_and_others_may_not() {
        let get_from = |o: &str| {
            Request::get("/api/province/overview")
                .header(header::ORIGIN, o)
                .body(Body::empty())
                .unwrap()
        };
        let r = send(get_from("http://127.0.0.1:18081")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://127.0.0.1:18081"
        );
        let r = send(get_from("https://b.example")).await;
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://b.example"
        );
        let r = send(get_from("http://127.0.0.1:9999")).await;
        assert!(r
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());

        // The preflight of a request with a bearer token.
        let pre = |o: &str, m: &str| {
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/api/province/overview")
                .header(header::ORIGIN, o)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, m)
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
                .body(Body::empty())
                .unwrap()
        };
        let r = send(pre("http://127.0.0.1:18081", "GET")).await;
        assert!(r.status().is_success(), "{}", r.status());
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://127.0.0.1:18081"
        );
        let methods = r.headers()[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap();
        assert!(
            methods.contains("GET") && !methods.contains("POST"),
            "{methods}"
        );
        assert!(r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("authorization"));
        assert!(r
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none());
        let r = send(pre("http://evil.example", "GET")).await;
        assert!(r
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }

    #[tokio::test]
    async fn the_page_and_the_commune_modules_it_imports_are_served() {
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        let r = send(get("/province")).await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "province/");
        for (path, ty) in [
            ("/province/", "text/html; charset=utf-8"),
            ("/province/js/main.js", "text/javascript; charset=utf-8"),
            ("/province/province.css", "text/css; charset=utf-8"),
            (
                "/province/common/js/format.js",
                "text/javascript; charset=utf-8",
            ),
            (
                "/province/common/js/fit.js",
                "text/javascript; charset=utf-8",
            ),
            ("/province/common/icon.svg", "image/svg+xml"),
        ] {
            let r = send(get(path)).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{path}");
        }
        for path in [
            "/province/nope.js",
            "/province/../Cargo.toml",
            "/province/common/../x",
        ] {
            assert_eq!(
                send(get(path)).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        let post = Request::post("/province/").body(Body::empty()).unwrap();
        assert_eq!(send(post).await.status(), StatusCode::METHOD_NOT_ALLOWED);
        // The page may read the peers (failover), nothing else.
        let r = send(get("/province/")).await;
        let policy = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            policy.contains("connect-src 'self' http://127.0.0.1:18081 https://b.example;"),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
    }

    #[tokio::test]
    async fn a_commune_screen_is_served_at_its_address_with_the_slash() {
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        let body = |r: Response| async move {
            let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            String::from_utf8_lossy(&b).into_owned()
        };
        let r = send(get("/site/xa-001/")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(body(r).await.contains("js/main.js"));
        let r = send(get("/site/xa-001/js/base.js")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            body(send(get("/site/xa-001/api/commune")).await).await,
            "xa-001"
        );
        assert_eq!(
            send(get("/site/xa-999/")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
