//! The store's schema owner: a store written before numbered migrations
//! (tests/fixtures/store-v0, written by commit 621b94e) opens, migrates and
//! keeps everything: events, dead letters and their acknowledgements,
//! users (their passwords still work), the audit log, and the indicators
//! restored from it.

use std::path::Path;

use chrono::{DateTime, Utc};
use commune_ioc::auth::{audit::AuditQuery, Accounts};
use commune_ioc::config::{load_str, Config, SyncMode};
use commune_ioc::devices::Availability;
use commune_ioc::indicators::{Engine, ScopeSel, Window};
use commune_ioc::journal::Store;
use commune_ioc::store::schema;
use rusqlite::Connection;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-v0/journal.db"
);

fn config(store: &Path) -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/binh-lu.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut cfg = load_str(&text, path, &[]).unwrap();
    cfg.store.path = store.to_path_buf();
    cfg
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn snapshot(conn: &Connection) -> Vec<i64> {
    [
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM dead_letters",
        "SELECT count(*) FROM dead_letter_acks",
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM audit",
        "SELECT count(*) FROM devices",
    ]
    .iter()
    .map(|q| count(conn, q))
    .collect()
}

#[test]
fn a_store_from_before_migrations_opens_migrates_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("journal.db");
    std::fs::copy(FIXTURE, &path).unwrap();

    let before = {
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            schema::version(&conn).unwrap(),
            0,
            "the fixture predates user_version"
        );
        snapshot(&conn)
    };
    assert_eq!(before, vec![147, 2, 1, 2, 4, before[5]]);
    assert!(before[5] > 0, "the fixture has device health rows");

    let cfg = config(&dir);
    let mut store = Store::open_with(&path, SyncMode::Full, 0).unwrap();
    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::latest());
    assert_eq!(snapshot(&conn), before, "rows lost or added by the upgrade");

    // Dead letters and the acknowledgement made through the API.
    let dead = store.dead_letters(10, None, None, 64).unwrap();
    assert_eq!(dead.len(), 2);
    let acked: Vec<_> = dead.iter().filter_map(|d| d.acked_by.as_deref()).collect();
    assert_eq!(acked, ["admin"]);

    // Indicators: the migration asks for a rebuild; the rebuilt counts
    // match the journal, and the dossier resolved without a village counts
    // for the village it was received in.
    let now: DateTime<Utc> = "2026-12-02T21:00:00Z".parse().unwrap();
    let mut engine = Engine::new(&cfg);
    assert!(
        store.restore_indicators(&mut engine, now).unwrap(),
        "rollups rebuilt"
    );
    let none = |_, _: Option<&str>| Availability::default();
    let value = |sel, id: &str| {
        engine
            .values(Window::Month, sel, now, &none, Some(id))
            .pop()
            .unwrap()
    };
    let received = count(
        &conn,
        "SELECT count(*) FROM events WHERE source = 'procedure' AND kind = 'received'",
    );
    assert_eq!(
        value(ScopeSel::Commune, "dossiers_received").value,
        Some(received as f64)
    );
    let on_time = value(ScopeSel::Village("tan-binh"), "dossier_on_time_ratio");
    assert!(
        on_time.denominator.unwrap_or(0.0) >= 1.0,
        "FIX-0001 resolved counts for tan-binh: {on_time:?}"
    );
    // A second start finds the signature and does not rebuild again.
    let mut again = Engine::new(&cfg);
    assert!(!store.restore_indicators(&mut again, now).unwrap());
    drop(store);

    // Users: both log in with their passwords; the audit log is intact.
    let accounts = Accounts::open(&path, &cfg.auth).unwrap();
    assert!(accounts
        .login("admin", "fixture-admin-pw-2026")
        .unwrap()
        .is_some());
    assert!(accounts
        .login("duty", "operator-pw-fixture")
        .unwrap()
        .is_some());
    let actions: Vec<String> = accounts
        .audit_log(&AuditQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in ["user_create", "login", "dead_letter_ack"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[test]
fn opening_the_upgraded_store_twice_migrates_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("journal.db");
    std::fs::copy(FIXTURE, &path).unwrap();
    let a = std::thread::spawn({
        let p = path.clone();
        move || Store::open_with(&p, SyncMode::Full, 0).map(drop)
    });
    let b = std::thread::spawn({
        let p = path.clone();
        move || commune_ioc::store::open(&p, SyncMode::Full).map(drop)
    });
    a.join().unwrap().unwrap();
    b.join().unwrap().unwrap();
    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::latest());
    assert_eq!(count(&conn, "SELECT count(*) FROM dossiers"), {
        count(
            &conn,
            "SELECT count(DISTINCT json_extract(attrs, '$.dossier_id')) FROM events
             WHERE source = 'procedure' AND kind = 'received' AND village IS NOT NULL",
        )
    });
}
