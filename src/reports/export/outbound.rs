//! The `serve` task of the report's way out, every [`TICK`]:
//!
//! - with `report.province.auto_submit`, submits each sealed revision not
//!   submitted yet (audited as `system`, action `report_submit`);
//! - moves `submitted` revisions to `acknowledged` (the province's receipt
//!   kept) or `submission_failed` once the delivery outbox has an outcome;
//! - publishes the latest revision of each sealed period, retained, QoS 1,
//!   on `ioc/{commune}/report/{period}`, through the one MQTT connection
//!   (`crate::ingest::outlet`), so a province broker bridged to the
//!   commune's receives it. Each revision is published once per process
//!   start (retained: the broker keeps the last; a repeat after a restart
//!   overwrites it with the same bytes).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rumqttc::QoS;
use tokio_util::sync::CancellationToken;

use super::province;
use crate::auth::{Accounts, NewAudit};
use crate::reports::seal;
use crate::state::Shared;

/// How often the task looks.
pub const TICK: Duration = Duration::from_secs(1);

/// Most revisions published per tick (a store with years of reports
/// catches up over a few ticks).
const PUBLISH_PER_TICK: usize = 16;

/// The largest packet the publishing connection sends (the ingest
/// options' outgoing limit).
const MAX_PUBLISH: usize = 1024 * 1024;

/// The MQTT topic of a period's sealed report.
pub fn topic(commune: &str, period: &str) -> String {
    format!("ioc/{commune}/report/{period}")
}

/// Run until cancelled.
pub async fn run(shared: Arc<Shared>, accounts: Arc<Accounts>, cancel: CancellationToken) {
    let conn: Arc<Mutex<Option<rusqlite::Connection>>> = Arc::new(Mutex::new(None));
    let mut published: HashSet<String> = HashSet::new();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let (s, a, slot) = (
            Arc::clone(&shared),
            Arc::clone(&accounts),
            Arc::clone(&conn),
        );
        let skip = published.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock();
            if guard.is_none() {
                *guard = Some(crate::store::open(
                    &s.config.journal_path(),
                    s.config.store.sync,
                ).map_err(|e| e.to_string())?);
            }
            let Some(conn) = guard.as_mut() else {
                return Ok((Vec::new(), false));
            };
            let mut woke = false;
            let p = &s.config.report.province;
            if p.auto_submit && !p.target.is_empty() {
                for (period, _, digest) in province::pending_auto(conn).map_err(|e| e.to_string())? {
                    let object = format!("report:{period}");
                    match province::submit(conn, &s.config, &period, chrono::Utc::now()) {
                        Ok(sub) => {
                            woke = true;
                            a.audit(&NewAudit::system("report_submit", Some(&object), &digest));
                            tracing::info!(%period, revision = sub.revision, "report submitted to the province by itself");
                        }
                        Err(e) => {
                            tracing::error!(%period, error = %e, "automatic report submission failed");
                            break;
                        }
                    }
                }
            }
            for (digest, state) in province::reconcile(conn, chrono::Utc::now()).map_err(|e| e.to_string())? {
                tracing::info!(%digest, %state, "report submission settled");
            }
            // Latest revisions to publish.
            let mut out = Vec::new();
            for st in seal::all(conn).map_err(|e| e.to_string())?.into_iter().rev() {
                if out.len() >= PUBLISH_PER_TICK {
                    break;
                }
                if skip.contains(&st.digest) || out.iter().any(|(p, _, _): &(String, String, Vec<u8>)| *p == st.period) {
                    continue;
                }
                if let Some((latest, doc)) = seal::latest(conn, &st.period).map_err(|e| e.to_string())? {
                    if latest.digest == st.digest {
                        out.push((st.period, st.digest, doc));
                    }
                }
            }
            Ok::<_, String>((out, woke))
        })
        .await;
        let (to_publish, woke) = match done {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "report delivery task failed; retrying");
                *conn.lock() = None;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "report delivery task panicked");
                continue;
            }
        };
        if woke {
            crate::delivery::wake(&shared);
        }
        for (period, digest, doc) in to_publish {
            let t = topic(&shared.config.commune.id, &period);
            if doc.len() + t.len() + 64 > MAX_PUBLISH {
                tracing::warn!(topic = %t, bytes = doc.len(), "sealed report too large for MQTT; not published");
                published.insert(digest);
                continue;
            }
            match shared.outlet.try_publish(&t, QoS::AtLeastOnce, true, doc) {
                Ok(()) => {
                    tracing::info!(topic = %t, %digest, "sealed report published (retained)");
                    published.insert(digest);
                }
                // Not connected yet, or the request queue is full: try
                // again next tick.
                Err(e) => {
                    tracing::debug!(error = %e, "report publish deferred");
                    break;
                }
            }
        }
    }
}
