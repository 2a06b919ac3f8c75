//! The Excel workbook (rust_xlsxwriter), ready to print and sign:
//!
//! - `Báo cáo`: the administrative document (Nghị định 30/2020): issuing
//!   body and number, Quốc hiệu and tiêu ngữ, the date line, `BÁO CÁO` and
//!   its title, the period and its window, the commune's indicators with
//!   value, parts, target and status, "Nơi nhận" and the signer's block;
//! - `Theo thôn`: every indicator of every village;
//! - `Số liệu`: the same rows with plain numeric cells (for computing);
//! - `Nguồn dữ liệu`: what the values were computed from, the document id.
//!
//! Text sheets write numbers the Vietnamese way (`94,62 %`, `1.828`) as
//! text, so the printed page reads the same on any computer's locale; the
//! `Số liệu` sheet has numbers as numbers. Every sheet prints on A4
//! landscape, one page wide, with the table header repeated.

use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, Worksheet, XlsxError};

use crate::reports::{IndicatorRow, Snapshot};

use super::{text, ExportError, Letterhead};

const FONT: &str = "Times New Roman";
/// A4 in Excel's paper codes.
const A4: u8 = 9;

struct Styles {
    plain: Format,
    bold_center: Format,
    center: Format,
    italic_center: Format,
    title: Format,
    subtitle: Format,
    head: Format,
    cell: Format,
    cell_center: Format,
    cell_right: Format,
    cell_bold: Format,
    number: Format,
    bold: Format,
    italic: Format,
}

impl Styles {
    fn new() -> Styles {
        let base = Format::new().set_font_name(FONT).set_font_size(12);
        let cell = base
            .clone()
            .set_border(FormatBorder::Thin)
            .set_text_wrap()
            .set_align(FormatAlign::VerticalCenter);
        Styles {
            plain: base.clone(),
            bold_center: base.clone().set_bold().set_align(FormatAlign::Center),
            center: base.clone().set_align(FormatAlign::Center),
            italic_center: base.clone().set_italic().set_align(FormatAlign::Center),
            title: base
                .clone()
                .set_bold()
                .set_font_size(14)
                .set_align(FormatAlign::Center),
            subtitle: base
                .clone()
                .set_bold()
                .set_align(FormatAlign::Center)
                .set_text_wrap(),
            head: cell
                .clone()
                .set_bold()
                .set_align(FormatAlign::Center)
                .set_background_color("#E8E8E8"),
            cell: cell.clone(),
            cell_center: cell.clone().set_align(FormatAlign::Center),
            cell_right: cell.clone().set_align(FormatAlign::Right),
            cell_bold: cell.clone().set_bold(),
            number: cell.clone().set_num_format("0.####"),
            bold: base.clone().set_bold(),
            italic: base.set_italic(),
        }
    }
}

fn print_setup(ws: &mut Worksheet, header_rows: Option<(u32, u32)>) -> Result<(), XlsxError> {
    ws.set_landscape();
    ws.set_paper_size(A4);
    ws.set_print_fit_to_pages(1, 0);
    ws.set_print_center_horizontally(true);
    ws.set_margins(0.6, 0.5, 0.6, 0.6, 0.3, 0.3);
    ws.set_footer("&C&\"Times New Roman\"&10Trang &P/&N");
    if let Some((a, b)) = header_rows {
        ws.set_repeat_rows(a, b)?;
    }
    Ok(())
}

/// The summary sheet's columns: STT, Chỉ số, Giá trị, Tử số / Mẫu số,
/// Mục tiêu, Đánh giá, Số sự kiện.
const SUMMARY_HEAD: [&str; 7] = [
    "STT",
    "Chỉ số",
    "Giá trị",
    "Tử số / Mẫu số",
    "Mục tiêu",
    "Đánh giá",
    "Số sự kiện",
];

