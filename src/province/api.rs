//! The province's own HTTP routes: the overview of every commune, one
//! commune's copy in detail, the sealed reports per period, and the
//! probes (docs/PROVINCE.md §6). Each commune's own API and screen are
//! served under `/site/{commune}/` (`super::run`). The peers' screens read
//! these routes across origins through `super::screen::cors`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use super::reports;
use super::Province;
use crate::api::ApiError;
use crate::auth::AuthError;
use crate::indicators::{ScopeSel, Window};

/// The routes, with the province as state.
pub fn routes(p: Arc<Province>) -> Router {
    Router::new()
        .route("/api/province/overview", get(overview))
        .route("/api/province/sites/{id}", get(site))
        .route("/api/province/reports", get(report_list))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(p)
}

/// A viewer (or anyone, for GET with `auth.public_read`).
fn viewer(p: &Province, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    match crate::api::guard::bearer(headers) {
        None if p.public_read && (method == Method::GET || method == Method::HEAD) => Ok(()),
        None => Err(ApiError::Unauthorized),
        Some(token) => match p.accounts.check(&token) {
            Ok(_) => Ok(()),
            Err(AuthError::Unavailable) => Err(ApiError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "store_unavailable",
                message: "Kho dữ liệu tạm thời không truy cập được, vui lòng thử lại sau.".into(),
            }),
            Err(_) => Err(ApiError::Unauthorized),
        },
    }
}

/// One site as the overview lists it.
pub fn site_json(p: &Province, entry: &super::Entry, detail: bool) -> Value {
    let now = Utc::now();
    let mut v = json!({
        "id": entry.id,
        "name": entry.name,
        "file": entry.file.display().to_string(),
    });
    let site = match &entry.state {
        Err(e) => {
            v["status"] = "broken".into();
            v["error"] = e.clone().into();
            return v;
        }
        Ok(s) => s,
    };
    let copy = site.copy();
    let cfg = &site.shared.config;
    let (lat, lon) = {
        let pts: Vec<(f64, f64)> = cfg
            .villages
            .iter()
            .filter_map(|v| Some((v.lat?, v.lon?)))
            .collect();
        if pts.is_empty() {
            (None, None)
        } else {
            let n = pts.len() as f64;
            (
                Some(pts.iter().map(|p| p.0).sum::<f64>() / n),
                Some(pts.iter().map(|p| p.1).sum::<f64>() / n),
            )
        }
    };
    let (indicators, devices) = {
        let view = site.shared.view(now);
        let ind: Vec<Value> = view
            .indicators(Window::Month, ScopeSel::Commune, None)
            .into_iter()
            .map(|i| {
                json!({
                    "id": i.id, "name": i.name, "unit": i.unit, "value": i.value,
                    "target": i.target, "status": i.status, "period": i.period,
                })
            })
            .collect();
        let list = view.device_list();
        let up = list
            .iter()
            .filter(|d| d.registered && d.state.is_up())
            .count();
        let total = list.iter().filter(|d| d.registered).count();
        (ind, json!({ "up": up, "total": total }))
    };
    let mut levels = serde_json::Map::new();
    for l in 1..=5u8 {
        levels.insert(l.to_string(), 0.into());
    }
    let mut active = Vec::new();
    for w in site.warnings() {
        let in_force = w.state == crate::warnings::WarningState::Active
            && w.expires.is_none_or(|e| e.with_timezone(&Utc) > now);
        if !in_force {
            continue;
        }
        if let Some(l) = w.level {
            let k = l.get().to_string();
            let n = levels.get(&k).and_then(Value::as_u64).unwrap_or(0);
            levels.insert(k, (n + 1).into());
        }
        active.push(json!({
            "id": w.id, "level": w.level.map(|l| l.get()), "hazard": w.hazard,
            "event": w.event, "headline": w.headline_vi, "villages": w.villages,
        }));
    }
    let period = reports::due_period(now, cfg.report.regime);
    let report = reports::state(&site.reports(), &period, p.def.report_due_days);
    let lag = site.lag_s(now);
    let error = site
        .error
        .lock()
        .clone()
        .or_else(|| site.key_error().map(str::to_owned));
    v["status"] = "ok".into();
    v["error"] = error.into();
    v["connected"] = site
        .connected
        .load(std::sync::atomic::Ordering::Relaxed)
        .into();
    v["head_seq"] = copy.head.into();
    v["entries"] = copy.entries.into();
    v["duplicates"] = site
        .duplicates
        .load(std::sync::atomic::Ordering::Relaxed)
        .into();
    v["gaps"] = serde_json::to_value(&copy.gaps).unwrap_or_default();
    v["missing"] = copy.missing().into();
    v["last_entry_at"] = copy
        .last_at_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339())
        .into();
    v["lag_s"] = lag.into();
    v["stale"] = lag.is_none_or(|l| l > p.def.stale_after_s as i64).into();
    v["digest"] = format!("{:032x}", copy.digest).into();
    v["indicators"] = indicators.into();
    v["devices"] = devices;
    v["warnings"] = Value::Object(levels);
    v["active_warnings"] = active.into();
    v["report"] = serde_json::to_value(report).unwrap_or_default();
    // The commune's own alerts as they stand there (mirrored from its
    // `alert` entries): firing, and firing not yet acknowledged.
    let board = site.shared.alerts.get();
    let count = |k: &str| board.by_status.get(k).copied().unwrap_or(0);
    v["alerts"] = json!({
        "firing": count("firing_unack") + count("firing_ack"),
        "unacked": count("firing_unack"),
    });
    v["lat"] = lat.into();
    v["lon"] = lon.into();
    if detail {
        v["kinds"] = serde_json::to_value(&copy.kinds).unwrap_or_default();
    }
    v
}

