//! `commune-ioc report seal|verify|key|get|list|drafts|approve|dismiss`:
//! sealed periodic reports on the box (works while the server runs: the
//! store is SQLite in WAL mode). Sealing and corrections are the same
//! audited use cases as the HTTP routes (`commune_ioc::app::reports`).
//!
//! `verify` exits 0 when the document holds, 2 with the reason when it
//! does not, 1 when it cannot run (unreadable file or store).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use commune_ioc::app::{self, Actor};
use commune_ioc::auth::Accounts;
use commune_ioc::config::Config;
use commune_ioc::indicators::Engine;
use commune_ioc::journal::Store;
use commune_ioc::reports::export::text;
use commune_ioc::reports::{self, keys, seal, service, Trust};

/// What to do with reports.
#[derive(Subcommand, Debug)]
pub enum ReportAction {
    /// Seal a period once its window and grace have passed (2026-06,
    /// 2026-Q2, 2026-H1, 2026); a sealed period is left as it is.
    Seal {
        /// Period label.
        #[arg(long)]
        period: String,
    },
    /// Check a sealed document: canonical form, digest, signature, the
    /// commune's key and the revision chain (against the store named by
    /// --config when it exists).
    Verify {
        /// The document (JSON, as `report get` or the API gives it).
        file: PathBuf,
        /// Also recompute the values from the journal.
        #[arg(long)]
        recompute: bool,
        /// The document of the previous revision (for a correction).
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Do not use the store: check the document alone (with --key).
        #[arg(long)]
        no_store: bool,
        /// The commune's public key (the base64 that `report key` prints).
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the commune's public signing key (creating the key if needed).
    Key {
        /// As a SubjectPublicKeyInfo PEM instead of base64.
        #[arg(long)]
        pem: bool,
    },
    /// Write a sealed document, byte for byte.
    Get {
        /// Period label.
        #[arg(long)]
        period: String,
        /// Revision (default: the latest).
        #[arg(long)]
        revision: Option<u32>,
        /// File to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List periods and their state.
    List,
    /// List correction drafts.
    Drafts {
        /// Only this period.
        #[arg(long)]
        period: Option<String>,
    },
    /// Approve a correction draft: sign it as the next revision.
    Approve {
        /// Period label.
        #[arg(long)]
        period: String,
        /// Draft number (`report drafts`).
        #[arg(long)]
        draft: i64,
        /// Why the correction is made.
        #[arg(long)]
        reason: String,
        /// The approving official (user name).
        #[arg(long)]
        by: String,
    },
    /// Dismiss a correction draft.
    Dismiss {
        /// Period label.
        #[arg(long)]
        period: String,
        /// Draft number.
        #[arg(long)]
        draft: i64,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who decides.
        #[arg(long)]
        by: String,
    },
    /// Export a sealed revision: Excel workbook, CSV, DHIS2 dataValueSets,
    /// the printable HTML document, or the sealed JSON.
    Export {
        /// Period label.
        #[arg(long)]
        period: String,
        /// xlsx, csv, dhis2, html or json.
        #[arg(long, default_value = "xlsx")]
        format: String,
        /// Revision (default: the latest).
        #[arg(long)]
        revision: Option<u32>,
        /// File to write (default: the export's own name in the current
        /// directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Submit the latest revision of a sealed period to the province
    /// (`[report.province]`), through the durable delivery outbox; the
    /// running server sends it.
    Submit {
        /// Period label.
        #[arg(long)]
        period: String,
        /// Who submits (user name, for the audit log).
        #[arg(long)]
        by: String,
    },
}

fn actor(by: Option<&str>) -> Actor {
    Actor {
        name: by.map_or_else(|| "cli".to_owned(), |b| b.trim().to_owned()),
        role: None,
        addr: None,
        detail: Some("commune-ioc report".into()),
    }
}

fn open(cfg: &Config) -> Result<(Store, Accounts)> {
    let path = cfg.journal_path();
    let store = Store::open_with(&path, cfg.store.sync, 0)
        .with_context(|| format!("không mở được kho {}", path.display()))?;
    let accounts = Accounts::open(&path, &cfg.auth)?;
    Ok((store, accounts))
}

/// Run one action; `cfg` is the loaded config (verify may run without).
pub fn run(cfg: Option<&Config>, action: ReportAction) -> Result<()> {
    let need = || cfg.context("cần tệp cấu hình (--config) cho lệnh này");
    let now = chrono::Utc::now();
    match action {
        ReportAction::Seal { period } => {
            let cfg = need()?;
            let (mut store, accounts) = open(cfg)?;
            let engine = Engine::new(cfg);
            let o = app::reports::seal(
                &mut store,
                &accounts,
                &actor(None),
                cfg,
                &engine,
                &period,
                now,
            )?;
            if o.already_sealed {
                println!(
                    "Kỳ {} đã được niêm phong trước đó (phiên bản {}).",
                    o.period, o.revision
                );
            } else {
                println!("Đã niêm phong kỳ {} (phiên bản {}).", o.period, o.revision);
            }
            println!("{}", o.digest);
        }
        ReportAction::Verify {
            file,
            recompute,
            previous,
            no_store,
            key,
        } => {
            return verify(
                cfg.filter(|_| !no_store),
                &file,
                recompute,
                previous.as_deref(),
                key.as_deref(),
            )
        }
        ReportAction::Key { pem } => {
            let cfg = need()?;
            let key = keys::load_or_create(&keys::key_path(cfg))?;
            let vk = key.verifying_key();
            if pem {
                print!("{}", keys::public_pem(&vk));
            } else {
                println!("{}", keys::public_b64(&vk));
            }
        }
        ReportAction::Get {
            period,
            revision,
            out,
        } => {
            let cfg = need()?;
            let store = Store::open_reader(&cfg.journal_path())?;
            let label = reports::ReportPeriod::parse(&period, cfg.report.regime)?.label();
            let (_, doc) = seal::revision(store.conn(), &label, revision)?
                .ok_or_else(|| reports::ReportError::NotSealed(label.clone()))?;
            match out {
                Some(p) => {
                    std::fs::write(&p, &doc).with_context(|| format!("ghi {}", p.display()))?
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&doc)?;
                }
            }
        }
        ReportAction::List => {
            let cfg = need()?;
            let store = Store::open_reader(&cfg.journal_path())?;
            for p in service::list(store.conn(), cfg, now)? {
                let window = format!(
                    "{} – {}",
                    text::parse_time(&p.window_start).map_or_else(String::new, text::date),
                    text::parse_time(&p.window_end)
                        .map_or_else(String::new, |t| text::date(t - chrono::Duration::days(1)))
                );
                println!(
                    "Kỳ {} ({window}): {}",
                    p.period,
                    text::report_state(&p.state)
                );
                if let (Some(rev), Some(digest), Some(at)) = (p.revision, &p.digest, p.sealed_at) {
                    println!(
                        "    phiên bản {rev}, niêm phong lúc {} bởi {}; {digest}",
                        text::date_time(at.with_timezone(&reports::period::vn())),
                        p.sealed_by.as_deref().unwrap_or("?")
                    );
                }
                if p.open_drafts > 0 || p.late_events > 0 {
                    println!(
                        "    {} sự kiện đến muộn, {} bản nháp đính chính chờ duyệt",
                        text::exact(p.late_events as f64),
                        p.open_drafts
                    );
                }
            }
        }
        ReportAction::Drafts { period } => {
            let cfg = need()?;
            let store = Store::open_reader(&cfg.journal_path())?;
            for d in seal::drafts(store.conn(), period.as_deref())? {
                println!(
                    "#{} kỳ {}: {} · {} sự kiện muộn · {} giá trị thay đổi · lập lúc {}",
                    d.id,
                    d.period,
                    text::draft_state(&d.state),
                    text::exact(d.late_events as f64),
                    d.changes.len(),
                    text::date_time(d.created_at.with_timezone(&reports::period::vn()))
                );
                for c in &d.changes {
                    println!(
                        "    {} / {}: {} → {}",
                        c.scope,
                        c.indicator,
                        c.from.map_or("không có".into(), text::exact),
                        c.to.map_or("không có".into(), text::exact)
                    );
                }
            }
        }
        ReportAction::Approve {
            period,
            draft,
            reason,
            by,
        } => {
            let cfg = need()?;
            let (mut store, accounts) = open(cfg)?;
            let o = app::reports::approve(
                &mut store,
                &accounts,
                &actor(Some(&by)),
                cfg,
                &period,
                draft,
                &reason,
                now,
            )?;
            println!(
                "Đã duyệt đính chính kỳ {} (phiên bản {}).",
                o.period, o.revision
            );
            println!("{}", o.digest);
        }
        ReportAction::Dismiss {
            period,
            draft,
            reason,
            by,
        } => {
            let cfg = need()?;
            let (store, accounts) = open(cfg)?;
            app::reports::dismiss(
                &store,
                &accounts,
                &actor(Some(&by)),
                &period,
                draft,
                &reason,
                now,
            )?;
            println!("Đã bỏ bản nháp đính chính #{draft} của kỳ {period}.");
        }
        ReportAction::Export {
            period,
            format,
            revision,
            out,
        } => super::report_out::export(need()?, &period, &format, revision, out.as_deref())?,
        ReportAction::Submit { period, by } => {
            let cfg = need()?;
            let (mut store, accounts) = open(cfg)?;
            super::report_out::submit(cfg, &mut store, &accounts, &actor(Some(&by)), &period)?
        }
    }
    Ok(())
}

fn fail(reason: impl std::fmt::Display) -> ! {
    eprintln!("KHÔNG HỢP LỆ: {reason}");
    std::process::exit(2)
}

fn verify(
    cfg: Option<&Config>,
    file: &Path,
    recompute: bool,
    previous: Option<&Path>,
    key: Option<&str>,
) -> Result<()> {
    use base64::Engine as _;
    let doc = std::fs::read(file).with_context(|| format!("không đọc được {}", file.display()))?;
    let previous = previous
        .map(|p| std::fs::read(p).with_context(|| format!("không đọc được {}", p.display())))
        .transpose()?;
    let mut pinned = match key {
        Some(k) => {
            let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .context("--key phải là khoá công khai base64 (32 byte) như `report key` in ra")?;
            Some(
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .context("--key không phải khoá Ed25519")?,
            )
        }
        None => None,
    };
    // The store's view: the commune's key, its copy and the previous revision.
    let mut stored = None;
    let mut prev_stored = None;
    let store = match cfg {
        Some(c) if c.journal_path().exists() => Some(Store::open_reader(&c.journal_path())?),
        _ => None,
    };
    if let (Some(c), Some(store)) = (cfg, &store) {
        if pinned.is_none() {
            pinned = keys::load_public(&keys::key_path(c))?;
        }
        // Read what the file claims to be, to fetch the store's copies.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&doc) {
            let label = v.pointer("/period/label").and_then(|x| x.as_str());
            let rev = v.get("revision").and_then(|x| x.as_u64()).map(|r| r as u32);
            if let (Some(label), Some(rev)) = (label, rev) {
                stored = seal::revision(store.conn(), label, Some(rev))?.map(|(_, d)| d);
                if rev > 0 {
                    prev_stored =
                        seal::revision(store.conn(), label, Some(rev - 1))?.map(|(_, d)| d);
                }
            }
        }
    }
    let trust = Trust {
        key: pinned.as_ref(),
        previous: previous.as_deref().or(prev_stored.as_deref()),
        stored: stored.as_deref(),
    };
    let v = match reports::verify(&doc, &trust) {
        Ok(v) => v,
        Err(e) => fail(e),
    };
    if v.snapshot.revision > 0 && trust.previous.is_none() {
        fail(reports::VerifyError::Chain(format!(
            "không có phiên bản {} để đối chiếu `supersedes` (dùng --previous hoặc --config)",
            v.snapshot.revision - 1
        )));
    }
    if recompute {
        let (Some(c), Some(store)) = (cfg, &store) else {
            anyhow::bail!("--recompute cần kho sự kiện (--config)");
        };
        let engine = Engine::new(c);
        if let Err(e) = service::recompute(store.conn(), c, &engine, &v.snapshot) {
            fail(e);
        }
    }
    println!(
        "HỢP LỆ: kỳ {} phiên bản {}, {}",
        v.snapshot.period.label, v.snapshot.revision, v.digest
    );
    if !v.key_pinned {
        println!("Lưu ý: chưa đối chiếu với khoá của xã (dùng --key hoặc --config): chữ ký chỉ chứng minh tệp nguyên vẹn.");
    }
    if recompute {
        println!("Tính lại từ nhật ký sự kiện: khớp.");
    }
    Ok(())
}