fn indicator_cells(
    ws: &mut Worksheet,
    st: &Styles,
    row: u32,
    first_col: u16,
    r: &IndicatorRow,
) -> Result<(), XlsxError> {
    let c = first_col;
    ws.write_string_with_format(row, c, &r.name, &st.cell_bold)?;
    ws.write_string_with_format(row, c + 1, text::value(r), &st.cell_right)?;
    ws.write_string_with_format(row, c + 2, text::parts(r), &st.cell_right)?;
    ws.write_string_with_format(row, c + 3, text::target(r), &st.cell_center)?;
    ws.write_string_with_format(row, c + 4, text::status(r), &st.cell_center)?;
    ws.write_string_with_format(
        row,
        c + 5,
        text::quantity(r.lineage.input_count as f64, ""),
        &st.cell_right,
    )?;
    Ok(())
}

fn summary(
    ws: &mut Worksheet,
    s: &Snapshot,
    lh: &Letterhead,
    st: &Styles,
) -> Result<(), XlsxError> {
    ws.set_name("Báo cáo")?;
    for (col, w) in [6.0, 44.0, 18.0, 20.0, 14.0, 18.0, 13.0]
        .into_iter()
        .enumerate()
    {
        ws.set_column_width(col as u16, w)?;
    }
    // Issuing body (left) and Quốc hiệu, tiêu ngữ (right).
    let auth = |i: usize| lh.authority.get(i).cloned().unwrap_or_default();
    ws.merge_range(0, 0, 0, 2, &auth(0), &st.center)?;
    ws.merge_range(1, 0, 1, 2, &auth(1), &st.bold_center)?;
    ws.merge_range(2, 0, 2, 2, &lh.number, &st.center)?;
    ws.merge_range(
        0,
        3,
        0,
        6,
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        &st.bold_center,
    )?;
    ws.merge_range(1, 3, 1, 6, "Độc lập - Tự do - Hạnh phúc", &st.bold_center)?;
    ws.merge_range(2, 3, 2, 6, &lh.date_line, &st.italic_center)?;

    ws.merge_range(4, 0, 4, 6, "BÁO CÁO", &st.title)?;
    ws.merge_range(5, 0, 5, 6, &text::title(s), &st.subtitle)?;
    ws.set_row_height(5, 32)?;
    ws.merge_range(
        6,
        0,
        6,
        6,
        &format!(
            "Kỳ báo cáo {}: {} ({})",
            s.period.label,
            text::window(&s.period),
            s.regime.legal_basis
        ),
        &st.italic_center,
    )?;
    let mut row = 7;
    if let Some(r) = &lh.recipient {
        ws.merge_range(row, 0, row, 6, &format!("Kính gửi: {r}."), &st.center)?;
        row += 1;
    }
    ws.merge_range(
        row,
        0,
        row,
        6,
        &format!(
            "Đơn vị báo cáo: {} (mã {}). {}. Mã văn bản: {}",
            s.org_unit.name,
            s.org_unit.code,
            text::revision(s),
            text::digest(s)
        ),
        &st.plain,
    )?;
    row += 2;
    let head_row = row;
    for (c, h) in SUMMARY_HEAD.iter().enumerate() {
        ws.write_string_with_format(row, c as u16, *h, &st.head)?;
    }
    row += 1;
    let commune = s.values.first();
    for (i, r) in commune.into_iter().flat_map(|v| &v.indicators).enumerate() {
        ws.write_number_with_format(row, 0, (i + 1) as f64, &st.cell_center)?;
        indicator_cells(ws, st, row, 1, r)?;
        row += 1;
    }
    ws.merge_range(
        row,
        0,
        row,
        6,
        "Số liệu do hệ thống Trung tâm điều hành thông minh tính từ dữ liệu gốc, niêm phong và ký số; chi tiết theo thôn ở trang \"Theo thôn\".",
        &st.italic,
    )?;
    row += 2;
    // Nơi nhận (left) and the signer (right).
    let sign = row;
    ws.write_string_with_format(sign, 0, "Nơi nhận:", &st.bold)?;
    let mut left = sign + 1;
    if let Some(r) = &lh.recipient {
        ws.write_string_with_format(left, 0, format!("- {r};"), &st.plain)?;
        left += 1;
    }
    ws.write_string_with_format(left, 0, "- Lưu: VT.", &st.plain)?;
    let mut right = sign;
    if let Some(c) = &lh.signer_capacity {
        ws.merge_range(right, 4, right, 6, c, &st.bold_center)?;
        right += 1;
    }
    ws.merge_range(right, 4, right, 6, &lh.signer_title, &st.bold_center)?;
    right += 1;
    ws.merge_range(
        right,
        4,
        right,
        6,
        "(Ký, ghi rõ họ tên, đóng dấu)",
        &st.italic_center,
    )?;
    right += 5;
    ws.merge_range(
        right,
        4,
        right,
        6,
        lh.signer_name.as_deref().unwrap_or(""),
        &st.bold_center,
    )?;
    print_setup(ws, Some((head_row, head_row)))
}

