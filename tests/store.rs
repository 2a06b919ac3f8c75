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

/// A site driven in process: the real store, the real pipeline thread.
mod site {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use commune_ioc::config::{load_str, Config};
    use commune_ioc::model::Raw;
    use commune_ioc::runtime::pipeline::{self, Inbound};
    use commune_ioc::server::open_state;
    use commune_ioc::sources::Decoder;
    use commune_ioc::state::Shared;

    pub const CONFIG: &str = r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
[[village]]
id = "tan-binh"
name = "Bản Tân Bình"
[[village]]
id = "na-da"
name = "Bản Nà Đa"
[[indicator]]
id = "dossiers_received"
name = "Hồ sơ tiếp nhận"
kind = "count"
match = { source = "procedure", event = "received" }
[[indicator]]
id = "on_time"
name = "Đúng hạn"
kind = "ratio"
numerator = { source = "procedure", event = "resolved", where = { outcome = ["early", "on_time"] } }
denominator = { source = "procedure", event = "resolved" }
[[indicator]]
id = "paid_online"
name = "Thanh toán trực tuyến"
kind = "ratio"
numerator = { source = "procedure", event = "paid", where = { payment = "online" } }
denominator = { source = "procedure", event = "paid" }
"#;

    pub fn config(dir: &std::path::Path) -> Config {
        let mut cfg = load_str(CONFIG, "store-test.toml", &[]).unwrap();
        cfg.store.path = dir.to_path_buf();
        cfg
    }

    /// Start the store and the pipeline, feed it `messages` (topic,
    /// payload), and stop once every one is committed; the restored and
    /// updated state.
    pub fn run(cfg: &Config, messages: &[(&str, String)]) -> Arc<Shared> {
        let (shared, store) = open_state(cfg.clone()).unwrap();
        let decoder = Decoder::new(Arc::clone(&shared.registry), cfg.ingest.clone(), false);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let handle = pipeline::spawn(store, decoder, Arc::clone(&shared), rx).unwrap();
        for (topic, payload) in messages {
            tx.blocking_send(Inbound {
                raw: Raw {
                    topic: topic.to_string(),
                    payload: payload.clone().into_bytes(),
                    received_at: Utc::now(),
                    retained: false,
                },
                ack: None,
            })
            .unwrap();
        }
        drop(tx);
        handle.join().unwrap();
        shared
    }

    pub const DOSSIER: &str = "ioc/binh-lu/procedure/dossier";

    pub fn dossier(
        id: &str,
        event: &str,
        extra: serde_json::Value,
        ts: DateTime<Utc>,
    ) -> (&'static str, String) {
        let mut v = serde_json::json!({"dossier_id": id, "event": event, "ts": ts.to_rfc3339()});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        (DOSSIER, v.to_string())
    }
}

fn ratio(shared: &commune_ioc::state::Shared, id: &str, village: &str) -> (f64, f64) {
    let v = shared
        .view(Utc::now())
        .indicators(Window::Today, ScopeSel::Village(village), Some(id))
        .pop()
        .unwrap();
    (v.numerator.unwrap_or(0.0), v.denominator.unwrap_or(0.0))
}

#[test]
fn resolved_and_paid_dossiers_count_for_the_village_they_were_received_in_across_a_restart() {
    use serde_json::json;
    use site::dossier;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = site::config(tmp.path());
    let t = Utc::now() - chrono::Duration::seconds(60);
    // Received in two villages; resolved and paid carry no village. D3's
    // received and resolved come in the same batch.
    let shared = site::run(
        &cfg,
        &[
            dossier(
                "D1",
                "received",
                json!({"channel": "online", "village": "tan-binh"}),
                t,
            ),
            dossier(
                "D2",
                "received",
                json!({"channel": "direct", "village": "na-da"}),
                t,
            ),
            dossier("D1", "resolved", json!({"outcome": "early"}), t),
            dossier("D2", "resolved", json!({"outcome": "late"}), t),
            dossier("D1", "paid", json!({"payment": "online"}), t),
            dossier(
                "D3",
                "received",
                json!({"channel": "online", "village": "na-da"}),
                t,
            ),
            dossier("D3", "resolved", json!({"outcome": "on_time"}), t),
        ],
    );
    assert_eq!(ratio(&shared, "on_time", "tan-binh"), (1.0, 1.0));
    assert_eq!(ratio(&shared, "on_time", "na-da"), (1.0, 2.0));
    assert_eq!(ratio(&shared, "paid_online", "tan-binh"), (1.0, 1.0));
    assert_eq!(ratio(&shared, "paid_online", "na-da"), (0.0, 0.0));
    drop(shared);

    // After a restart the store still knows each dossier's village; the
    // restored values are the same.
    let shared = site::run(
        &cfg,
        &[
            dossier("D2", "paid", json!({"payment": "cash"}), t),
            dossier("D3", "paid", json!({"payment": "online"}), t),
        ],
    );
    assert_eq!(ratio(&shared, "on_time", "tan-binh"), (1.0, 1.0));
    assert_eq!(ratio(&shared, "on_time", "na-da"), (1.0, 2.0));
    assert_eq!(ratio(&shared, "paid_online", "na-da"), (1.0, 2.0));
    assert_eq!(ratio(&shared, "paid_online", "tan-binh"), (1.0, 1.0));
    // The commune counts every dossier once.
    let commune = shared
        .view(Utc::now())
        .indicators(Window::Today, ScopeSel::Commune, Some("on_time"))
        .pop()
        .unwrap();
    assert_eq!(commune.denominator, Some(3.0));
}

#[test]
fn the_last_history_bucket_counts_nothing_after_to() {
    use serde_json::json;
    use site::dossier;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = site::config(tmp.path());
    // Whole hour h, two hours ago: events at h+10 min and h+50 min.
    let hour = (Utc::now().timestamp() / 3600 - 2) * 3600;
    let at = |secs: i64| DateTime::<Utc>::from_timestamp(hour + secs, 0).unwrap();
    let shared = site::run(
        &cfg,
        &[
            dossier("H1", "received", json!({"channel": "online"}), at(600)),
            dossier("H2", "received", json!({"channel": "online"}), at(3000)),
            dossier("H3", "received", json!({"channel": "online"}), at(1245)),
        ],
    );
    let counter = match shared.engine.read().history_counters("dossiers_received") {
        Some(commune_ioc::indicators::HistoryPlan::Sum(c)) => c.to_string(),
        other => panic!("{other:?}"),
    };
    let store = Store::open_reader(&cfg.journal_path()).unwrap();
    // Hourly buckets, `to` at h+30 min: one bucket [h, h+30 min) holding
    // H1 and H3 only (H2 at h+50 min is after `to`).
    let rows = store
        .history(&counter, "commune", at(0), at(1800), 3600)
        .unwrap();
    assert_eq!(rows, vec![(0, 2.0)]);
    // Hourly buckets, `to` at h+20 min: H1 only.
    let rows = store
        .history(&counter, "commune", at(0), at(1200), 3600)
        .unwrap();
    assert_eq!(rows, vec![(0, 1.0)]);
    // `to` 300 ms into the minute of H1 (h+10 min): H1 counts.
    let rows = store
        .history(
            &counter,
            "commune",
            at(0),
            at(600) + chrono::Duration::milliseconds(300),
            3600,
        )
        .unwrap();
    assert_eq!(rows, vec![(0, 1.0)]);
    // On a boundary nothing changes.
    let rows = store
        .history(&counter, "commune", at(0), at(3600), 1800)
        .unwrap();
    assert_eq!(rows, vec![(0, 2.0), (1, 1.0)]);
}
