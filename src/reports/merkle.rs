//! Canonical event hashes and an RFC 6962 Merkle tree kept as a frontier
//! (the roots of its perfect subtrees, largest first), so a stream's root
//! is maintained in O(log n) space as events are committed and read at
//! seal time without rescanning the events.
//!
//! - event hash = SHA-256 of the RFC 8785 canonical JSON of the event as
//!   stored (`dedup_key`, `source`, `kind`, `device`, `village`, `ts` in
//!   ms, `seq`, `attrs` as the stored JSON text, `payload_sha256`);
//! - leaf = SHA-256(0x00 ‖ event hash), node = SHA-256(0x01 ‖ l ‖ r),
//!   empty tree = SHA-256("") (RFC 6962 §2.1).

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A 32-byte hash.
pub type Hash = [u8; 32];

/// An event's stored columns, as hashed.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    /// Dedup key.
    pub dedup_key: &'a str,
    /// Source family.
    pub source: &'a str,
    /// Event kind.
    pub kind: &'a str,
    /// Device id.
    pub device: Option<&'a str>,
    /// Village id.
    pub village: Option<&'a str>,
    /// Event time, ms since the epoch.
    pub ts: i64,
    /// Sequence number.
    pub seq: Option<i64>,
    /// Attributes: the stored JSON text.
    pub attrs: &'a str,
    /// The raw payload (its SHA-256 is included).
    pub payload: &'a [u8],
}

#[derive(Serialize)]
struct Canonical<'a> {
    dedup_key: &'a str,
    source: &'a str,
    kind: &'a str,
    device: Option<&'a str>,
    village: Option<&'a str>,
    ts: i64,
    seq: Option<i64>,
    attrs: &'a str,
    payload_sha256: String,
}

/// The canonical hash of an event.
pub fn event_hash(r: &EventRecord<'_>) -> Hash {
    let c = Canonical {
        dedup_key: r.dedup_key,
        source: r.source,
        kind: r.kind,
        device: r.device,
        village: r.village,
        ts: r.ts,
        seq: r.seq,
        attrs: r.attrs,
        payload_sha256: hex::encode(Sha256::digest(r.payload)),
    };
    // A struct of strings and integers always serializes.
    let bytes = serde_jcs::to_vec(&c).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

fn leaf(h: &Hash) -> Hash {
    let mut d = Sha256::new();
    d.update([0u8]);
    d.update(h);
    d.finalize().into()
}

fn node(l: &Hash, r: &Hash) -> Hash {
    let mut d = Sha256::new();
    d.update([1u8]);
    d.update(l);
    d.update(r);
    d.finalize().into()
}

/// An append-only Merkle tree, as its frontier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    count: u64,
    /// Roots of the perfect subtrees, one per set bit of `count`, largest
    /// (leftmost) first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// Number of leaves.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Append an event hash.
    pub fn push(&mut self, event: &Hash) {
        let mut h = leaf(event);
        let mut n = self.count;
        while n & 1 == 1 {
            let left = self.peaks.pop().unwrap_or_default();
            h = node(&left, &h);
            n >>= 1;
        }
        self.peaks.push(h);
        self.count += 1;
    }

    /// The RFC 6962 Merkle tree hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(last) = it.next() else {
            return Sha256::digest([]).into();
        };
        it.fold(*last, |acc, p| node(p, &acc))
    }

    /// `sha256:` + hex of the root.
    pub fn root_text(&self) -> String {
        format!("sha256:{}", hex::encode(self.root()))
    }

    /// Stored form: the peaks concatenated.
    pub fn peaks_bytes(&self) -> Vec<u8> {
        self.peaks.concat()
    }

    /// From the stored form; `None` when it does not fit `count`.
    pub fn from_parts(count: u64, bytes: &[u8]) -> Option<Frontier> {
        if bytes.len() != count.count_ones() as usize * 32 {
            return None;
        }
        let peaks = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        Some(Frontier { count, peaks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 §2.1 computed recursively, as the reference.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaf(&leaves[0]),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_matches_the_recursive_definition() {
        let leaves: Vec<Hash> = (0u32..70)
            .map(|i| Sha256::digest(i.to_be_bytes()).into())
            .collect();
        let mut f = Frontier::default();
        assert_eq!(f.root(), mth(&[]));
        for n in 1..=leaves.len() {
            f.push(&leaves[n - 1]);
            assert_eq!(f.root(), mth(&leaves[..n]), "{n} leaves");
            let back = Frontier::from_parts(f.count(), &f.peaks_bytes()).unwrap();
            assert_eq!(back, f);
        }
        assert!(Frontier::from_parts(3, &[0u8; 32]).is_none());
    }

    #[test]
    fn event_hash_covers_every_field() {
        let base = EventRecord {
            dedup_key: "k",
            source: "procedure",
            kind: "received",
            device: None,
            village: Some("a"),
            ts: 1,
            seq: None,
            attrs: "{}",
            payload: b"p",
        };
        let h = event_hash(&base);
        let variants = [
            EventRecord { ts: 2, ..base },
            EventRecord {
                village: Some("b"),
                ..base
            },
            EventRecord {
                attrs: "{\"x\":1}",
                ..base
            },
            EventRecord {
                payload: b"q",
                ..base
            },
            EventRecord {
                seq: Some(1),
                ..base
            },
        ];
        for v in variants {
            assert_ne!(event_hash(&v), h);
        }
        assert_eq!(event_hash(&base), h);
    }
}