fn villages(ws: &mut Worksheet, s: &Snapshot, st: &Styles) -> Result<(), XlsxError> {
    ws.set_name("Theo thôn")?;
    for (col, w) in [6.0, 22.0, 40.0, 18.0, 20.0, 14.0, 18.0]
        .into_iter()
        .enumerate()
    {
        ws.set_column_width(col as u16, w)?;
    }
    ws.merge_range(0, 0, 0, 6, "CHỈ SỐ THEO THÔN, BẢN", &st.title)?;
    ws.merge_range(1, 0, 1, 6, &text::title(s), &st.subtitle)?;
    ws.merge_range(
        2,
        0,
        2,
        6,
        &format!("Kỳ báo cáo {}: {}", s.period.label, text::window(&s.period)),
        &st.italic_center,
    )?;
    let head = [
        "STT",
        "Thôn, bản",
        "Chỉ số",
        "Giá trị",
        "Tử số / Mẫu số",
        "Mục tiêu",
        "Đánh giá",
    ];
    for (c, h) in head.iter().enumerate() {
        ws.write_string_with_format(4, c as u16, *h, &st.head)?;
    }
    let mut row = 5;
    let mut n = 0;
    for v in s.values.iter().filter(|v| v.scope != "commune") {
        for r in &v.indicators {
            n += 1;
            ws.write_number_with_format(row, 0, n as f64, &st.cell_center)?;
            ws.write_string_with_format(row, 1, &v.name, &st.cell)?;
            ws.write_string_with_format(row, 2, &r.name, &st.cell)?;
            ws.write_string_with_format(row, 3, text::value(r), &st.cell_right)?;
            ws.write_string_with_format(row, 4, text::parts(r), &st.cell_right)?;
            ws.write_string_with_format(row, 5, text::target(r), &st.cell_center)?;
            ws.write_string_with_format(row, 6, text::status(r), &st.cell_center)?;
            row += 1;
        }
    }
    print_setup(ws, Some((4, 4)))
}

fn data(ws: &mut Worksheet, s: &Snapshot, st: &Styles) -> Result<(), XlsxError> {
    ws.set_name("Số liệu")?;
    let head = [
        "Phạm vi",
        "Tên phạm vi",
        "Mã chỉ số",
        "Chỉ số",
        "Giá trị",
        "Đơn vị",
        "Tử số",
        "Mẫu số",
        "Mục tiêu",
        "Đánh giá",
        "Số sự kiện",
    ];
    for (c, (h, w)) in head
        .iter()
        .zip([
            12.0, 20.0, 26.0, 40.0, 12.0, 10.0, 12.0, 12.0, 10.0, 12.0, 12.0,
        ])
        .enumerate()
    {
        ws.set_column_width(c as u16, w)?;
        ws.write_string_with_format(0, c as u16, *h, &st.head)?;
    }
    for (row, (scope, r)) in (1u32..).zip(s.rows()) {
        ws.write_string_with_format(row, 0, &scope.scope, &st.cell)?;
        ws.write_string_with_format(row, 1, &scope.name, &st.cell)?;
        ws.write_string_with_format(row, 2, &r.indicator, &st.cell)?;
        ws.write_string_with_format(row, 3, &r.name, &st.cell)?;
        for (c, x) in [(4, r.value), (6, r.numerator), (7, r.denominator)] {
            match x {
                Some(x) => ws.write_number_with_format(row, c, x, &st.number)?,
                None => ws.write_blank(row, c, &st.cell)?,
            };
        }
        ws.write_string_with_format(row, 5, &r.unit, &st.cell)?;
        ws.write_string_with_format(row, 8, r.target.as_deref().unwrap_or(""), &st.cell)?;
        ws.write_string_with_format(row, 9, text::status(r), &st.cell)?;
        ws.write_number_with_format(row, 10, r.lineage.input_count as f64, &st.number)?;
    }
    print_setup(ws, Some((0, 0)))
}

