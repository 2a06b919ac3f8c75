//! The printable report: an administrative document laid out per Nghị
//! định 30/2020/NĐ-CP (issuing body and number on the left, Quốc hiệu and
//! tiêu ngữ on the right, the date line, `BÁO CÁO` and its summary, the
//! table, "Nơi nhận" and the signer's block), A4 print CSS, so an official
//! prints it to PDF from the browser and signs.
//!
//! [`document`] is a whole HTML page (served by
//! `GET /api/reports/{period}?format=html`, no script); the screen's page
//! `/reports/{period}` takes its `<article>` and shows it with the same
//! stylesheet (`dashboards/ioc/report.css`, embedded here).

use std::fmt::Write;

use crate::reports::{RowStatus, ScopeValues, Snapshot};

use super::{text, Letterhead};

/// The print stylesheet, shared with the screen's page.
pub const CSS: &str = include_str!("../../../dashboards/ioc/report.css");

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, v: &ScopeValues) {
    out.push_str(
        "<table><colgroup><col class=\"stt\"><col><col class=\"val\"><col class=\"parts\"><col class=\"target\"><col class=\"status\"></colgroup>\
         <thead><tr><th>STT</th><th>Chỉ số</th><th>Giá trị</th><th>Tử số / Mẫu số</th><th>Mục tiêu</th><th>Đánh giá</th></tr></thead><tbody>",
    );
    for (i, r) in v.indicators.iter().enumerate() {
        let cls = if r.status == RowStatus::NotMet && r.target.is_some() {
            " notmet"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr data-indicator=\"{}\"><td class=\"c\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"c\">{}</td><td class=\"c{cls}\">{}</td></tr>",
            esc(&r.indicator),
            i + 1,
            esc(&r.name),
            esc(&text::value(r)),
            esc(&text::parts(r)),
            esc(&text::target(r)),
            esc(text::status(r)),
        );
    }
    out.push_str("</tbody></table>");
}

/// The `<article class="nd30">` of the document.
pub fn article(s: &Snapshot, lh: &Letterhead) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        "<article class=\"nd30\" lang=\"vi\" data-period=\"{}\" data-digest=\"{}\">",
        esc(&s.period.label),
        esc(text::digest(s))
    );
    o.push_str("<header class=\"head\"><div class=\"authority\">");
    for (i, line) in lh.authority.iter().enumerate() {
        if i + 1 == lh.authority.len() {
            let _ = write!(o, "<b>{}</b>", esc(line));
        } else {
            let _ = write!(o, "<p>{}</p>", esc(line));
        }
    }
    let _ = write!(
        o,
        "<span class=\"rule\"></span><p class=\"number\">{}</p></div>",
        esc(&lh.number)
    );
    let _ = write!(
        o,
        "<div class=\"nation\"><b>CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM</b><b class=\"motto\">Độc lập - Tự do - Hạnh phúc</b>\
         <span class=\"rule wide\"></span><p class=\"date\">{}</p></div></header>",
        esc(&lh.date_line)
    );
    let _ = write!(
        o,
        "<h1>BÁO CÁO</h1><p class=\"summary\">{}</p><p class=\"period\">Kỳ báo cáo {}: {} ({})</p>",
        esc(&text::title(s)),
        esc(&s.period.label),
        esc(&text::window(&s.period)),
        esc(&s.regime.legal_basis)
    );
    if let Some(r) = &lh.recipient {
        let _ = write!(o, "<p class=\"recipient\">Kính gửi: {}.</p>", esc(r));
    }
    let _ = write!(
        o,
        "<p class=\"unit\">{} báo cáo kết quả các chỉ số hoạt động {} (số liệu do hệ thống Trung tâm điều hành thông minh tính từ dữ liệu gốc; {}) như sau:</p>",
        esc(&s.org_unit.name),
        esc(&text::period_name(&s.period)),
        esc(&text::revision(s).to_lowercase())
    );
    if let Some(commune) = s.values.iter().find(|v| v.scope == "commune") {
        o.push_str("<h2>I. Toàn xã</h2>");
        table(&mut o, commune);
    }
    let villages: Vec<&ScopeValues> = s.values.iter().filter(|v| v.scope != "commune").collect();
    if !villages.is_empty() {
        o.push_str("<h2>II. Theo thôn, bản</h2>");
        for (i, v) in villages.iter().enumerate() {
            let _ = write!(o, "<h2 class=\"village\">{}. {}</h2>", i + 1, esc(&v.name));
            table(&mut o, v);
        }
    }
    o.push_str("<p class=\"note\">“Không có dữ liệu”: kỳ này không có sự kiện để tính chỉ số (không phải bằng 0).</p>");
    o.push_str("<footer class=\"foot\"><div class=\"to\"><b>Nơi nhận:</b>");
    if let Some(r) = &lh.recipient {
        let _ = write!(o, "<p>- {};</p>", esc(r));
    }
    o.push_str("<p>- Lưu: VT.</p></div><div class=\"signer\">");
    if let Some(c) = &lh.signer_capacity {
        let _ = write!(o, "<p><b>{}</b></p>", esc(c));
    }
    let _ = write!(
        o,
        "<p><b>{}</b></p><p class=\"hint\">(Ký, ghi rõ họ tên, đóng dấu)</p><p class=\"name\">{}</p></div></footer>",
        esc(&lh.signer_title),
        esc(lh.signer_name.as_deref().unwrap_or("\u{a0}"))
    );
    let _ = write!(
        o,
        "<p class=\"seal\">Mã văn bản (SHA-256): {}. Niêm phong điện tử bằng khoá Ed25519 của {}; kiểm tra bằng lệnh <code>commune-ioc report verify</code>.</p>",
        esc(text::digest(s)),
        esc(&s.org_unit.name)
    );
    o.push_str("</article>");
    o
}

/// A whole HTML page with the print stylesheet.
pub fn document(s: &Snapshot, lh: &Letterhead) -> String {
    format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Báo cáo {} – {}</title><style>{}</style></head><body class=\"report-page\">{}</body></html>",
        esc(&s.period.label),
        esc(&s.org_unit.name),
        CSS,
        article(s, lh)
    )
}
