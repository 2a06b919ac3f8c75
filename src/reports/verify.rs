//! Checking a sealed document: form, digest, signature, signer and the
//! revision chain; and, with the journal, recomputing its values. The
//! province side calls [`verify`] with the commune's public key.

use base64::Engine as _;
use ed25519_dalek::{Signature as EdSignature, VerifyingKey};

use super::seal::{canonical_body, digest_text};
use super::snapshot::{Snapshot, SnapshotStatus, SCHEMA};

/// Why a document fails verification (Vietnamese, for the operator).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// Not a snapshot at all.
    #[error("Tệp không phải báo cáo niêm phong hợp lệ: {0}")]
    Malformed(String),
    /// Another schema.
    #[error("Lược đồ `{0}` không được hỗ trợ (cần {SCHEMA})")]
    Schema(String),
    /// No signature.
    #[error("Báo cáo không có chữ ký")]
    Unsigned,
    /// The body no longer hashes to the signed digest.
    #[error("Nội dung báo cáo đã bị sửa sau khi niêm phong: mã băm hiện tại {actual} khác mã đã ký {declared}{detail}")]
    Digest {
        /// The digest in the signature.
        declared: String,
        /// The digest of the body as it is.
        actual: String,
        /// What changed, when the sealed copy is at hand.
        detail: String,
    },
    /// The signature does not verify.
    #[error("Chữ ký không hợp lệ: {0}")]
    Signature(String),
    /// Signed by a key that is not the commune's.
    #[error("Báo cáo được ký bằng khoá {found}, không phải khoá của xã ({expected})")]
    WrongKey {
        /// The document's key.
        found: String,
        /// The commune's key.
        expected: String,
    },
    /// The bytes are not the canonical form of the content.
    #[error("Tệp đã bị sửa: không còn đúng dạng JSON chuẩn hoá (RFC 8785) như khi niêm phong")]
    NotCanonical,
    /// The revision chain is broken.
    #[error("Chuỗi phiên bản sai: {0}")]
    Chain(String),
    /// The stored copy differs.
    #[error("Tệp khác bản đã niêm phong trong kho: {0}")]
    Stored(String),
    /// Recomputing from the journal gives other values.
    #[error("Tính lại từ nhật ký sự kiện cho kết quả khác: {0}")]
    Recompute(String),
}

/// What to check against.
#[derive(Debug, Clone, Default)]
pub struct Trust<'a> {
    /// The commune's public key (without it the document's own key is
    /// used, which proves integrity, not origin).
    pub key: Option<&'a VerifyingKey>,
    /// The document of revision n − 1, for a correction.
    pub previous: Option<&'a [u8]>,
    /// The store's copy of the same period and revision.
    pub stored: Option<&'a [u8]>,
}

/// A document that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The parsed snapshot.
    pub snapshot: Snapshot,
    /// Its id.
    pub digest: String,
    /// Whether the signer was checked against a known key.
    pub key_pinned: bool,
}

fn parse(doc: &[u8]) -> Result<Snapshot, VerifyError> {
    let s: Snapshot =
        serde_json::from_slice(doc).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if s.schema != SCHEMA {
        return Err(VerifyError::Schema(s.schema));
    }
    Ok(s)
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "không có".into(), super::export::text::exact)
}

/// The first difference between a sealed snapshot and a changed one, in
/// words.
pub fn difference(sealed: &Snapshot, given: &Snapshot) -> Option<String> {
    if sealed.supersedes != given.supersedes {
        return Some(format!(
            "liên kết phiên bản (supersedes) {} → {}",
            sealed.supersedes.as_deref().unwrap_or("không có"),
            given.supersedes.as_deref().unwrap_or("không có")
        ));
    }
    if sealed.revision != given.revision {
        return Some(format!(
            "số phiên bản {} → {}",
            sealed.revision, given.revision
        ));
    }
    if sealed.period != given.period {
        return Some(format!(
            "kỳ báo cáo {} → {}",
            sealed.period.label, given.period.label
        ));
    }
    let scopes = |s: &Snapshot| {
        s.values
            .iter()
            .map(|v| format!("{} ({})", v.scope, v.name))
            .collect::<Vec<_>>()
    };
    if scopes(sealed) != scopes(given) {
        return Some(format!(
            "danh sách xã/thôn [{}] → [{}]",
            scopes(sealed).join(", "),
            scopes(given).join(", ")
        ));
    }
    for (a, b) in sealed.values.iter().zip(&given.values) {
        let where_ = |ind: &str| {
            format!(
                "chỉ tiêu `{ind}` ({} `{}`)",
                if a.scope == "commune" { "xã" } else { "thôn" },
                a.scope
            )
        };
        if a.indicators.len() != b.indicators.len() {
            return Some(format!("số chỉ tiêu của `{}`", a.scope));
        }
        for (x, y) in a.indicators.iter().zip(&b.indicators) {
            if x.value != y.value {
                return Some(format!(
                    "giá trị {}: {} → {}",
                    where_(&x.indicator),
                    num(x.value),
                    num(y.value)
                ));
            }
            if x.target != y.target {
                return Some(format!(
                    "mục tiêu {}: {} → {}",
                    where_(&x.indicator),
                    x.target.as_deref().unwrap_or("không có"),
                    y.target.as_deref().unwrap_or("không có")
                ));
            }
            if x.status != y.status {
                return Some(format!("trạng thái {}", where_(&x.indicator)));
            }
            if x != y {
                return Some(format!("dòng {}", where_(&x.indicator)));
            }
        }
    }
    if sealed.manifest != given.manifest {
        return Some("bảng kê sự kiện (manifest)".into());
    }
    if sealed.correction != given.correction {
        return Some("lý do hoặc người duyệt đính chính".into());
    }
    Some("phần đầu báo cáo (đơn vị, chế độ, thời điểm)".into())
}