fn sources(ws: &mut Worksheet, s: &Snapshot, st: &Styles) -> Result<(), XlsxError> {
    ws.set_name("Nguồn dữ liệu")?;
    for (c, w) in [14.0, 12.0, 76.0, 24.0, 24.0].into_iter().enumerate() {
        ws.set_column_width(c as u16, w)?;
    }
    ws.merge_range(0, 0, 0, 4, "NGUỒN DỮ LIỆU VÀ NIÊM PHONG", &st.title)?;
    let lines = [
        format!("Mã văn bản (SHA-256): {}", text::digest(s)),
        format!(
            "Khoá công khai (Ed25519): {}",
            s.signature.as_ref().map_or("", |g| g.public_key.as_str())
        ),
        format!(
            "{}; niêm phong lúc {}; dữ liệu nhận trước {}",
            text::revision(s),
            text::parse_time(&s.sealed_at).map_or(s.sealed_at.clone(), text::date_time),
            text::parse_time(&s.late_cutoff).map_or(s.late_cutoff.clone(), text::date_time)
        ),
        format!(
            "Phiên bản: {}; bộ chỉ số: {}",
            s.manifest.code_version, s.manifest.ruleset_version
        ),
    ];
    for (i, l) in lines.iter().enumerate() {
        ws.merge_range(1 + i as u32, 0, 1 + i as u32, 4, l, &st.plain)?;
    }
    let head = [
        "Luồng dữ liệu",
        "Số sự kiện",
        "Gốc Merkle",
        "Sự kiện đầu",
        "Sự kiện cuối",
    ];
    for (c, h) in head.iter().enumerate() {
        ws.write_string_with_format(6, c as u16, *h, &st.head)?;
    }
    let time = |t: &Option<String>| {
        t.as_deref()
            .and_then(text::parse_time)
            .map(text::date_time)
            .unwrap_or_default()
    };
    for (i, m) in s.manifest.event_streams.iter().enumerate() {
        let row = 7 + i as u32;
        ws.write_string_with_format(row, 0, &m.stream, &st.cell)?;
        ws.write_string_with_format(row, 1, text::quantity(m.count as f64, ""), &st.cell_right)?;
        ws.write_string_with_format(row, 2, &m.merkle_root, &st.cell)?;
        ws.write_string_with_format(row, 3, time(&m.first_event_ts), &st.cell)?;
        ws.write_string_with_format(row, 4, time(&m.last_event_ts), &st.cell)?;
    }
    print_setup(ws, None)
}

/// The workbook's bytes.
pub fn workbook(s: &Snapshot, lh: &Letterhead) -> Result<Vec<u8>, ExportError> {
    let st = Styles::new();
    let mut wb = Workbook::new();
    let props = rust_xlsxwriter::DocProperties::new()
        .set_title(format!("Báo cáo {}", text::title(s)))
        .set_author(s.org_unit.name.clone())
        .set_company(s.org_unit.name.clone())
        .set_comment(format!("Mã văn bản: {}", text::digest(s)));
    wb.set_properties(&props);
    summary(wb.add_worksheet(), s, lh, &st)?;
    villages(wb.add_worksheet(), s, &st)?;
    data(wb.add_worksheet(), s, &st)?;
    sources(wb.add_worksheet(), s, &st)?;
    Ok(wb.save_to_buffer()?)
}
