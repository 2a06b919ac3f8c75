//! The wall screen's static files at `/`: the copy of `dashboards/ioc/`
//! embedded in the binary at build time (so the single binary is the whole
//! install), or, for development, a directory on disk when
//! `http.dashboard_dir` is set and exists.
//!
//! Missing files answer an empty `404`, methods other than `GET`/`HEAD` an
//! empty `405` (docs/PROTOCOL.md §6), like the directory service does.

use std::path::PathBuf;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rust_embed::RustEmbed;
use tower_http::services::ServeDir;

use crate::config::Config;

/// `dashboards/ioc/`, embedded in release builds (debug builds read the
/// same folder of the source tree, so edits show without a rebuild).
#[derive(RustEmbed)]
#[folder = "dashboards/ioc/"]
pub(crate) struct Screen;

/// The directory that overrides the embedded screen, if any.
pub fn disk_dir(config: &Config) -> Option<PathBuf> {
    let dir = config.http.dashboard_dir.as_ref()?;
    if dir.is_dir() {
        Some(dir.clone())
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "http.dashboard_dir does not exist; serving the embedded wall screen"
        );
        None
    }
}

/// The printable report page (`/reports/{period}`): one file,
/// `report.html`, for every period (its script reads the period from the
/// address).
async fn report_page(dir: Option<PathBuf>, method: Method, headers: HeaderMap) -> Response {
    if let Some(dir) = dir {
        return match tokio::fs::read(dir.join("report.html")).await {
            Ok(body) => {
                ([(header::CONTENT_TYPE, content_type("report.html"))], body).into_response()
            }
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        };
    }
    embedded(method, Uri::from_static("/report.html"), headers).await
}

/// Attach the wall screen as the router's fallback.
pub fn attach<S: Clone + Send + Sync + 'static>(router: Router<S>, config: &Config) -> Router<S> {
    let dir = disk_dir(config);
    let router = router.route(
        "/reports/{period}",
        axum::routing::get(move |method: Method, headers: HeaderMap| {
            report_page(dir.clone(), method, headers)
        }),
    );
    match disk_dir(config) {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "serving the wall screen from disk");
            router.fallback_service(ServeDir::new(dir))
        }
        None => router.fallback(embedded),
    }
}

/// Content type by extension, for the kinds of files the screen ships.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn embedded(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    serve_embedded::<Screen>(&method, uri.path(), &headers)
}

/// A file of the embedded folder `E` at `path` (relative to the folder;
/// a directory gives its `index.html`), with its content type, an `ETag`
/// and `Cache-Control: no-cache`; `404` for a missing file or a path with
/// empty, `.` or `..` segments, `405` for methods other than GET and HEAD.
/// The province screen (`province::screen`) serves its files with it too.
pub(crate) fn serve_embedded<E: RustEmbed>(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let mut path = path.trim_start_matches('/').to_owned();
    if path.is_empty() || path.ends_with('/') {
        path.push_str("index.html");
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.contains('\\'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(file) = E::get(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut out = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(&path))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let h = out.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every load: a new binary serves a new screen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_is_embedded_with_module_content_types() {
        assert!(Screen::get("index.html").is_some());
        assert!(Screen::iter().any(|p| p.ends_with(".js")));
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
    }
}
