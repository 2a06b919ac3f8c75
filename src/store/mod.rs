//! The store: one SQLite file (`{store.path}/journal.db`, WAL mode) and
//! the one owner of its schema ([`schema`]: numbered migrations).
//!
//! Every read-write connection is opened here ([`open`]), which creates
//! the directory (mode 0700) and the file (mode 0600: the file holds
//! password hashes and the audit log), and brings the schema to the
//! latest version. Which connection writes which tables is in
//! docs/STORAGE.md §5. The rooms that use the store (`journal`, the sink
//! outbox, `auth`) never create tables themselves.

pub mod schema;

use std::path::Path;

use rusqlite::Connection;

use crate::config::SyncMode;

/// Errors opening or migrating the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store directory or file could not be created or protected.
    #[error("cannot prepare store path {path}: {source}")]
    Path {
        /// The directory or file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store was written by a newer version of commune-ioc.
    #[error("store schema version {found} is newer than this program's ({known}); use a newer commune-ioc")]
    Newer {
        /// Version in the file.
        found: u32,
        /// Latest version this program knows.
        known: u32,
    },
    /// A migration failed (the store stays at the version before it).
    #[error("store migration {version} ({name}) failed: {source}")]
    Migration {
        /// Its number.
        version: u32,
        /// Its name.
        name: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
}

fn path_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Path {
        path: path.display().to_string(),
        source,
    }
}

/// Create the store's directory (0700) and file (0600) when missing, and
/// take group and other permissions away from an existing file and its
/// `-wal`/`-shm` companions (SQLite gives those the database file's mode).
#[cfg(unix)]
fn prepare_path(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(path_error(dir))?;
        }
    }
    // Created here (not by SQLite, which would use 0644 minus the umask).
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(path_error(path))?;
    let mut names = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        names.push(p.into());
    }
    for p in names {
        match std::fs::metadata(&p) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                let mode = meta.permissions().mode() & 0o700;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(path_error(&p))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(path_error(&p)(e)),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn prepare_path(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(path_error(dir))?;
        }
    }
    Ok(())
}

/// Open a read-write connection to the store file at `path`, in WAL mode
/// with the given durability, with the schema migrated to the latest
/// version.
pub fn open(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    prepare_path(path)?;
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Open a read-only connection (queries; never migrates).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    Ok(conn)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_store_is_private_to_its_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data").join("site");
        let path = dir.join("journal.db");
        let conn = open(&path, SyncMode::Full).unwrap();
        conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')", [])
            .unwrap();
        assert_eq!(mode(&dir), 0o700, "store directory");
        assert_eq!(mode(&path), 0o600, "journal.db");
        for suffix in ["-wal", "-shm"] {
            let p = dir.join(format!("journal.db{suffix}"));
            assert_eq!(mode(&p), 0o600, "journal.db{suffix}");
        }
    }

    #[test]
    fn an_existing_readable_store_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("journal.db");
        drop(open(&path, SyncMode::Full).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(open(&path, SyncMode::Full).unwrap());
        assert_eq!(mode(&path), 0o600);
    }
}
