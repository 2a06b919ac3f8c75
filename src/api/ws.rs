//! `GET /api/ws`: the WebSocket upgrade. The token (query `token` or
//! `Authorization: Bearer`) is checked here; the connection itself is
//! served by [`crate::live::conn`], tracked so shutdown can close it with a
//! close frame and wait for it (axum's graceful shutdown does not).

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::guard::bearer;
use super::{ApiState, Params};
use crate::live::conn;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

#[utoipa::path(get, path = "/api/ws", tag = "live",
    params(WsQuery),
    responses((status = 101, description = "WebSocket of the live stream (PROTOCOL.md §7); the token may also come in an `auth` frame"),
        (status = 426, description = "`websocket_required`")))]
pub(crate) async fn ws(
    State(state): State<ApiState>,
    Params(query): Params<WsQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                Json(json!({"error": {
                    "code": "websocket_required",
                    "message": "Địa chỉ này chỉ nhận kết nối WebSocket."
                }})),
            )
                .into_response()
        }
    };
    let token = query.token.or_else(|| bearer(&headers));
    let principal = state.auth.authenticate(token.as_deref());
    if let Ok(p) = &principal {
        tracing::debug!(user = p.name, "websocket connection");
    }
    let limits = &state.shared.config.live;
    // Commands are small; the WebSocket layer refuses anything far larger
    // before it is buffered (close 1009).
    let max_in = limits.max_command_bytes.saturating_mul(4);
    let hub = state.live.clone();
    let auth = state.auth.clone();
    let cancel = state.ws.cancel.clone();
    let tracker = state.ws.tracker.clone();
    let slots = state.ws.slots.clone();
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(max_in)
        .max_frame_size(max_in)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            tracker.track_future(conn::serve(
                socket, hub, auth, slots, principal, token, cancel,
            ))
        })
}
