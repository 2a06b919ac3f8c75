//! `GET /api/indicators/{id}/history?from=&to=&step=&village=`: an indicator
//! over time, in buckets, from the persisted rollups.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, Params, PathParam};
use crate::indicators::HistoryPlan;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    village: Option<String>,
}

/// Largest number of buckets one request may ask for.
const MAX_BUCKETS: i64 = 5000;

fn parse_time(s: &str, name: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad(
                "invalid_time",
                format!("`{name}` phải là thời điểm RFC 3339, ví dụ 2026-11-01T00:00:00+07:00."),
            )
        })
}

/// Longest step: a year (longer ones would overflow the time arithmetic
/// and mean nothing for a commune's history).
pub(crate) const MAX_STEP_SECS: i64 = 366 * 86_400;

/// Parse `15m`, `1h`, `1d` (minutes, hours, days), at most
/// [`MAX_STEP_SECS`]. Any other text (non-ASCII included) is `None`.
pub(crate) fn parse_step(s: &str) -> Option<i64> {
    let unit = s.chars().last()?;
    let num = &s[..s.len() - unit.len_utf8()];
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs <= MAX_STEP_SECS).then_some(secs)
}

#[utoipa::path(get, path = "/api/indicators/{id}/history", tag = "indicators",
    params(("id" = String, Path, description = "Indicator id", example = "dossiers_received"), HistoryQuery),
    responses((status = 200, description = "Buckets of one indicator (PROTOCOL.md §6)"),
        (status = 400, description = "`invalid_step`, `step_too_fine`, `invalid_range`, `history_unsupported`"),
        (status = 404, description = "`unknown_indicator`, `unknown_village`")))]
pub(crate) async fn history(
    State(s): State<ApiState>,
    PathParam(id): PathParam<String>,
    Params(q): Params<HistoryQuery>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let to = match q.to.as_deref() {
        Some(t) => parse_time(t, "to")?,
        None => now,
    };
    let step = match q.step.as_deref() {
        None => 3600,
        Some(st) => parse_step(st).ok_or_else(|| {
            ApiError::bad(
                "invalid_step",
                format!("Bước `{st}` không hợp lệ: dùng dạng 15m, 1h hoặc 1d, tối đa 366d."),
            )
        })?,
    };
    // Default: the last 24 hours, ending with the bucket that holds `to`.
    let from = match q.from.as_deref() {
        Some(f) => parse_time(f, "from")?,
        None => to - Duration::hours(24) + Duration::seconds(step.min(86_400)),
    };
    if step % 60 != 0 {
        return Err(ApiError::bad(
            "invalid_step",
            "Bước phải là bội số của 1 phút.",
        ));
    }
    // Day buckets start at local midnight (+07:00).
    let from = if step % 86_400 == 0 {
        let local = from.timestamp() + 7 * 3600;
        Utc.timestamp_opt(local - local.rem_euclid(86_400) - 7 * 3600, 0)
            .single()
            .unwrap_or(from)
    } else {
        let f = from.timestamp();
        let unit = if step % 3600 == 0 { 3600 } else { 60 };
        Utc.timestamp_opt(f - f.rem_euclid(unit), 0)
            .single()
            .unwrap_or(from)
    };
    if from >= to {
        return Err(ApiError::bad("invalid_range", "`from` phải trước `to`."));
    }
    // Minute buckets are kept for about a day; older history is hourly.
    if step % 3600 != 0 && from < now - Duration::hours(25) {
        return Err(ApiError::bad(
            "step_too_fine",
            "Dữ liệu theo phút chỉ lưu khoảng 25 giờ gần nhất: với khoảng thời gian cũ hơn, dùng bước 1h trở lên.",
        ));
    }
    let buckets = (to.timestamp() - from.timestamp() + step - 1) / step;
    if buckets > MAX_BUCKETS {
        return Err(ApiError::bad(
            "too_many_buckets",
            format!("Yêu cầu {buckets} khoảng, tối đa {MAX_BUCKETS}: tăng `step` hoặc thu hẹp khoảng thời gian."),
        ));
    }
    let scope = match q.village.as_deref() {
        None | Some("") | Some("commune") => "commune".to_string(),
        Some(v) if s.shared.registry.has_village(v) => v.to_string(),
        Some(v) => {
            return Err(ApiError::NotFound {
                code: "unknown_village",
                message: format!("Không có thôn/bản `{v}` trong cấu hình."),
            })
        }
    };
    let (plan, name, unit, target) = {
        let engine = s.shared.engine.read();
        let Some(plan) = engine.history_counters(&id) else {
            return Err(ApiError::NotFound {
                code: "unknown_indicator",
                message: format!("Không có chỉ tiêu `{id}`."),
            });
        };
        let (name, unit, target) = engine.describe(&id).unwrap_or(("", "", None));
        let plan = match plan {
            HistoryPlan::Sum(c) => (c.to_string(), None),
            HistoryPlan::Ratio(n, d) => (n.to_string(), Some(d.to_string())),
            HistoryPlan::Unsupported => {
                return Err(ApiError::bad(
                    "history_unsupported",
                    format!(
                        "Chỉ tiêu `{id}` không có lịch sử theo khoảng (chỉ có giá trị hiện tại)."
                    ),
                ))
            }
        };
        (plan, name.to_string(), unit.to_string(), target)
    };
    let reader = Arc::clone(&s.reader);
    let scope_q = scope.clone();
    let (num, den) = tokio::task::spawn_blocking(move || {
        let store = reader.lock();
        let num = store.history(&plan.0, &scope_q, from, to, step)?;
        let den = match &plan.1 {
            Some(d) => Some(store.history(d, &scope_q, from, to, step)?),
            None => None,
        };
        Ok::<_, ApiError>((num, den))
    })
    .await
    .map_err(|_| ApiError::Task)??;
    let lookup =
        |rows: &[(i64, f64)], b: i64| rows.iter().find(|(i, _)| *i == b).map_or(0.0, |(_, v)| *v);
    let mut out = Vec::with_capacity(buckets as usize);
    for b in 0..buckets {
        let start = from + Duration::seconds(b * step);
        let end = (start + Duration::seconds(step)).min(to);
        let n = lookup(&num, b);
        let item = match &den {
            None => json!({ "start": start, "end": end, "value": n }),
            Some(den) => {
                let d = lookup(den, b);
                let value = (d > 0.0).then(|| 100.0 * n / d);
                json!({ "start": start, "end": end, "value": value, "numerator": n, "denominator": d })
            }
        };
        out.push(item);
    }
    Ok(Json(json!({
        "id": id,
        "name": name,
        "unit": unit,
        "target": target,
        "scope": scope,
        "from": from,
        "to": to,
        "step_secs": step,
        "buckets": out,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_refuse_without_panicking() {
        assert_eq!(parse_step("15m"), Some(900));
        assert_eq!(parse_step("1h"), Some(3600));
        assert_eq!(parse_step("366d"), Some(MAX_STEP_SECS));
        for bad in [
            "",
            "m",
            "0h",
            "-1h",
            "+1h",
            "1é",
            "hé",
            "😀",
            "1😀",
            "99999999d",
            "106751991167300d",
            "2562047788015215h",
            "367d",
            "1 h",
            "1s",
        ] {
            assert_eq!(parse_step(bad), None, "{bad:?}");
        }
    }
}
