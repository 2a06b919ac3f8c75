//! Start-up: restore indicator state from the persisted rollups, and
//! rebuild the rollups from the events when the indicator definitions
//! changed.

use chrono::{DateTime, Utc};

use super::outbox::{event_from_row, EVENT_COLUMNS};
use super::{from_ms, write_derived, Derived, JournalError, Store};
use crate::indicators::{BatchDelta, Engine};
use crate::model::{Event, Source};

impl Store {
    /// Load persisted indicator state into `engine`; when the counters in the
    /// config changed since the rollups were built, rebuild them from the
    /// events first. Returns whether a rebuild happened.
    pub fn restore_indicators(
        &mut self,
        engine: &mut Engine,
        now: DateTime<Utc>,
    ) -> Result<bool, JournalError> {
        let signature = engine.signature();
        let rebuilt = if self.meta("counters")?.as_deref() != Some(signature.as_str()) {
            self.rebuild_rollups(engine)?;
            self.set_meta("counters", &signature)?;
            true
        } else {
            false
        };
        let min_minute = now.timestamp().div_euclid(60) - crate::indicators::MINUTES_KEPT;
        let min_hour = now.timestamp().div_euclid(3600) - crate::indicators::HOURS_KEPT;
        {
            for (table, min, hourly) in [
                ("rollup_minute", min_minute, false),
                ("rollup_hour", min_hour, true),
            ] {
                let mut stmt = self.conn.prepare(&format!(
                    "SELECT counter, scope, bucket, value FROM {table} WHERE bucket >= ?1"
                ))?;
                let mut rows = stmt.query([min])?;
                while let Some(r) = rows.next()? {
                    let (counter, scope): (String, String) = (r.get(0)?, r.get(1)?);
                    if hourly {
                        engine.load_hour(&counter, &scope, r.get(2)?, r.get(3)?);
                    } else {
                        engine.load_minute(&counter, &scope, r.get(2)?, r.get(3)?);
                    }
                }
            }
            let mut stmt = self.conn.prepare("SELECT key, ts, value FROM state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                let ts = from_ms(r.get(1)?);
                let value: f64 = r.get(2)?;
                let mut parts = key.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("latest"), Some(ind), Some(scope)) => {
                        engine.load_latest(ind, scope, ts, value)
                    }
                    (Some("fresh"), Some(src), Some(scope)) => {
                        if let Some(s) = Source::parse(src) {
                            engine.load_fresh(s, scope, ts);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(rebuilt)
    }

    fn rebuild_rollups(&mut self, engine: &Engine) -> Result<(), JournalError> {
        tracing::info!("indicator definitions changed: rebuilding rollups from the journal");
        let tx = self.conn.transaction()?;
        tx.execute_batch("DELETE FROM rollup_minute; DELETE FROM rollup_hour; DELETE FROM state WHERE key LIKE 'latest:%';")?;
        {
            let mut stmt =
                tx.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY id"))?;
            let mut rows = stmt.query([])?;
            let mut chunk: Vec<Event> = Vec::with_capacity(4096);
            while let Some(r) = rows.next()? {
                chunk.push(event_from_row(r)?);
                if chunk.len() >= 4096 {
                    write_rollups(&tx, engine, &engine.delta(&chunk, &[]))?;
                    chunk.clear();
                }
            }
            write_rollups(&tx, engine, &engine.delta(&chunk, &[]))?;
            let mut stmt = tx.prepare("SELECT received_at FROM dead_letters")?;
            let times: Vec<DateTime<Utc>> = stmt
                .query_map([], |r| r.get::<_, i64>(0))?
                .filter_map(Result::ok)
                .map(from_ms)
                .collect();
            let delta = engine.delta(std::iter::empty(), &times);
            write_rollups(&tx, engine, &delta)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn write_rollups(
    tx: &rusqlite::Transaction<'_>,
    engine: &Engine,
    delta: &BatchDelta,
) -> Result<(), JournalError> {
    let derived = Derived {
        delta: delta.clone(),
        counter_keys: engine.counters().iter().map(|c| c.key.clone()).collect(),
        scope_names: engine.scopes().to_vec(),
        indicator_ids: engine.ids().map(str::to_owned).collect(),
        devices: Vec::new(),
    };
    write_derived(tx, &derived)
}