async fn overview(State(p): State<Arc<Province>>, method: Method, headers: HeaderMap) -> Response {
    if let Err(e) = viewer(&p, &method, &headers) {
        return e.into_response();
    }
    let sites: Vec<Value> = p.sites.iter().map(|s| site_json(&p, s, false)).collect();
    Json(json!({
        "province": { "id": p.def.id, "name": p.def.name },
        "instance": p.def.instance,
        "peers": p.def.peers,
        "now": Utc::now().to_rfc3339(),
        "stream": { "connected": p.stream_connected() },
        "sites": sites,
    }))
    .into_response()
}

async fn site(
    State(p): State<Arc<Province>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = viewer(&p, &method, &headers) {
        return e.into_response();
    }
    match p.sites.iter().find(|s| s.id == id) {
        Some(s) => Json(site_json(&p, s, true)).into_response(),
        None => ApiError::Status {
            status: StatusCode::NOT_FOUND,
            code: "unknown_site",
            message: format!("Không có xã `{id}` trong cấu hình của tỉnh."),
        }
        .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct PeriodQuery {
    period: Option<String>,
}

async fn report_list(
    State(p): State<Arc<Province>>,
    Query(q): Query<PeriodQuery>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = viewer(&p, &method, &headers) {
        return e.into_response();
    }
    let now = Utc::now();
    let sites: Vec<Value> = p
        .sites
        .iter()
        .map(|e| match &e.state {
            Err(err) => json!({ "id": e.id, "name": e.name, "status": "broken", "error": err }),
            Ok(s) => {
                let period = q
                    .period
                    .clone()
                    .unwrap_or_else(|| reports::due_period(now, s.shared.config.report.regime));
                let checks: Vec<_> = s
                    .reports()
                    .into_iter()
                    .filter(|c| c.period == period)
                    .collect();
                json!({
                    "id": e.id, "name": e.name,
                    "state": reports::state(&checks, &period, p.def.report_due_days),
                    "received": checks,
                })
            }
        })
        .collect();
    Json(json!({ "sites": sites })).into_response()
}

async fn readyz(State(p): State<Arc<Province>>) -> Response {
    let broken = p.sites.iter().filter(|s| s.state.is_err()).count();
    let connected = p.stream_connected();
    let body = json!({
        "ready": connected,
        "status": if !connected { "stream_down" } else if broken > 0 { "degraded" } else { "ok" },
        "stream": { "connected": connected },
        "sites": { "ok": p.sites.len() - broken, "broken": broken },
    });
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(p): State<Arc<Province>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.render_metrics(),
    )
        .into_response()
}
