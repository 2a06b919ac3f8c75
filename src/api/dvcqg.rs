//! `POST /api/procedure/dvcqg`: the one-stop software pushes what it sends
//! the national portal's adapter (`DongBoHoSoMC`, `CapNhatTienDoHoSoMC`),
//! with a dossier push token (docs/ACCESS.md). The body goes through the
//! commit pipeline exactly as the same message on MQTT
//! `ioc/{commune}/procedure/dvcqg` would, and the answer comes after the
//! commit, shaped like the adapter's (`error_code`, `message`, `result`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{guard::Caller, ApiError, ApiState};
use crate::model::Raw;
use crate::runtime::pipeline::Inbound;
use crate::sources::{Decoded, Decoder};

/// The HTTP way into the commit pipeline: the decoder (for the answer) and
/// a sender of the ingest queue, closed at shutdown before the journal
/// queue is drained (the writer stops when every sender is gone).
#[derive(Debug)]
pub struct PushPort {
    tx: Mutex<Option<mpsc::Sender<Inbound>>>,
    decoder: Decoder,
    topic: String,
}

impl PushPort {
    /// A port feeding `tx`, decoding with `decoder`.
    pub fn new(tx: mpsc::Sender<Inbound>, decoder: Decoder) -> Arc<PushPort> {
        let topic = format!("ioc/{}/procedure/dvcqg", decoder.registry().commune);
        Arc::new(PushPort {
            tx: Mutex::new(Some(tx)),
            decoder,
            topic,
        })
    }

    /// Refuse further pushes (shutdown): answered 503.
    pub fn close(&self) {
        self.tx.lock().take();
    }
}

fn unavailable(message: &str) -> ApiError {
    ApiError::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "ingest_unavailable",
        message: message.into(),
    }
}

/// Push the portal sync: `{"service": "DongBoHoSoMC" | "CapNhatTienDoHoSoMC", "data": [...]}`.
#[utoipa::path(post, path = "/api/procedure/dvcqg", tag = "procedure",
    request_body(content = String, content_type = "application/json",
        description = "The body the one-stop software sends the national portal's adapter (docs/PROTOCOL.md §2.7)"),
    responses(
        (status = 200, description = "Committed. `error_code` 0: every object accepted; 1: some refused (each kept as a dead letter, named in `result`)"),
        (status = 422, description = "The message as a whole is refused (kept as one dead letter): `error_code` 1, `reason`, `message`"),
        (status = 503, description = "`ingest_unavailable`: not committed (shutting down or the store is failing); send again")))]
pub(crate) async fn push(
    State(s): State<ApiState>,
    _c: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(port) = s.push.clone() else {
        return Err(unavailable("Máy chủ chưa sẵn sàng nhận hồ sơ."));
    };
    let raw = Raw {
        topic: port.topic.clone(),
        payload: body.to_vec(),
        received_at: Utc::now(),
        retained: false,
    };
    let answer = summary(port.decoder.decode(&raw));
    let (done, committed) = oneshot::channel::<()>();
    let tx = port.tx.lock().clone();
    let Some(tx) = tx else {
        return Err(unavailable(
            "Máy chủ đang dừng: hồ sơ chưa được ghi, hãy gửi lại sau.",
        ));
    };
    let sent = tx
        .send(Inbound {
            raw,
            ack: Some(Box::new(move || {
                let _ = done.send(());
            })),
        })
        .await;
    // Not held while waiting: the writer stops when every sender is gone.
    drop(tx);
    if sent.is_err() || committed.await.is_err() {
        return Err(unavailable(
            "Hồ sơ chưa được ghi (máy chủ đang dừng hoặc kho dữ liệu lỗi), hãy gửi lại sau.",
        ));
    }
    Ok(answer)
}

/// The answer for a decoded push: per object of `data[]`, accepted with
/// the events it maps to, or refused with the dead letter's reason and
/// Vietnamese message.
fn summary(decoded: Decoded) -> Response {
    let parts = match decoded {
        Decoded::One(Ok(_)) => {
            // An empty body: a `cleared` event, nothing to count.
            return Json(json!({"error_code": 0, "message": "Không có hồ sơ nào.", "result": []}))
                .into_response();
        }
        Decoded::One(Err(r)) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error_code": 1,
                    "reason": r.reason.code(),
                    "message": r.detail,
                    "result": [],
                })),
            )
                .into_response()
        }
        Decoded::Many(parts) => parts,
    };
    let mut result: Vec<Value> = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    let (mut good, mut bad) = (0usize, 0usize);
    for part in parts {
        let same = part.payload.is_some() && part.payload == last;
        match part.result {
            Ok(e) => {
                if same {
                    if let Some(Value::Array(events)) =
                        result.last_mut().and_then(|o| o.get_mut("events"))
                    {
                        events.push(Value::from(e.kind));
                    }
                } else {
                    good += 1;
                    result.push(json!({
                        "MaHoSo": e.attr_str("dossier_id"),
                        "accepted": true,
                        "events": [e.kind],
                    }));
                }
            }
            Err(r) => {
                bad += 1;
                let id = part
                    .payload
                    .as_deref()
                    .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                    .and_then(|v| v["data"][0]["MaHoSo"].as_str().map(str::to_owned));
                result.push(json!({
                    "MaHoSo": id,
                    "accepted": false,
                    "reason": r.reason.code(),
                    "message": r.detail,
                }));
            }
        }
        last = part.payload;
    }
    let message = if bad == 0 {
        format!("Đã nhận {good} hồ sơ.")
    } else {
        format!("Đã nhận {good} hồ sơ, {bad} hồ sơ bị từ chối (đã lưu vào bản tin lỗi).")
    };
    Json(json!({
        "error_code": if bad == 0 { 0 } else { 1 },
        "message": message,
        "result": result,
    }))
    .into_response()
}
