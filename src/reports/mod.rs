//! Sealed periodic reports (issue 13): periods of a regime, the snapshot
//! computed from the journal, per-stream manifests with incremental Merkle
//! roots, the RFC 8785 + SHA-256 + Ed25519 seal, verification, the ledger
//! of late events and corrections. See docs/REPORTS.md.
//!
//! `reports::export` (xlsx, CSV, DHIS2) belongs to the delivery side and
//! reads only [`Snapshot`].

pub mod period;
pub mod snapshot;

pub use period::{BadPeriod, PeriodKind, ReportPeriod};
pub use snapshot::{
    CorrectionInfo, IndicatorRow, Lineage, Manifest, OrgUnit, PeriodInfo, RegimeInfo, RowStatus,
    ScopeValues, Signature, Snapshot, SnapshotStatus, StreamManifest, SCHEMA,
};
