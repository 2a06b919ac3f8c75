//! Exports of a sealed snapshot: the workbook read back with calamine, the
//! CSV and DHIS2 shapes, and the printable page rendered and printed to
//! PDF by a real headless Chromium.

mod kit;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use commune_ioc::config::{ReportDhis2, ReportDocument};
use commune_ioc::reports::export::{self, csv, dhis2, html, Format, Letterhead, Settings};
use commune_ioc::reports::{
    IndicatorRow, Lineage, Manifest, OrgUnit, PeriodInfo, PeriodKind, RegimeInfo, RowStatus,
    ScopeValues, Signature, Snapshot, SnapshotStatus, StreamManifest, SCHEMA,
};
use kit::browser::{Browser, BROWSER_SLOT};
use serde_json::{json, Value};

fn lineage(n: u64) -> Lineage {
    Lineage {
        query_id: "q1".into(),
        streams: vec!["procedure".into()],
        input_count: n,
        inputs_root: "sha256:00".into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    name: &str,
    kind: &str,
    value: Option<f64>,
    unit: &str,
    parts: Option<(f64, f64)>,
    target: Option<&str>,
    status: RowStatus,
) -> IndicatorRow {
    IndicatorRow {
        indicator: id.into(),
        name: name.into(),
        kind: kind.into(),
        value,
        unit: unit.into(),
        numerator: parts.map(|p| p.0),
        denominator: parts.map(|p| p.1),
        target: target.map(str::to_owned),
        status,
        lineage: lineage(parts.map_or(0, |p| p.1 as u64)),
    }
}

fn rows(online: (f64, f64), people: Option<f64>) -> Vec<IndicatorRow> {
    let ratio = 100.0 * online.0 / online.1;
    let ratio = (ratio * 10_000.0).round() / 10_000.0;
    vec![
        row(
            "dossier_online_ratio",
            "Tỷ lệ hồ sơ trực tuyến",
            "ratio",
            Some(ratio),
            "%",
            Some(online),
            Some("> 90"),
            if ratio > 90.0 {
                RowStatus::Met
            } else {
                RowStatus::NotMet
            },
        ),
        row(
            "dossier_on_time_ratio",
            "Tỷ lệ giải quyết đúng và trước hạn",
            "ratio",
            None,
            "%",
            None,
            Some("> 98"),
            RowStatus::NoData,
        ),
        row(
            "camera_online",
            "Camera hoạt động",
            "availability",
            Some(75.0),
            "%",
            None,
            Some(">= 95"),
            RowStatus::NotMet,
        ),
        row(
            "people_detected",
            "Lượt người được phát hiện",
            "count",
            people,
            "người",
            None,
            None,
            if people.is_some() {
                RowStatus::Met
            } else {
                RowStatus::NoData
            },
        ),
        row(
            "rain_latest",
            "Lượng mưa",
            "latest",
            Some(12.5),
            "mm",
            None,
            None,
            RowStatus::Met,
        ),
    ]
}

/// June 2026 under NĐ 09/2019: the label `2026-06`, the window 15 May –
/// 14 June.
fn snapshot() -> Snapshot {
    Snapshot {
        schema: SCHEMA.into(),
        report_code: "IOC_XA_THANG".into(),
        regime: RegimeInfo {
            code: "nd09".into(),
            legal_basis: "NĐ 09/2019/NĐ-CP Điều 12".into(),
            cut_day: 15,
            grace_secs: 7200,
        },
        org_unit: OrgUnit {
            code: "VN-LCH-BINHLU".into(),
            id: "binh-lu".into(),
            name: "Xã Bình Lư".into(),
            parent: "Lai Châu".into(),
        },
        period: PeriodInfo {
            label: "2026-06".into(),
            kind: PeriodKind::Month,
            dhis2: "202606".into(),
            window_start: "2026-05-15T00:00:00+07:00".into(),
            window_end: "2026-06-15T00:00:00+07:00".into(),
        },
        revision: 0,
        supersedes: None,
        status: SnapshotStatus::Sealed,
        sealed_at: "2026-06-15T02:00:00+07:00".into(),
        late_cutoff: "2026-06-15T02:00:00+07:00".into(),
        correction: None,
        values: vec![
            ScopeValues {
                scope: "commune".into(),
                name: "Xã Bình Lư".into(),
                indicators: rows((1828.0, 1932.0), Some(12345.0)),
            },
            ScopeValues {
                scope: "tan-binh".into(),
                name: "Bản Tân Bình".into(),
                indicators: rows((900.0, 950.0), Some(5000.0)),
            },
            ScopeValues {
                scope: "hung-binh".into(),
                name: "Bản Hưng Bình".into(),
                indicators: rows((528.0, 582.0), None),
            },
            ScopeValues {
                scope: "na-da".into(),
                name: "Bản Nà Đa".into(),
                indicators: rows((400.0, 400.0), Some(7345.0)),
            },
        ],
        manifest: Manifest {
            event_streams: vec![StreamManifest {
                stream: "procedure".into(),
                count: 5796,
                merkle_root: "sha256:ab".into(),
                first_event_ts: Some("2026-05-15T07:01:00+07:00".into()),
                last_event_ts: Some("2026-06-14T16:59:00+07:00".into()),
            }],
            code_version: "commune-ioc 0.1.0".into(),
            ruleset_version: "r1".into(),
        },
        signature: Some(Signature {
            alg: "ed25519".into(),
            public_key: "AAAA".into(),
            digest: "sha256:5f1c0e".into(),
            value: "BBBB".into(),
        }),
    }
}

fn document() -> ReportDocument {
    ReportDocument {
        recipient: "Ủy ban nhân dân tỉnh Lai Châu".into(),
        signer_name: "Lò Văn Thắng".into(),
        ..ReportDocument::default()
    }
}

fn dhis2_map() -> ReportDhis2 {
    ReportDhis2 {
        data_set: "IOC_XA_THANG".into(),
        org_unit: "OU_BINHLU".into(),
        data_elements: [
            ("dossier_online_ratio", "DE_HS_TRUCTUYEN"),
            ("dossier_on_time_ratio", "DE_HS_DUNGHAN"),
            ("people_detected", "DE_NGUOI"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect(),
        village_org_units: [("tan-binh", "OU_TANBINH"), ("hung-binh", "OU_HUNGBINH")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
        ..ReportDhis2::default()
    }
}

fn cell(sheet: &calamine::Range<Data>, r: u32, c: u32) -> String {
    match sheet.get_value((r, c)) {
        Some(Data::String(s)) => s.clone(),
        Some(Data::Float(f)) => f.to_string(),
        Some(Data::Int(i)) => i.to_string(),
        Some(Data::Empty) | None => String::new(),
        Some(other) => format!("{other:?}"),
    }
}

/// The row whose column `c` equals `text`.
fn find_row(sheet: &calamine::Range<Data>, c: u32, text: &str) -> u32 {
    (0..sheet.height() as u32)
        .find(|&r| cell(sheet, r, c) == text)
        .unwrap_or_else(|| panic!("no row with `{text}` in column {c}"))
}

fn all_text(sheet: &calamine::Range<Data>) -> String {
    sheet
        .rows()
        .flat_map(|r| r.iter())
        .map(|d| match d {
            Data::String(s) => s.clone(),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_workbook_reads_back_with_the_expected_cells() {
    let s = snapshot();
    let doc = document();
    let bytes = export::render(
        &s,
        b"{}",
        Format::Xlsx,
        Settings {
            document: &doc,
            dhis2: &ReportDhis2::default(),
        },
    )
    .unwrap();
    let mut wb = Xlsx::new(Cursor::new(bytes)).expect("a valid xlsx");
    assert_eq!(
        wb.sheet_names(),
        ["Báo cáo", "Theo thôn", "Số liệu", "Nguồn dữ liệu"]
    );

    let sum = wb.worksheet_range("Báo cáo").unwrap();
    // The administrative frame.
    assert_eq!(cell(&sum, 0, 0), "ỦY BAN NHÂN DÂN");
    assert_eq!(cell(&sum, 1, 0), "XÃ BÌNH LƯ");
    assert_eq!(cell(&sum, 2, 0), "Số: ……/BC-UBND");
    assert_eq!(cell(&sum, 0, 3), "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM");
    assert_eq!(cell(&sum, 1, 3), "Độc lập - Tự do - Hạnh phúc");
    assert_eq!(cell(&sum, 2, 3), "Bình Lư, ngày …… tháng …… năm 2026");
    assert_eq!(cell(&sum, 4, 0), "BÁO CÁO");
    assert_eq!(
        cell(&sum, 5, 0),
        "Kết quả các chỉ số hoạt động của Xã Bình Lư tháng 6 năm 2026"
    );
    // The label and the window, apart: June's report covers 15/05–14/06.
    assert_eq!(
        cell(&sum, 6, 0),
        "Kỳ báo cáo 2026-06: từ 00:00 ngày 15/05/2026 đến hết ngày 14/06/2026 (NĐ 09/2019/NĐ-CP Điều 12)"
    );
    assert_eq!(cell(&sum, 7, 0), "Kính gửi: Ủy ban nhân dân tỉnh Lai Châu.");
    assert!(cell(&sum, 8, 0).contains("sha256:5f1c0e"));
    // The table: header, then every indicator of the commune.
    let head = find_row(&sum, 0, "STT");
    let header: Vec<String> = (0..7).map(|c| cell(&sum, head, c)).collect();
    assert_eq!(
        header,
        [
            "STT",
            "Chỉ số",
            "Giá trị",
            "Tử số / Mẫu số",
            "Mục tiêu",
            "Đánh giá",
            "Số sự kiện"
        ]
    );
    let line = |r: u32| (0..7).map(|c| cell(&sum, r, c)).collect::<Vec<_>>();
    // 1828/1932 is 94,62 % (the seed reports printed 99,79 %).
    assert_eq!(
        line(head + 1),
        [
            "1",
            "Tỷ lệ hồ sơ trực tuyến",
            "94,62 %",
            "1.828 / 1.932",
            "> 90 %",
            "Đạt",
            "1.932"
        ]
    );
    assert_eq!(
        line(head + 2)[1..6],
        [
            "Tỷ lệ giải quyết đúng và trước hạn",
            "Không có dữ liệu",
            "",
            "> 98 %",
            "Không có dữ liệu"
        ]
    );
    assert_eq!(line(head + 3)[2..6], ["75,00 %", "", "≥ 95 %", "Không đạt"]);
    assert_eq!(line(head + 4)[2..6], ["12.345 người", "", "", "—"]);
    assert_eq!(line(head + 5)[2], "12,5 mm");
    // The signer's block.
    let text = all_text(&sum);
    for want in [
        "Nơi nhận:",
        "- Ủy ban nhân dân tỉnh Lai Châu;",
        "- Lưu: VT.",
        "TM. ỦY BAN NHÂN DÂN",
        "CHỦ TỊCH",
        "(Ký, ghi rõ họ tên, đóng dấu)",
        "Lò Văn Thắng",
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }

    // Per village: every indicator of every village, in order.
    let v = wb.worksheet_range("Theo thôn").unwrap();
    let head = find_row(&v, 0, "STT");
    assert_eq!(cell(&v, head, 1), "Thôn, bản");
    let villages: Vec<String> = (head + 1..head + 16).map(|r| cell(&v, r, 1)).collect();
    assert_eq!(villages[0], "Bản Tân Bình");
    assert_eq!(villages[5], "Bản Hưng Bình");
    assert_eq!(villages[10], "Bản Nà Đa");
    assert_eq!(cell(&v, head + 16, 1), "", "15 rows, no more");
    let hb = head + 6;
    assert_eq!(cell(&v, hb, 3), "90,72 %");
    assert_eq!(cell(&v, hb, 4), "528 / 582");
    assert_eq!(cell(&v, hb + 3, 3), "Không có dữ liệu", "no people data");
    assert_eq!(cell(&v, head + 11, 3), "100,00 %");

    // The data sheet keeps numbers as numbers, and no data as empty.
    let d = wb.worksheet_range("Số liệu").unwrap();
    assert_eq!(d.get_value((1, 4)), Some(&Data::Float(94.617)));
    assert_eq!(d.get_value((1, 6)), Some(&Data::Float(1828.0)));
    assert_eq!(d.get_value((1, 7)), Some(&Data::Float(1932.0)));
    assert!(matches!(d.get_value((2, 4)), None | Some(Data::Empty)));
    assert_eq!(cell(&d, 2, 9), "Không có dữ liệu");
    assert_eq!(d.height(), 1 + 4 * 5);

    let src = wb.worksheet_range("Nguồn dữ liệu").unwrap();
    let t = all_text(&src);
    assert!(t.contains("sha256:ab") && t.contains("5.796"), "{t}");
}

#[test]
fn csv_is_one_plain_row_per_indicator_and_scope() {
    let s = snapshot();
    let text = csv::csv(&s);
    assert!(text.starts_with('\u{FEFF}'), "UTF-8 BOM");
    let lines: Vec<&str> = text.trim_start_matches('\u{FEFF}').split("\r\n").collect();
    assert_eq!(lines.last(), Some(&""), "every line ends in CRLF");
    assert_eq!(lines[0], csv::HEADER.join(","));
    assert_eq!(lines.len() - 2, 4 * 5);
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first.len(), csv::HEADER.len());
    let col = |name: &str| csv::HEADER.iter().position(|h| *h == name).unwrap();
    assert_eq!(first[col("period")], "2026-06");
    assert_eq!(first[col("window_start")], "2026-05-15T00:00:00+07:00");
    assert_eq!(first[col("window_end")], "2026-06-15T00:00:00+07:00");
    assert_eq!(first[col("scope")], "commune");
    assert_eq!(first[col("scope_name")], "Xã Bình Lư");
    assert_eq!(first[col("value")], "94.617", "machine numbers are plain");
    assert_eq!(first[col("numerator")], "1828");
    assert_eq!(first[col("denominator")], "1932");
    assert_eq!(first[col("target")], "> 90");
    assert_eq!(first[col("status")], "met");
    assert_eq!(first[col("digest")], "sha256:5f1c0e");
    let second: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(second[col("value")], "", "no data is empty, never 0");
    assert_eq!(second[col("status")], "no_data");
}

#[test]
fn dhis2_uses_the_label_period_and_leaves_out_no_data_and_unmapped() {
    let s = snapshot();
    let bytes = export::render(
        &s,
        b"{}",
        Format::Dhis2,
        Settings {
            document: &document(),
            dhis2: &dhis2_map(),
        },
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["dataSet"], "IOC_XA_THANG");
    assert_eq!(
        v["period"], "202606",
        "the label's DHIS2 id, not the window"
    );
    assert_eq!(v["orgUnit"], "OU_BINHLU");
    assert_eq!(v["completeDate"], "2026-06-15");
    assert!(v.get("attributeOptionCombo").is_none());
    let values = v["dataValues"].as_array().unwrap();
    let got: Vec<(String, String, String)> = values
        .iter()
        .map(|d| {
            (
                d["dataElement"].as_str().unwrap().to_owned(),
                d["orgUnit"].as_str().unwrap().to_owned(),
                d["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("DE_HS_TRUCTUYEN", "OU_BINHLU", "94.617"),
        ("DE_NGUOI", "OU_BINHLU", "12345"),
        ("DE_HS_TRUCTUYEN", "OU_TANBINH", "94.7368"),
        ("DE_NGUOI", "OU_TANBINH", "5000"),
        ("DE_HS_TRUCTUYEN", "OU_HUNGBINH", "90.7216"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    // No data (on-time ratio; Hưng Bình's people) is left out; Nà Đa has
    // no org unit; camera and rain have no data element.
    assert_eq!(got, want);
    for d in values {
        assert_eq!(d["period"], "202606");
        let c = d["comment"].as_str().unwrap();
        assert!(
            c.contains("2026-05-15T00:00:00+07:00") && c.contains("2026-06-15T00:00:00+07:00"),
            "the true window travels in the comment: {c}"
        );
    }
    // Without a mapping the export says so.
    let err = dhis2::data_value_set(&s, &ReportDhis2::default()).unwrap_err();
    assert!(err.to_string().contains("report.dhis2.data_elements"));
}

/// Pages and sizes of a PDF made by Chromium: `/Type /Page` objects and
/// their `/MediaBox`.
fn pdf_pages(pdf: &[u8]) -> Vec<(f64, f64)> {
    let text = String::from_utf8_lossy(pdf);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("/Type /Page") {
        let rest = &text[i + "/Type /Page".len()..];
        if rest.starts_with('s') {
            continue;
        }
        // The object's dictionary: up to its end.
        let start = text[..i].rfind("obj").unwrap_or(0);
        let end = i + rest.find("endobj").unwrap_or(rest.len());
        let obj = &text[start..end];
        let mb = obj
            .find("/MediaBox")
            .map(|j| &obj[j..])
            .and_then(|m| {
                let a = m.find('[')?;
                let b = m.find(']')?;
                let nums: Vec<f64> = m[a + 1..b]
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (nums.len() == 4).then(|| (nums[2] - nums[0], nums[3] - nums[1]))
            })
            .unwrap_or((0.0, 0.0));
        out.push(mb);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printable_page_renders_vietnamese_and_prints_on_a4() {
    let _slot = BROWSER_SLOT.lock().await;
    let s = snapshot();
    let lh = Letterhead::new(&s, &document());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bao-cao.html");
    std::fs::write(&file, html::document(&s, &lh)).unwrap();
    let b = Browser::launch().await;
    b.open(&format!("file://{}", file.display())).await;
    b.cdp
        .call("Emulation.setEmulatedMedia", json!({"media": "print"}))
        .await;

    let text = |sel: &'static str| {
        let b = &b;
        async move {
            b.eval(&format!(
                "document.querySelector({}).innerText.replace(/\\s+/g, ' ').trim()",
                Value::from(sel)
            ))
            .await
            .as_str()
            .unwrap_or("<missing>")
            .to_owned()
        }
    };
    // Vietnamese text, exactly.
    assert_eq!(
        text(".nation").await,
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM Độc lập - Tự do - Hạnh phúc Bình Lư, ngày …… tháng …… năm 2026"
    );
    assert_eq!(
        text(".authority").await,
        "ỦY BAN NHÂN DÂN XÃ BÌNH LƯ Số: ……/BC-UBND"
    );
    assert_eq!(text("h1").await, "BÁO CÁO");
    assert_eq!(
        text(".period").await,
        "Kỳ báo cáo 2026-06: từ 00:00 ngày 15/05/2026 đến hết ngày 14/06/2026 (NĐ 09/2019/NĐ-CP Điều 12)"
    );
    assert_eq!(
        text("tr[data-indicator=dossier_online_ratio]").await,
        "1 Tỷ lệ hồ sơ trực tuyến 94,62 % 1.828 / 1.932 > 90 % Đạt"
    );
    assert_eq!(
        text("tr[data-indicator=dossier_on_time_ratio]").await,
        "2 Tỷ lệ giải quyết đúng và trước hạn Không có dữ liệu > 98 % Không có dữ liệu"
    );
    assert_eq!(text(".signer .name").await, "Lò Văn Thắng");
    assert_eq!(
        b.eval("document.querySelectorAll('.nd30 table').length")
            .await,
        4
    );

    // Every glyph of the title block is drawn by a real font (no missing
    // glyphs for the diacritics).
    b.cdp.call("DOM.enable", json!({})).await;
    b.cdp.call("CSS.enable", json!({})).await;
    let root = b.cdp.call("DOM.getDocument", json!({})).await;
    for sel in [".nation", ".summary", ".signer"] {
        let node = b
            .cdp
            .call(
                "DOM.querySelector",
                json!({"nodeId": root["root"]["nodeId"], "selector": sel}),
            )
            .await;
        let fonts = b
            .cdp
            .call(
                "CSS.getPlatformFontsForNode",
                json!({"nodeId": node["nodeId"]}),
            )
            .await;
        let fonts = fonts["fonts"].as_array().unwrap();
        assert!(!fonts.is_empty(), "{sel}: no font used");
        for f in fonts {
            let family = f["familyName"].as_str().unwrap_or("");
            assert!(
                family.contains("Serif") || family.contains("Times") || family.contains("Tinos"),
                "{sel}: drawn with {family}, not a serif face: {fonts:?}"
            );
        }
    }

    // No overflow: nothing wider than the A4 text block (165 mm), no cell
    // whose content spills.
    let overflow = b
        .eval(
            r#"(() => {
              const a = document.querySelector('.nd30').getBoundingClientRect();
              const bad = [];
              for (const e of document.querySelectorAll('.nd30 *')) {
                const r = e.getBoundingClientRect();
                if (r.width && (r.right > a.right + 0.5 || r.left < a.left - 0.5)) bad.push(e.tagName + '.' + e.className + ' ' + r.left + '-' + r.right);
                if ((e.tagName === 'TD' || e.tagName === 'TH') && e.scrollWidth > e.clientWidth + 1) bad.push('cell ' + e.textContent);
              }
              return {width: a.width, bad};
            })()"#,
        )
        .await;
    let width = overflow["width"].as_f64().unwrap();
    assert!(
        (width - 165.0 / 25.4 * 96.0).abs() < 2.0,
        "text block {width}px"
    );
    assert_eq!(overflow["bad"], json!([]), "overflow: {overflow}");
    let shot = b.screenshot("report_page.png").await;
    assert!(shot.exists());

    // Print to PDF as the browser's print dialog would, with the page's
    // own @page size.
    let pdf = b
        .cdp
        .call(
            "Page.printToPDF",
            json!({"preferCSSPageSize": true, "printBackground": true}),
        )
        .await;
    let bytes = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(pdf["data"].as_str().unwrap())
            .unwrap()
    };
    assert!(bytes.starts_with(b"%PDF-"));
    let out = kit::browser::screenshot_dir().join("report_page.pdf");
    std::fs::write(&out, &bytes).unwrap();
    eprintln!("pdf: {}", out.display());
    let pages = pdf_pages(&bytes);
    assert!(
        (1..=3).contains(&pages.len()),
        "4 tables on 1–3 pages: {pages:?}"
    );
    for (w, h) in &pages {
        // A4: 595.28 × 841.89 pt.
        assert!(
            (w - 595.28).abs() < 1.5 && (h - 841.89).abs() < 1.5,
            "{pages:?}"
        );
    }
    b.close().await;
}

/// Through the real binary: a sealed period's exports from the document
/// route and the CLI, the printable page at `/reports/{period}` in
/// Chromium, and the wall screen's report tile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_exports_page_and_tile_show_a_sealed_period() {
    let (broker, dir, b) = kit::stack_with(
        "[report.document]\nsigner_name = \"Lò Văn Thắng\"\nrecipient = \"Ủy ban nhân dân tỉnh Lai Châu\"\n",
        &[],
    )
    .await;
    let token = b.token().await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/reports/2025-06/seal", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The document route with ?format=, and /export.
    let r = b.authed_get("/api/reports/2025-06?format=xlsx").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("bao-cao-binh-lu-2025-06-r0.xlsx"));
    let mut wb = Xlsx::new(Cursor::new(r.bytes().await.unwrap().to_vec())).unwrap();
    let sum = wb.worksheet_range("Báo cáo").unwrap();
    assert_eq!(cell(&sum, 1, 0), "XÃ BÌNH LƯ");
    assert!(
        all_text(&sum).contains("Không có dữ liệu"),
        "empty period: no data, never 0"
    );
    let csv_text = b
        .authed_get("/api/reports/2025-06/export?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv_text.contains("2025-06,month,2025-05-15T00:00:00+07:00,2025-06-15T00:00:00+07:00"));
    let (s, v) = b.get_status("/api/reports/2025-06/export?format=pdf").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_format"))
    );
    let (s, v) = b.get_status("/api/reports/2025-06?format=dhis2").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("dhis2_not_configured")),
        "{v}"
    );

    // The CLI writes the same workbook.
    let out_file = dir.path().join("thang-6.xlsx");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .args(["report", "--config"])
        .arg(dir.path().join("commune.toml"))
        .args(["export", "--period", "2025-06", "--format", "xlsx", "--out"])
        .arg(&out_file)
        .env_remove("IOC_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut wb = Xlsx::new(Cursor::new(std::fs::read(&out_file).unwrap())).unwrap();
    assert_eq!(
        cell(&wb.worksheet_range("Báo cáo").unwrap(), 5, 0),
        "Kết quả các chỉ số hoạt động của Xã Bình Lư tháng 6 năm 2025"
    );

    // The printable page, served, in Chromium.
    let _slot = BROWSER_SLOT.lock().await;
    let br = Browser::launch().await;
    br.set_viewport(1280, 900).await;
    br.open(&format!("{}/reports/2025-06?token={token}", b.url))
        .await;
    br.wait_js(
        "document.body.dataset.ready === '1'",
        "the report to render",
    )
    .await;
    assert_eq!(br.text("h1").await, "BÁO CÁO");
    assert_eq!(
        br.text(".summary").await,
        "Kết quả các chỉ số hoạt động của Xã Bình Lư tháng 6 năm 2025"
    );
    assert_eq!(br.text(".signer .name").await, "Lò Văn Thắng");
    assert_eq!(br.text("#submission").await, "Chưa gửi tỉnh");
    assert!(br.exceptions().is_empty(), "{:?}", br.problems());
    br.screenshot("report_page_served.png").await;
    let pdf = br
        .cdp
        .call("Page.printToPDF", json!({"preferCSSPageSize": true}))
        .await;
    let bytes = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(pdf["data"].as_str().unwrap())
            .unwrap()
    };
    let pages = pdf_pages(&bytes);
    assert!(!pages.is_empty());
    for (w, h) in &pages {
        assert!(
            (w - 595.28).abs() < 1.5 && (h - 841.89).abs() < 1.5,
            "{pages:?}"
        );
    }
    std::fs::write(
        kit::browser::screenshot_dir().join("report_page_served.pdf"),
        &bytes,
    )
    .unwrap();

    // The wall screen's tile: the current period's progress and the last
    // sealed report, linking to its page.
    br.set_viewport(1920, 1080).await;
    br.open(&format!("{}/?token={token}", b.url)).await;
    br.wait_js(
        "document.querySelector('#report-tile a[href=\"/reports/2025-06\"]')",
        "the report tile",
    )
    .await;
    let tile = br.text("#report-tile").await;
    assert!(tile.starts_with("Kỳ báo cáo "), "{tile}");
    assert!(
        tile.contains("Kỳ 2025-06: đã niêm phong, chưa gửi tỉnh"),
        "{tile}"
    );
    br.screenshot("report_tile.png").await;
    assert!(br.exceptions().is_empty(), "{:?}", br.problems());
    br.close().await;
    drop(broker);
}
