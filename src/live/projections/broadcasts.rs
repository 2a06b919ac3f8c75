//! `broadcasts`: loudspeaker broadcasts with their coverage per cluster
//! and village, the open manual tasks (village head's name and phone) and
//! the indicators, as one value for the commune (docs/PROTOCOL.md §7.9):
//! the same document as `GET /api/broadcasts`.
//!
//! The broadcasts worker recomputes the overview after every change it
//! makes and publishes it to `Shared::broadcasts`; this projection offers
//! it whenever its version moved (checked on every pass).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Context, LiveValue, Out, Print, Projection};
use crate::indicators::COMMUNE;
use crate::live::keys::{Family, KeyInfo};

/// The family.
pub static FAMILY: Family = Family {
    name: "broadcasts",
    aliases: &["broadcast"],
    arity: 0,
};

/// The broadcasts projection.
#[derive(Debug, Default)]
pub struct Broadcasts {
    key: Option<Arc<KeyInfo>>,
}

/// The value: the overview document.
#[derive(Debug)]
pub struct Overview {
    value: Arc<serde_json::Value>,
    at: DateTime<Utc>,
}

impl LiveValue for Overview {
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        Some(self.at)
    }

    fn write_whole(&self, out: &mut String) {
        super::push_serde(out, &*self.value);
    }
}

impl Projection for Broadcasts {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, _index: usize, _segment: &str) -> bool {
        false
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        let (version, value) = cx.shared.broadcasts.get();
        let Some(value) = value else {
            return;
        };
        let key = self
            .key
            .get_or_insert_with(|| out.key(&FAMILY, Vec::new(), COMMUNE))
            .clone();
        let print = Print {
            all: version,
            fixed: 0,
        };
        if out.unchanged(&key, print.all) {
            return;
        }
        out.offer(&key, print, Overview { value, at: cx.now });
    }
}
