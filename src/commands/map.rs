//! `commune-ioc map --config FILE --topic T --payload FILE`: what one sample
//! message would become under a config (the rule that takes it, its events
//! with device, time and readings, or the dead-letter reason), so whoever
//! wires a new sensor sees the result before it goes live. Nothing is
//! connected to and nothing is written. Exit 0 for events, 3 for a dead
//! letter.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use chrono_tz::Asia::Ho_Chi_Minh;
use serde_json::{json, Value};

use commune_ioc::config::Config;
use commune_ioc::model::{Event, Raw, Rejection};
use commune_ioc::sources::mapped::{preview, Mapped};
use commune_ioc::sources::Decoder;

/// Decode the sample and print what it becomes.
pub fn run(
    config: &Config,
    topic: String,
    payload: &Path,
    retained: bool,
    as_json: bool,
) -> Result<()> {
    let bytes = if payload == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("không đọc được bản tin từ đầu vào chuẩn (cannot read stdin)")?;
        b
    } else {
        std::fs::read(payload).with_context(|| {
            format!(
                "không đọc được tệp bản tin {} (cannot read the payload file)",
                payload.display()
            )
        })?
    };
    let decoder = Decoder::new(
        Arc::new(config.site.registry.clone()),
        config.ingest.clone(),
        config.procedure.reject_unknown_village,
    )
    .with_mapped(Mapped::new(config.site.mapped.clone()));
    let raw = Raw {
        topic,
        payload: bytes,
        received_at: Utc::now(),
        retained,
    };
    let out = preview(&decoder, &raw);
    let rule = (!out.rule.is_empty()).then_some(out.rule.as_str());
    let parts: Vec<Result<Event, Rejection>> = out.decoded.into_iter().map(|p| p.result).collect();
    let dead = parts.iter().any(Result::is_err);
    if as_json {
        let events: Vec<&Event> = parts.iter().filter_map(|p| p.as_ref().ok()).collect();
        let dead_letters: Vec<Value> = parts
            .iter()
            .filter_map(|p| p.as_ref().err())
            .map(|r| json!({"reason": r.reason.code(), "detail": r.detail, "device": r.device}))
            .collect();
        let body = json!({"topic": raw.topic, "rule": rule, "events": events, "dead_letters": dead_letters});
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", text(config, &raw, rule, &parts));
    }
    if dead {
        std::process::exit(3);
    }
    Ok(())
}

fn text(
    config: &Config,
    raw: &Raw,
    rule: Option<&str>,
    parts: &[Result<Event, Rejection>],
) -> String {
    let mut s = String::new();
    s.push_str(&format!("Chủ đề:    {}\n", raw.topic));
    s.push_str(&format!(
        "Luật:      {}\n",
        match rule {
            Some(r) => format!("{r} (nguồn ánh xạ [[mapped]])"),
            None => "không có luật ánh xạ nào: bộ giải mã gốc (PROTOCOL §2, §3)".to_string(),
        }
    ));
    let events = parts.iter().filter(|p| p.is_ok()).count();
    let dead = parts.len() - events;
    s.push_str(&match (events, dead) {
        (_, 0) => format!("Kết quả:   {events} sự kiện\n"),
        (0, _) if parts.len() == 1 => "Kết quả:   bản tin lỗi (dead letter)\n".to_string(),
        _ => format!("Kết quả:   {events} sự kiện, {dead} bản tin lỗi (dead letter)\n"),
    });
    for (i, part) in parts.iter().enumerate() {
        match part {
            Ok(e) => event(&mut s, i + 1, e),
            Err(r) => rejection(&mut s, i + 1, config, r),
        }
    }
    s
}

fn event(s: &mut String, n: usize, e: &Event) {
    s.push_str(&format!("  [{n}] {} / {}\n", e.source, e.kind));
    if let Some(d) = &e.device {
        let village = e
            .village
            .as_deref()
            .map(|v| format!(", thôn/bản {v}"))
            .unwrap_or_default();
        s.push_str(&format!("      thiết bị:   {d}{village}\n"));
    }
    let from = if e.ts == e.received_at {
        "giờ nhận (bản tin không có thời điểm)"
    } else {
        "lấy từ bản tin"
    };
    s.push_str(&format!(
        "      thời điểm:  {} giờ Việt Nam, {from}\n",
        e.ts.with_timezone(&Ho_Chi_Minh)
            .format("%d/%m/%Y %H:%M:%S%.3f")
    ));
    let readings: Vec<(&String, &Value)> = e
        .attrs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "via" | "topic" | "device_id"))
        .collect();
    for (i, (k, v)) in readings.iter().enumerate() {
        let label = match (i, e.kind.as_str()) {
            (0, "telemetry") => "chỉ số:",
            (0, _) => "thuộc tính:",
            _ => "",
        };
        let shown = match v {
            Value::Number(x) => x.as_f64().map(vi_number).unwrap_or_else(|| x.to_string()),
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        s.push_str(&format!("      {label:<11} {k} = {shown}\n"));
    }
    if e.kind == "cleared" {
        s.push_str("      (bản tin rỗng: xóa bản tin giữ lại, không thay đổi gì)\n");
    }
}

fn rejection(s: &mut String, n: usize, config: &Config, r: &Rejection) {
    s.push_str(&format!(
        "  [{n}] bản tin lỗi (dead letter), mã {}\n",
        r.reason.code()
    ));
    s.push_str(&format!("      lý do:      {}\n", r.detail));
    if let Some(d) = &r.device {
        let known = config.site.registry.devices().any(|x| &x.id == d);
        s.push_str(&format!(
            "      thiết bị:   {d}{}\n",
            if known {
                ""
            } else {
                " (chưa đăng ký: sẽ hiện trong /api/devices với registered = false)"
            }
        ));
    }
}

/// A number the Vietnamese way: `1.234,5`.
fn vi_number(x: f64) -> String {
    let plain = format!("{x}");
    let (sign, rest) = match plain.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", plain.as_str()),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    if int.contains(['e', 'E']) || !int.bytes().all(|b| b.is_ascii_digit()) {
        return plain.replace('.', ",");
    }
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{frac}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_the_vietnamese_way() {
        assert_eq!(super::vi_number(1234.5), "1.234,5");
        assert_eq!(super::vi_number(27.35), "27,35");
        assert_eq!(super::vi_number(-1234567.0), "-1.234.567");
        assert_eq!(super::vi_number(0.105), "0,105");
    }
}
