//! The store's schema: numbered migrations, applied in order.
//!
//! The version of a store is SQLite's `PRAGMA user_version` (0 for a new
//! file and for a store written before migrations existed). Each migration
//! runs in one `BEGIN IMMEDIATE` transaction that also sets `user_version`
//! to its number, so a crash leaves the store at the previous version, and
//! two processes opening the same store at once apply it once (the second
//! re-reads the version under the write lock and finds nothing to do).
//!
//! To add tables (alerts, sealed reports, broadcasts): write
//! `migrations/NNNN_name.sql` and add one line to [`MIGRATIONS`].

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: the `user_version` after it ran. Numbers start at 1 and
    /// follow each other.
    pub version: u32,
    /// Short name (the file name without number and extension).
    pub name: &'static str,
    /// The SQL, run as one batch.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "dossier_villages",
        sql: include_str!("migrations/0002_dossier_villages.sql"),
    },
    Migration {
        version: 3,
        name: "delivery",
        sql: include_str!("migrations/0003_delivery.sql"),
    },
    Migration {
        version: 4,
        name: "reports",
        sql: include_str!("migrations/0004_reports.sql"),
    },
    Migration {
        version: 5,
        name: "alerts",
        sql: include_str!("migrations/0005_alerts.sql"),
    },
    Migration {
        version: 6,
        name: "broadcasts",
        sql: include_str!("migrations/0006_broadcasts.sql"),
    },
    Migration {
        version: 7,
        name: "warnings",
        sql: include_str!("migrations/0007_warnings.sql"),
    },
    Migration {
        version: 8,
        name: "journal_seq",
        sql: include_str!("migrations/0008_journal_seq.sql"),
    },
];

/// The version a store has once every migration ran.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The store's schema version.
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

/// Bring the store to [`latest`]; the migrations applied. A store newer
/// than this program is refused (it may hold tables this version would
/// not keep consistent).
pub fn migrate(conn: &mut Connection) -> Result<Vec<Migration>, StoreError> {
    let known = latest();
    let found = version(conn)?;
    if found > known {
        return Err(StoreError::Newer { found, known });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        if version(&tx)? >= m.version {
            continue;
        }
        let fail = |source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", m.version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "store schema migrated");
        applied.push(*m);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn a_new_store_gets_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let applied = migrate(&mut conn).unwrap();
        assert_eq!(applied.len(), MIGRATIONS.len());
        assert_eq!(version(&conn).unwrap(), latest());
        assert!(migrate(&mut conn).unwrap().is_empty());
    }

    #[test]
    fn a_newer_store_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::Newer { .. }), "{err}");
    }

    #[test]
    fn a_failing_migration_leaves_the_version_unchanged() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table 0002 creates, made beforehand: 0002 fails, 0001 stays.
        conn.execute_batch("CREATE TABLE dossiers (x INTEGER);")
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        assert_eq!(version(&conn).unwrap(), 1);
    }
}
