//! The `serve` task: every `report.check_interval_secs`, seal the latest
//! closed period of each configured kind once its grace has passed, and
//! turn late events that move a sealed value into correction drafts. It
//! uses a store connection of its own; seals are audited as `system`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::{keys, service};
use crate::auth::{Accounts, NewAudit};
use crate::indicators::Engine;
use crate::journal::Store;
use crate::state::Shared;

/// Run until cancelled.
pub async fn run(shared: Arc<Shared>, accounts: Arc<Accounts>, cancel: CancellationToken) {
    let every = Duration::from_secs(shared.config.report.check_interval_secs.max(1));
    let conn: Arc<Mutex<Option<Store>>> = Arc::new(Mutex::new(None));
    // The first look one interval after start (not while starting up).
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let (shared, accounts, slot) = (
            Arc::clone(&shared),
            Arc::clone(&accounts),
            Arc::clone(&conn),
        );
        let result = tokio::task::spawn_blocking(move || -> Result<(), super::ReportError> {
            let config = &shared.config;
            let mut guard = slot.lock();
            if guard.is_none() {
                *guard = Some(Store::open_with(
                    &config.journal_path(),
                    config.store.sync,
                    0,
                )?);
            }
            let Some(store) = guard.as_mut() else {
                return Ok(());
            };
            let key = keys::load_or_create(&keys::key_path(config))?;
            let engine = Engine::new(config);
            let tick = service::tick(store.conn_mut(), config, &engine, &key, chrono::Utc::now())?;
            for s in &tick.sealed {
                let object = format!("report:{}", s.period);
                accounts.audit(&NewAudit::system("report_seal", Some(&object), &s.digest));
            }
            for d in &tick.drafts {
                let object = format!("report_draft:{d}");
                accounts.audit(&NewAudit::system(
                    "report_correction_draft",
                    Some(&object),
                    "late events",
                ));
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "report task failed; retrying at the next tick");
                *conn.lock() = None;
            }
            Err(e) => tracing::error!(error = %e, "report task panicked"),
        }
    }
}
