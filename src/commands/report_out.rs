//! `commune-ioc report export|submit`: the report's way out on the box
//! (the same library functions as `GET /api/reports/{period}/export` and
//! the audited use case of `POST /api/reports/{period}/submit`).

use std::path::Path;

use anyhow::{Context, Result};

use commune_ioc::app::{self, Actor};
use commune_ioc::auth::Accounts;
use commune_ioc::config::Config;
use commune_ioc::journal::Store;
use commune_ioc::reports::export::{self, Format, Settings};
use commune_ioc::reports::{self, seal, Snapshot};

/// Write an export of a sealed revision to `out` (or its own file name).
pub fn export(
    cfg: &Config,
    period: &str,
    format: &str,
    revision: Option<u32>,
    out: Option<&Path>,
) -> Result<()> {
    let format = Format::parse(format)?;
    let store = Store::open_reader(&cfg.journal_path())?;
    let label = reports::ReportPeriod::parse(period, cfg.report.regime)?.label();
    let (_, doc) = seal::revision(store.conn(), &label, revision)?
        .ok_or_else(|| reports::ReportError::NotSealed(label.clone()))?;
    let snapshot: Snapshot =
        serde_json::from_slice(&doc).context("văn bản đã niêm phong không đọc được")?;
    let bytes = export::render(
        &snapshot,
        &doc,
        format,
        Settings {
            document: &cfg.report.document,
            dhis2: &cfg.report.dhis2,
        },
    )?;
    let name = export::file_name(&snapshot, format);
    let path = out.map_or_else(|| Path::new(&name).to_path_buf(), Path::to_path_buf);
    std::fs::write(&path, &bytes).with_context(|| format!("ghi {}", path.display()))?;
    println!(
        "Đã xuất kỳ {} (phiên bản {}) ra {}",
        label,
        snapshot.revision,
        path.display()
    );
    Ok(())
}

/// Submit through the audited use case; the server's delivery worker sends
/// it at its next poll.
pub fn submit(
    cfg: &Config,
    store: &mut Store,
    accounts: &Accounts,
    actor: &Actor,
    period: &str,
) -> Result<()> {
    let s = app::report_submit::submit(store, accounts, actor, cfg, period, chrono::Utc::now())?;
    if s.new {
        println!(
            "Đã đưa kỳ {} (phiên bản {}) vào hàng đợi gửi tỉnh; máy chủ đang chạy sẽ gửi đi.",
            s.period, s.revision
        );
    } else {
        println!(
            "Kỳ {} (phiên bản {}) đã được gửi trước đó: {}.",
            s.period,
            s.revision,
            commune_ioc::reports::export::text::report_state(&s.state)
        );
    }
    Ok(())
}
