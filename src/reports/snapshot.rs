//! The sealed snapshot document (`vn-ioc-monthly-snapshot/1`): what is
//! signed, stored as bytes, served by `GET /api/reports/{period}`, and
//! read by the exports. Its shape is a contract with `reports::export`
//! and with the province: add optional fields only.
//!
//! The document is the canonical JSON (RFC 8785) of a [`Snapshot`]. Its id
//! is `sha256:` + the SHA-256 of the canonical JSON of the snapshot
//! *without* its `signature` member; the signature is Ed25519 over those
//! same canonical bytes. Times are RFC 3339 strings in +07:00.

use serde::{Deserialize, Serialize};

/// The `schema` of every snapshot this version writes.
pub const SCHEMA: &str = "vn-ioc-monthly-snapshot/1";

/// A sealed (or correcting) report snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The report's code (config `report.code`), e.g. `IOC_XA_THANG`.
    pub report_code: String,
    /// How the period was cut.
    pub regime: RegimeInfo,
    /// The commune.
    pub org_unit: OrgUnit,
    /// The period: label and window, apart.
    pub period: PeriodInfo,
    /// 0 for the first seal, n + 1 for a correction of revision n.
    pub revision: u32,
    /// The id (`sha256:…`) of the revision this one corrects.
    pub supersedes: Option<String>,
    /// `sealed` (revision 0) or `correction`.
    pub status: SnapshotStatus,
    /// Revision 0: the period's end plus the grace (derived, so that
    /// sealing twice gives the same bytes); a correction: when it was
    /// approved. The wall-clock time of the seal is kept in the store,
    /// outside the signed body.
    pub sealed_at: String,
    /// Events with an event time in the window count when they were
    /// received before this instant; later ones go to the late ledger.
    pub late_cutoff: String,
    /// Why and by whom a correction was made (`None` for revision 0).
    pub correction: Option<CorrectionInfo>,
    /// Every indicator, for the commune first, then each village in
    /// config order.
    pub values: Vec<ScopeValues>,
    /// What the values were computed from.
    pub manifest: Manifest,
    /// The commune's Ed25519 signature (absent only while building).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// The regime of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegimeInfo {
    /// `nd09` or `calendar`.
    pub code: String,
    /// E.g. `NĐ 09/2019/NĐ-CP Điều 12` or `Tháng dương lịch`.
    pub legal_basis: String,
    /// 15 under NĐ 09, 1 for calendar months.
    pub cut_day: u32,
    /// Grace after the window's end, seconds, for late deliveries.
    pub grace_secs: u64,
}

/// The reporting unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgUnit {
    /// The commune's code for the province (config `report.org_code`, or
    /// the commune id).
    pub code: String,
    /// The commune id used in topics.
    pub id: String,
    /// Display name, e.g. `Xã Bình Lư`.
    pub name: String,
    /// The parent unit (province) code or name.
    pub parent: String,
}

/// The period: its label and its window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodInfo {
    /// `2026-06`, `2026-Q2`, `2026-H1`, `2026`.
    pub label: String,
    /// `month`, `quarter`, `half`, `year`.
    pub kind: super::PeriodKind,
    /// The DHIS2 period id of the label (`202606`, `2026Q2`, `2026S1`).
    pub dhis2: String,
    /// Inclusive start, RFC 3339 +07:00.
    pub window_start: String,
    /// Exclusive end, RFC 3339 +07:00.
    pub window_end: String,
}

/// The document's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// The first seal of the period.
    Sealed,
    /// A correcting revision.
    Correction,
}

/// A correction's reason and approver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectionInfo {
    /// Why (free text from the approving user).
    pub reason: String,
    /// The approving user.
    pub approved_by: String,
    /// How many late events it takes in.
    pub late_events: u64,
}

/// The values of one scope (the commune or a village).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeValues {
    /// `commune` or a village id.
    pub scope: String,
    /// The commune's or village's name.
    pub name: String,
    /// One row per indicator, in config order.
    pub indicators: Vec<IndicatorRow>,
}

/// One indicator in one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorRow {
    /// Indicator id (config).
    pub indicator: String,
    /// Vietnamese name.
    pub name: String,
    /// `count`, `ratio`, `latest`, `availability`, `freshness`,
    /// `dead_letters`.
    pub kind: String,
    /// The value (rounded to 4 decimals); `None` when there is no data
    /// (never 0 % for no data).
    pub value: Option<f64>,
    /// Unit (`%`, `hồ sơ`…).
    pub unit: String,
    /// Numerator of a ratio.
    pub numerator: Option<f64>,
    /// Denominator of a ratio.
    pub denominator: Option<f64>,
    /// Target as written, e.g. `>= 90`.
    pub target: Option<String>,
    /// Against the target.
    pub status: RowStatus,
    /// What fed the value.
    pub lineage: Lineage,
}

/// A value against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Meets the target (or has none).
    Met,
    /// Misses the target.
    NotMet,
    /// Nothing to compute from.
    NoData,
}

/// The inputs of a value, at stream granularity: the streams its
/// definition reads, how many events they hold in the window, and a digest
/// over their Merkle roots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// A short hash of the indicator's definition (changes when the
    /// definition changes).
    pub query_id: String,
    /// Streams read (source families), sorted.
    pub streams: Vec<String>,
    /// Events of those streams in the window.
    pub input_count: u64,
    /// `sha256:` over the streams' Merkle roots in `streams` order.
    pub inputs_root: String,
}

/// What the snapshot was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// One entry per source family, sorted by name (every family, even
    /// empty ones).
    pub event_streams: Vec<StreamManifest>,
    /// `commune-ioc {version}` (and the git commit when built from one).
    pub code_version: String,
    /// A short hash over every indicator definition.
    pub ruleset_version: String,
}

/// One stream's events in the window (received before the cutoff).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamManifest {
    /// Source family: `camera`, `procedure`, `sensor`, `speaker`…
    pub stream: String,
    /// Number of events.
    pub count: u64,
    /// `sha256:` RFC 6962 Merkle tree hash over the canonical event hashes
    /// in journal order.
    pub merkle_root: String,
    /// Earliest event time, RFC 3339 +07:00 (`None` when empty).
    pub first_event_ts: Option<String>,
    /// Latest event time.
    pub last_event_ts: Option<String>,
}

/// An Ed25519 signature over the canonical body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Always `ed25519`.
    pub alg: String,
    /// The public key, base64 (32 bytes).
    pub public_key: String,
    /// The document id it signs (`sha256:…`).
    pub digest: String,
    /// The signature, base64 (64 bytes).
    pub value: String,
}

impl Snapshot {
    /// Every row of the commune and the villages, with its scope.
    pub fn rows(&self) -> impl Iterator<Item = (&ScopeValues, &IndicatorRow)> {
        self.values
            .iter()
            .flat_map(|s| s.indicators.iter().map(move |r| (s, r)))
    }
}