/// Verify a document. With `trust.stored`, a changed body is described
/// field by field.
pub fn verify(doc: &[u8], trust: &Trust<'_>) -> Result<Verified, VerifyError> {
    let snap = parse(doc)?;
    let sig = snap.signature.clone().ok_or(VerifyError::Unsigned)?;
    if sig.alg != "ed25519" {
        return Err(VerifyError::Signature(format!("thuật toán `{}`", sig.alg)));
    }
    let body = canonical_body(&snap).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let actual = digest_text(&body);
    if actual != sig.digest {
        let detail = trust
            .stored
            .and_then(|s| parse(s).ok())
            .and_then(|sealed| difference(&sealed, &snap))
            .map(|d| format!(" (đã đổi: {d})"))
            .unwrap_or_default();
        return Err(VerifyError::Digest {
            declared: sig.digest,
            actual,
            detail,
        });
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key_bytes: [u8; 32] = b64
        .decode(&sig.public_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| VerifyError::Signature("khoá công khai hỏng".into()))?;
    let doc_key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| VerifyError::Signature(format!("khoá công khai hỏng: {e}")))?;
    let sig_bytes: [u8; 64] = b64
        .decode(&sig.value)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| VerifyError::Signature("chữ ký hỏng (không phải 64 byte base64)".into()))?;
    doc_key
        .verify_strict(&body, &EdSignature::from_bytes(&sig_bytes))
        .map_err(|_| VerifyError::Signature("chữ ký không khớp nội dung".into()))?;
    if let Some(k) = trust.key {
        if k != &doc_key {
            return Err(VerifyError::WrongKey {
                found: sig.public_key,
                expected: b64.encode(k.as_bytes()),
            });
        }
    }
    let canonical = serde_jcs::to_vec(&snap).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if canonical != doc {
        return Err(VerifyError::NotCanonical);
    }
    // The chain.
    match (
        snap.revision,
        &snap.supersedes,
        snap.status,
        &snap.correction,
    ) {
        (0, None, SnapshotStatus::Sealed, None) => {}
        (0, _, _, _) => {
            return Err(VerifyError::Chain(
                "phiên bản 0 không được thay thế phiên bản nào và không phải đính chính".into(),
            ))
        }
        (_, Some(_), SnapshotStatus::Correction, Some(_)) => {}
        (n, _, _, _) => {
            return Err(VerifyError::Chain(format!(
                "phiên bản {n} phải là đính chính có `supersedes`, lý do và người duyệt"
            )))
        }
    }
    if let Some(prev) = trust.previous {
        let p = parse(prev).map_err(|e| VerifyError::Chain(format!("phiên bản trước: {e}")))?;
        let prev_digest = canonical_body(&p)
            .map(|b| digest_text(&b))
            .map_err(|e| VerifyError::Chain(e.to_string()))?;
        if p.period.label != snap.period.label || p.revision + 1 != snap.revision {
            return Err(VerifyError::Chain(format!(
                "phiên bản trước là {} bản {}, không phải {} bản {}",
                p.period.label,
                p.revision,
                snap.period.label,
                snap.revision.saturating_sub(1)
            )));
        }
        if snap.supersedes.as_deref() != Some(prev_digest.as_str()) {
            return Err(VerifyError::Chain(format!(
                "`supersedes` {} không phải mã của phiên bản trước {prev_digest}",
                snap.supersedes.as_deref().unwrap_or("không có")
            )));
        }
    }
    if let Some(stored) = trust.stored {
        if stored != doc {
            let detail = parse(stored)
                .ok()
                .and_then(|s| difference(&s, &snap))
                .unwrap_or_else(|| "nội dung khác".into());
            return Err(VerifyError::Stored(detail));
        }
    }
    Ok(Verified {
        snapshot: snap,
        digest: actual,
        key_pinned: trust.key.is_some(),
    })
}
