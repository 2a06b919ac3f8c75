//! `alerts`: the commune's current alerts (firing, and resolved in the
//! last hour) with their lifecycle state, and the alert indicators (by
//! status, time to acknowledge), as one value (docs/PROTOCOL.md §7.9).
//!
//! The alerts engine (`crate::alerts`) publishes the board in
//! `Shared::alerts`; this projection offers it whenever its version moved
//! (checked on every step, clock ticks included). The value is sent whole.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{push_serde, Context, LiveValue, Out, Pass, Print, Projection};
use crate::alerts::BoardValue;
use crate::indicators::COMMUNE;
use crate::live::keys::{Family, KeyInfo};

/// The family.
pub static FAMILY: Family = Family {
    name: "alerts",
    aliases: &["alert"],
    arity: 0,
};

/// The alerts projection.
#[derive(Debug, Default)]
pub struct Alerts {
    key: Option<Arc<KeyInfo>>,
    seen: Option<u64>,
}

/// The value under the `alerts` key.
#[derive(Debug)]
struct Value(Arc<BoardValue>);

impl Projection for Alerts {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, _index: usize, _segment: &str) -> bool {
        false
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        let version = cx.shared.alerts.version();
        if self.seen == Some(version) && cx.pass != Pass::Start {
            return;
        }
        self.seen = Some(version);
        let key = self
            .key
            .get_or_insert_with(|| out.key(&FAMILY, Vec::new(), COMMUNE))
            .clone();
        let print = Print {
            all: version,
            fixed: version,
        };
        out.offer(&key, print, Value(cx.shared.alerts.get()));
    }
}

impl LiveValue for Value {
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.0.at
    }

    fn write_whole(&self, out: &mut String) {
        push_serde(out, &*self.0);
    }
}
