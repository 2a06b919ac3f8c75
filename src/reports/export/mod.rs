//! Exports of a sealed snapshot, all read from [`Snapshot`] alone (never
//! recomputed): the Excel workbook ([`xlsx`]), CSV ([`csv`]), DHIS2
//! `dataValueSets` JSON ([`dhis2`]) and the printable administrative
//! document ([`html`], shown at `/reports/{period}`).
//!
//! Human formats (workbook, page) write numbers the Vietnamese way
//! (`1.828`, `94,62 %`) and say "Không có dữ liệu" where a value is
//! missing; machine formats (CSV, DHIS2) write plain numbers (`94.6222`)
//! and leave a missing value empty (CSV) or out (DHIS2). No format ever
//! shows a missing value as 0.

pub mod csv;
pub mod dhis2;
pub mod html;
pub mod outbound;
pub mod province;
pub mod text;
pub mod xlsx;

use crate::config::{ReportDhis2, ReportDocument};
use crate::reports::Snapshot;

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The workbook could not be written.
    #[error("không tạo được tệp Excel: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// JSON could not be written.
    #[error("không tạo được JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Nothing of the snapshot maps to DHIS2.
    #[error("chưa khai báo mã DHIS2 nào cho các chỉ số ([report.dhis2.data_elements])")]
    NoDhis2Mapping,
    /// Not a format.
    #[error("`{0}` không phải định dạng xuất: dùng json, xlsx, csv, dhis2 hoặc html")]
    UnknownFormat(String),
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The sealed document itself (its exact bytes).
    Json,
    /// Excel workbook.
    Xlsx,
    /// CSV, one row per indicator and scope.
    Csv,
    /// DHIS2 `dataValueSets` JSON.
    Dhis2,
    /// The printable document (an HTML fragment).
    Html,
}

impl Format {
    /// From `json`, `xlsx`, `csv`, `dhis2`, `html` (also as a file
    /// extension: `export.xlsx`).
    pub fn parse(s: &str) -> Result<Format, ExportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "xlsx" | "excel" => Ok(Format::Xlsx),
            "csv" => Ok(Format::Csv),
            "dhis2" | "dhis2.json" => Ok(Format::Dhis2),
            "html" => Ok(Format::Html),
            other => Err(ExportError::UnknownFormat(other.to_owned())),
        }
    }

    /// The media type served.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::Dhis2 => "application/json",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The file name's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xlsx => "xlsx",
            Format::Csv => "csv",
            Format::Dhis2 => "dhis2.json",
            Format::Html => "html",
        }
    }
}

/// The file name of an export: `bao-cao-binh-lu-2026-06-r0.xlsx`.
pub fn file_name(s: &Snapshot, f: Format) -> String {
    let safe = |x: &str| {
        x.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!(
        "bao-cao-{}-{}-r{}.{}",
        safe(&s.org_unit.id),
        safe(&s.period.label),
        s.revision,
        f.extension()
    )
}

/// The administrative frame of a document (Nghị định 30/2020/NĐ-CP):
/// issuing body, number, place, recipient, signer; from
/// `[report.document]` with defaults from the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Letterhead {
    /// Lines of the issuing body (`ỦY BAN NHÂN DÂN`, `XÃ BÌNH LƯ`).
    pub authority: Vec<String>,
    /// `Số: …/BC-UBND`.
    pub number: String,
    /// `Bình Lư, ngày …… tháng …… năm 2026`.
    pub date_line: String,
    /// `Kính gửi: …`, when set.
    pub recipient: Option<String>,
    /// `TM. ỦY BAN NHÂN DÂN`, when set.
    pub signer_capacity: Option<String>,
    /// `CHỦ TỊCH`.
    pub signer_title: String,
    /// The signer's name, when set.
    pub signer_name: Option<String>,
}

impl Letterhead {
    /// The frame of `s` under `doc`. The date line keeps the day and month
    /// to be written at signing, and the year of the period's label.
    pub fn new(s: &Snapshot, doc: &ReportDocument) -> Letterhead {
        let name = s.org_unit.name.trim();
        let authority = if doc.authority.trim().is_empty() {
            vec!["ỦY BAN NHÂN DÂN".to_owned(), text::upper(name)]
        } else {
            doc.authority
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let place = if doc.place.trim().is_empty() {
            ["Xã ", "xã ", "Phường ", "phường ", "Thị trấn ", "thị trấn "]
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .unwrap_or(name)
                .to_owned()
        } else {
            doc.place.trim().to_owned()
        };
        let some = |x: &str| (!x.trim().is_empty()).then(|| x.trim().to_owned());
        Letterhead {
            authority,
            number: format!("Số: ……/{}", doc.symbol.trim()),
            date_line: format!(
                "{place}, ngày …… tháng …… năm {}",
                text::label_year(&s.period)
            ),
            recipient: some(&doc.recipient),
            signer_capacity: some(&doc.signer_capacity),
            signer_title: doc.signer_title.trim().to_owned(),
            signer_name: some(&doc.signer_name),
        }
    }
}

/// What an export needs besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The document frame.
    pub document: &'a ReportDocument,
    /// The DHIS2 names.
    pub dhis2: &'a ReportDhis2,
}

/// Render `s` in `format`. `document` is the sealed document's exact bytes
/// (served unchanged for [`Format::Json`]).
pub fn render(
    s: &Snapshot,
    document: &[u8],
    format: Format,
    settings: Settings<'_>,
) -> Result<Vec<u8>, ExportError> {
    match format {
        Format::Json => Ok(document.to_vec()),
        Format::Xlsx => xlsx::workbook(s, &Letterhead::new(s, settings.document)),
        Format::Csv => Ok(csv::csv(s).into_bytes()),
        Format::Dhis2 => Ok(serde_json::to_vec_pretty(&dhis2::data_value_set(
            s,
            settings.dhis2,
        )?)?),
        Format::Html => Ok(html::document(s, &Letterhead::new(s, settings.document)).into_bytes()),
    }
}
