//! [`Service`]: what the HTTP API and the feed poller use: the validator,
//! the way into the commit pipeline (a bulletin is submitted like an MQTT
//! message and answered once committed), and reads of the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Checker;
use crate::config::Config;
use crate::model::Raw;
use crate::runtime::pipeline::Inbound;

/// How long a submitter waits for the pipeline to commit its bulletin.
pub const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// Why a bulletin could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The pipeline is stopping (its queue is closed).
    #[error("the commit pipeline is not running")]
    Closed,
    /// The pipeline did not commit in time (the store is failing).
    #[error("the commit pipeline did not commit within {0:?}")]
    Timeout(Duration),
}

/// Why the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// SQLite failed.
    #[error("warnings store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Opening the store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The warnings room's handle for the API and the poller.
#[derive(Debug, Clone)]
pub struct Service {
    /// The one validator.
    pub checker: Checker,
    /// The pipeline's queue; taken away by [`Service::close`] so that the
    /// pipeline can drain and stop on shutdown.
    intake: Arc<Mutex<Option<mpsc::Sender<Inbound>>>>,
    path: PathBuf,
    /// Ended warnings are listed for this many days.
    pub recent_days: u32,
}

impl Service {
    /// A service that submits to the pipeline's queue `intake`.
    pub fn new(config: &Config, intake: mpsc::Sender<Inbound>) -> Service {
        Service {
            checker: Checker::new(config),
            intake: Arc::new(Mutex::new(Some(intake))),
            path: config.journal_path(),
            recent_days: config.warnings.recent_days,
        }
    }

    /// Submit a bulletin on `topic` (`api/warnings`, `feed/{name}`) and
    /// wait until the pipeline has committed it (as a warning, a duplicate
    /// or an `invalid_cap` dead letter).
    pub async fn submit(&self, topic: String, payload: Vec<u8>) -> Result<(), SubmitError> {
        let (tx, rx) = oneshot::channel::<()>();
        let inbound = Inbound {
            raw: Raw {
                topic,
                payload,
                received_at: Utc::now(),
                retained: false,
            },
            ack: Some(Box::new(move || {
                let _ = tx.send(());
            })),
        };
        let intake = self.intake.lock().clone().ok_or(SubmitError::Closed)?;
        intake
            .send(inbound)
            .await
            .map_err(|_| SubmitError::Closed)?;
        drop(intake);
        match tokio::time::timeout(COMMIT_WAIT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SubmitError::Closed),
            Err(_) => Err(SubmitError::Timeout(COMMIT_WAIT)),
        }
    }

    /// Stop submitting (shutdown: the pipeline drains once every sender
    /// of its queue is gone).
    pub fn close(&self) {
        self.intake.lock().take();
    }

    /// Run `f` on a read-only connection to the store (blocking: call it
    /// from `spawn_blocking`).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadError> {
        let conn = crate::store::open_read_only(&self.path)?;
        Ok(f(&conn)?)
    }

    /// Run `f` on a read-write connection (feed bookkeeping; blocking).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadError> {
        let conn = crate::store::open(&self.path, crate::config::SyncMode::Normal)?;
        Ok(f(&conn)?)
    }

    /// The oldest `sent` of ended warnings still listed.
    pub fn recent_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.recent_days))
    }
}

/// Every `warnings.sweep_secs`, end the active warnings whose `expires`
/// has passed and publish them (as `Committed::warnings`) to the live
/// subscribers, until `cancel`.
pub async fn sweep_expired(
    svc: Arc<Service>,
    shared: Arc<crate::state::Shared>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let every = Duration::from_secs(shared.config.warnings.sweep_secs.max(1));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let s = Arc::clone(&svc);
        let now = Utc::now();
        let expired =
            tokio::task::spawn_blocking(move || s.write(|c| super::store::expire(c, now))).await;
        match expired {
            Ok(Ok(v)) if v.is_empty() => {}
            Ok(Ok(v)) => {
                tracing::info!(count = v.len(), "warnings expired");
                let _ = shared.updates.send(Arc::new(crate::state::Committed {
                    touched: Default::default(),
                    events: Vec::new(),
                    dead: Vec::new(),
                    duplicates: 0,
                    warnings: v,
                    at: now,
                }));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "expiring warnings failed; retried next sweep")
            }
            Err(e) => tracing::error!(error = %e, "warnings sweep task failed"),
        }
    }
}
