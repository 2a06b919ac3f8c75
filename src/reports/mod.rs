//! Sealed periodic reports (issue 13): periods of a regime, the snapshot
//! computed from the journal, per-stream manifests with incremental Merkle
//! roots, the RFC 8785 + SHA-256 + Ed25519 seal, verification, the ledger
//! of late events and corrections. See docs/REPORTS.md.
//!
//! `reports::export` (xlsx, CSV, DHIS2) belongs to the delivery side and
//! reads only [`Snapshot`].

pub mod export;
pub mod period;
pub mod snapshot;

pub use period::{BadPeriod, PeriodKind, ReportPeriod};
pub use snapshot::{
    CorrectionInfo, IndicatorRow, Lineage, Manifest, OrgUnit, PeriodInfo, RegimeInfo, RowStatus,
    ScopeValues, Signature, Snapshot, SnapshotStatus, StreamManifest, SCHEMA,
};

pub mod compute;
pub mod intake;
pub mod keys;
pub mod merkle;
pub mod seal;
pub mod service;
pub mod task;
pub mod verify;

pub use verify::{verify, Trust, Verified, VerifyError};

/// Errors of sealing, corrections and the report tables.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// SQLite failed.
    #[error("lỗi cơ sở dữ liệu báo cáo: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A stored row or document could not be read back.
    #[error("dữ liệu báo cáo hỏng: {0}")]
    Corrupt(String),
    /// The signing key could not be read or made.
    #[error("khoá ký báo cáo: {0}")]
    Key(String),
    /// Not a period label.
    #[error(transparent)]
    Period(#[from] BadPeriod),
    /// The period's cutoff (end + grace) has not passed.
    #[error("Kỳ {period} chưa khoá sổ: chỉ niêm phong được từ {until} (hết kỳ cộng thời gian chờ dữ liệu đến muộn)")]
    NotClosed {
        /// Period label.
        period: String,
        /// When it can be sealed.
        until: String,
    },
    /// No such draft for the period.
    #[error("Không có bản nháp đính chính số {0} cho kỳ này")]
    NoDraft(i64),
    /// The draft was decided or superseded.
    #[error("Bản nháp đính chính số {id} đã ở trạng thái `{state}`")]
    DraftClosed {
        /// Draft id.
        id: i64,
        /// Its state.
        state: String,
    },
    /// A correction needs a reason.
    #[error("Đính chính cần ghi lý do")]
    NoReason,
    /// Nothing sealed for the period.
    #[error("Kỳ {0} chưa được niêm phong")]
    NotSealed(String),
}
