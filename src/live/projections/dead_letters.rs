//! `dead_letters`: dead letters since the server started, by reason, and
//! the last one.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{push_serde, Context, LiveValue, Out, Pass, Print, Projection};
use crate::indicators::COMMUNE;
use crate::live::keys::{Family, KeyInfo};
use crate::state::DeadNote;

/// The family.
pub static FAMILY: Family = Family {
    name: "dead_letters",
    aliases: &[],
    arity: 0,
};

/// Dead letters since the server started.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DeadSummary {
    since_start: u64,
    by_reason: BTreeMap<&'static str, u64>,
    last: Option<DeadNote>,
}

/// The dead-letter projection.
#[derive(Debug, Default)]
pub struct DeadLetters {
    key: Option<Arc<KeyInfo>>,
    summary: DeadSummary,
}

impl Projection for DeadLetters {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, _index: usize, _segment: &str) -> bool {
        false
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        let mut any = false;
        for n in cx.commits.iter().flat_map(|c| &c.dead) {
            self.summary.since_start += 1;
            *self.summary.by_reason.entry(n.reason).or_insert(0) += 1;
            self.summary.last = Some(n.clone());
            any = true;
        }
        if !any && cx.pass != Pass::Start {
            return;
        }
        let key = self
            .key
            .get_or_insert_with(|| out.key(&FAMILY, Vec::new(), COMMUNE))
            .clone();
        let print = Print {
            all: self.summary.since_start,
            fixed: 0,
        };
        out.offer(&key, print, self.summary.clone());
    }
}

impl LiveValue for DeadSummary {
    /// When the last dead letter was received.
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.last.as_ref().map(|d| d.received_at)
    }

    fn write_whole(&self, out: &mut String) {
        push_serde(out, self);
    }
}
