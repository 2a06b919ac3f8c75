//! The province tier end to end (docs/PROVINCE.md §6), with real parts on
//! loopback: a three-node `nats-server` cluster (JetStream, the journal
//! stream with replicas 3), real commune boxes (`commune-ioc serve` fed
//! over a real Mosquitto, their uplinks to the cluster), simulated
//! communes that publish their journal into the stream exactly as an
//! uplink does (`tests/kit/province.rs`), and two province instances
//! (`commune-ioc serve --config PROCESS.toml --sites DIR`), each killed
//! and restarted by its own PID.
//!
//! Every test polls conditions with generous deadlines; none asserts a
//! time.

mod kit;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use kit::nats::{create_journal_stream, stream_count, stream_entries, Cluster};
use kit::province::{
    caught_up, closed_period, digests, indicator_values, public_key, sealed_report, site_of,
    start_commune, write_sites, Province, ProvinceConf, SimCommune, SiteSpec, Want, STREAM,
};
use kit::proxy::Proxy;
use kit::{dossier_received, Backend, Mosquitto, Pipelined};
use serde_json::Value;

/// Deadline for a province to catch up (a debug build on a shared
/// 2-core box, two instances and three NATS nodes).
const CATCH_UP: Duration = Duration::from_secs(120);

/// Wait until a commune box has journaled `n` dossiers and its uplink has
/// forwarded everything; its head (the cursor, then equal to it).
async fn commune_forwarded(b: &Backend, n: usize) -> i64 {
    b.wait_dossiers(n).await;
    kit::wait_until(
        "the commune's uplink to catch up",
        Duration::from_secs(120),
        || async {
            let r = b.readyz().await;
            let head = r["uplink"]["cursor"].as_i64()?;
            (r["uplink"]["lag_entries"] == 0 && r["uplink"]["up"] == true && head > 0)
                .then_some(head)
        },
    )
    .await
}

/// Publish `n` dossiers `received` for commune `spec` (ids from `from`).
async fn dossiers(p: &Pipelined, spec: &SiteSpec, from: usize, n: usize) {
    for i in from..from + n {
        let channel = if i % 8 == 0 { "direct" } else { "online" };
        p.publish(
            &spec.dossier_topic(),
            dossier_received(&format!("{}-HS-{i}", spec.id), channel, Some("ban-1")),
        )
        .await
        .unwrap();
    }
}

/// Two province instances (`a`, `b`) on the same sites dir, each naming
/// the other as its peer.
fn pair(root: &Path, sites: &Path, urls: &str, replicas: usize) -> (Province, Province) {
    let mut a = ProvinceConf::new("a", urls, replicas);
    let mut b = ProvinceConf::new("b", urls, replicas);
    a.peers = vec![b.url()];
    b.peers = vec![a.url()];
    (
        Province::start(&root.join("province-a"), sites, a),
        Province::start(&root.join("province-b"), sites, b),
    )
}

/// Both instances hold exactly what `want` says, with identical digests
/// for every site; the overview of A.
async fn both_caught_up(a: &Province, b: &Province, want: &BTreeMap<String, Want>) -> Value {
    let check = |v: &Value| caught_up(v, want);
    let oa = a.wait("every entry exactly once", CATCH_UP, &check).await;
    let ob = b.wait("every entry exactly once", CATCH_UP, &check).await;
    let (da, db) = (digests(&oa), digests(&ob));
    for id in want.keys() {
        let d = &da[id];
        assert_eq!(d.len(), 32, "{id}: digest {d:?} is not 128 bits in hex");
        assert_eq!(Some(d), db.get(id), "{id}: digests differ between A and B");
    }
    oa
}

/// The kit's own parts: a three-node cluster keeps a replicas-3 stream
/// through a `kill -9` of one node (restarted on its ports and store,
/// healthy again); a simulated commune's entries go through a proxy that is
/// cut (nothing passes, the publisher waits) and restored (everything
/// arrives, once, in order, with the uplink's message ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_cluster_survives_a_node_kill_and_the_proxy_cuts_a_link() {
    let mut cluster = Cluster::start().await;
    let js = cluster.jetstream().await;
    create_journal_stream(&js, 3).await;
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);

    let proxy = Proxy::start(cluster.nodes[0].port);
    let linked = jetstream::new(
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(proxy.nats_url())
            .await
            .unwrap(),
    );
    let mut sim = SimCommune::new("xa-001");
    sim.publish(&linked, 40).await.unwrap();
    assert_eq!(stream_count(&js, STREAM).await, 40);

    proxy.cut();
    let task = tokio::spawn(async move {
        sim.publish(&linked, 40).await.unwrap();
        sim
    });
    kit::wait_until(
        "the cut link to refuse a reconnect",
        Duration::from_secs(30),
        || async { (proxy.refused() > 0).then_some(()) },
    )
    .await;
    assert_eq!(
        stream_count(&js, STREAM).await,
        40,
        "entries passed a cut link"
    );
    proxy.restore();
    let mut sim = task.await.unwrap();
    assert_eq!(stream_count(&js, STREAM).await, 80);

    cluster.kill(2);
    sim.publish(&js, 40).await.unwrap();
    cluster.restart(2).await;
    cluster.wait_jetstream(3, Duration::from_secs(60)).await;
    let entries = stream_entries(&js, STREAM).await.unwrap();
    assert_eq!(entries.len(), 120);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.msg_id, format!("xa-001:{}", i + 1));
        assert_eq!(e.subject, format!("ioc.xa-001.journal.{}", e.kind));
    }
}

/// A hundred communes (97 simulated at a steady rate, three real commune
/// boxes fed over a real Mosquitto, their uplinks to the cluster) reach
/// both province instances: every site at its commune's head, every entry
/// once, no gap, identical digests on A and B, identical indicators on A
/// and B (`/site/{c}/api/indicators`), and those indicators are what the
/// communes counted (the simulated communes' expected values; the real
/// boxes' own `/api/indicators`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_communes_reach_both_instances_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let js = cluster.jetstream().await;
    create_journal_stream(&js, 3).await;
    let broker = Mosquitto::start();
    let specs = SiteSpec::many(100);
    let (sim_specs, real_specs) = specs.split_at(97);

    let mut keys = BTreeMap::new();
    let mut boxes = Vec::new();
    for s in real_specs {
        let (b, key) = start_commune(&root.path().join(&s.id), s, broker.port, &cluster.urls());
        keys.insert(s.id.clone(), key);
        boxes.push(b);
    }
    for b in &boxes {
        b.wait_ready().await;
    }
    let sites = root.path().join("sites");
    write_sites(&sites, &specs, &keys);
    let (mut a, mut b) = pair(root.path(), &sites, &cluster.urls(), 3);
    a.wait_up().await;
    b.wait_up().await;

    // The real communes ingest while the simulated ones publish.
    let publisher = Pipelined::connect("province-100", broker.port, false)
        .await
        .unwrap();
    const REAL: usize = 40;
    for s in real_specs {
        dossiers(&publisher, s, 0, REAL).await;
    }
    let sims: Vec<SimCommune> = sim_specs.iter().map(|s| SimCommune::new(&s.id)).collect();
    let sims = kit::province::spawn_fleet(js.clone(), sims, 5, 6, Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();

    let mut want: BTreeMap<String, Want> =
        sims.iter().map(|s| (s.id.clone(), Want::of(s))).collect();
    for (s, bx) in real_specs.iter().zip(&boxes) {
        want.insert(s.id.clone(), Want::full(commune_forwarded(bx, REAL).await));
    }
    let oa = both_caught_up(&a, &b, &want).await;
    assert_eq!(oa["province"]["id"], "lai-chau");
    assert_eq!(oa["instance"], "a");
    assert_eq!(oa["sites"].as_array().unwrap().len(), 100);
    assert_eq!(site_of(&oa, "xa-001").unwrap()["name"], "Xã Bình Lư");
    for p in [&a, &b] {
        let (status, ready) = p.readyz().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["status"], "ok", "{ready}");
        assert_eq!(ready["sites"]["ok"], 100, "{ready}");
    }

    // Identical indicators on A and B, and what the communes counted.
    for sim in &sims {
        let ia = indicator_values(&a.site_indicators(&sim.id).await);
        let ib = indicator_values(&b.site_indicators(&sim.id).await);
        assert_eq!(ia, ib, "{}: indicators differ between A and B", sim.id);
        assert_eq!(
            ia["dossiers_received"].as_f64(),
            Some(sim.expect.received as f64),
            "{}: {ia:?}",
            sim.id
        );
        assert_eq!(
            ia["people_detected"].as_f64(),
            Some(sim.expect.persons as f64),
            "{}: {ia:?}",
            sim.id
        );
    }
    for (s, bx) in real_specs.iter().zip(&boxes) {
        let ia = indicator_values(&a.site_indicators(&s.id).await);
        let ib = indicator_values(&b.site_indicators(&s.id).await);
        assert_eq!(ia, ib, "{}: indicators differ between A and B", s.id);
        let own = indicator_values(&bx.get("/api/indicators?window=month&village=commune").await);
        for id in ["dossiers_received", "dossier_online_ratio", "dead_letters"] {
            assert_eq!(
                ia[id], own[id],
                "{}: {id} at the province vs the commune",
                s.id
            );
        }
        assert_eq!(ia["dossiers_received"].as_f64(), Some(REAL as f64));
    }
    // A commune's copy is read only at the province.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/site/{}/api/reports/2026-11/seal",
            a.url, real_specs[0].id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "read_only_copy", "{body}");
    // The site object carries the kinds it holds.
    let sim = &sims[0];
    let (status, site) = a.site(&sim.id).await;
    assert_eq!(status, 200, "{site}");
    assert_eq!(
        site["kinds"]["event"].as_u64().unwrap_or(0)
            + site["kinds"]["dead_letter"].as_u64().unwrap_or(0),
        sim.held(),
        "{site}"
    );
    publisher.stop().await;
    drop(broker);
}

/// A commune's link (its uplink goes through proxies to the three nodes)
/// is cut for a while as it keeps ingesting: the commune journals
/// everything and shows the lag, the province stays at what it had; after
/// the link is restored both instances hold every entry once. Another
/// commune box is killed (`kill -9`) mid-forward and restarted: again
/// every entry once, no gap, in both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_and_a_killed_commune_box_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await;
    let js = cluster.jetstream().await;
    create_journal_stream(&js, 3).await;
    let broker = Mosquitto::start();
    let specs = SiteSpec::many(2);
    let proxies: Vec<Proxy> = cluster.nodes.iter().map(|n| Proxy::start(n.port)).collect();
    let link: Vec<String> = proxies.iter().map(Proxy::nats_url).collect();
    let (cut_box, key_x) = start_commune(
        &root.path().join("x"),
        &specs[0],
        broker.port,
        &link.join(","),
    );
    // The killed box forwards in small batches, so a kill lands mid-way.
    let (mut kill_box, key_y) = {
        let dir = root.path().join("y");
        std::fs::create_dir_all(&dir).unwrap();
        let toml = format!(
            "{}batch_max = 20\n",
            kit::province::commune_toml(
                &specs[1],
                broker.port,
                &dir.join("store"),
                &cluster.urls()
            )
        );
        std::fs::write(dir.join("commune.toml"), &toml).unwrap();
        let key = kit::province::report_key(&dir.join("commune.toml"));
        (Backend::start(&dir, &toml), key)
    };
    cut_box.wait_ready().await;
    kill_box.wait_ready().await;
    let sites = root.path().join("sites");
    let keys = BTreeMap::from([(specs[0].id.clone(), key_x), (specs[1].id.clone(), key_y)]);
    write_sites(&sites, &specs, &keys);
    let (mut a, mut b) = pair(root.path(), &sites, &cluster.urls(), 3);
    a.wait_up().await;
    b.wait_up().await;
    let publisher = Pipelined::connect("province-cut", broker.port, false)
        .await
        .unwrap();

    // Both forward; the province has it all.
    dossiers(&publisher, &specs[0], 0, 50).await;
    dossiers(&publisher, &specs[1], 0, 50).await;
    let x_head = commune_forwarded(&cut_box, 50).await;
    let y_head = commune_forwarded(&kill_box, 50).await;
    let want = BTreeMap::from([
        (specs[0].id.clone(), Want::full(x_head)),
        (specs[1].id.clone(), Want::full(y_head)),
    ]);
    both_caught_up(&a, &b, &want).await;

    // Cut x's link; it keeps ingesting alone and shows the lag.
    for p in &proxies {
        p.cut();
    }
    dossiers(&publisher, &specs[0], 50, 300).await;
    cut_box
        .wait_for(
            "350 dossiers counted while cut off",
            Duration::from_secs(120),
            || async {
                cut_box
                    .indicator("dossiers_received", "month", "commune")
                    .await["value"]
                    .as_f64()
                    == Some(350.0)
            },
        )
        .await;
    cut_box
        .wait_for(
            "the lag shown while cut off",
            Duration::from_secs(60),
            || async {
                let r = cut_box.readyz().await;
                r["uplink"]["up"] == false && r["uplink"]["lag_entries"] == 300
            },
        )
        .await;
    let (_, site) = a.site(&specs[0].id).await;
    assert_eq!(
        site["head_seq"].as_i64(),
        Some(x_head),
        "entries passed a cut link: {site}"
    );
    for p in &proxies {
        p.restore();
    }
    let x_head = commune_forwarded(&cut_box, 350).await;
    assert_eq!(x_head, want[&specs[0].id].head + 300);

    // kill -9 of y while it forwards a burst.
    const BURST: usize = 1500;
    dossiers(&publisher, &specs[1], 50, BURST).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let cursor = kill_box.readyz().await["uplink"]["cursor"]
            .as_i64()
            .unwrap_or(0);
        if cursor > y_head && cursor < y_head + BURST as i64 {
            kill_box.kill();
            break;
        }
        assert!(
            cursor < y_head + BURST as i64,
            "forwarding finished before a kill could land"
        );
        assert!(
            Instant::now() < deadline,
            "nothing forwarded; log:\n{}",
            kill_box.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill_box.restart();
    kill_box.wait_ready().await;
    let y_head = commune_forwarded(&kill_box, 50 + BURST).await;

    let want = BTreeMap::from([
        (specs[0].id.clone(), Want::full(x_head)),
        (specs[1].id.clone(), Want::full(y_head)),
    ]);
    both_caught_up(&a, &b, &want).await;
    publisher.stop().await;
    drop(broker);
}

/// `kill -9` of one province instance and of one NATS node while twenty
/// communes stream: the instance is restarted on its store and resumes
/// from its durable consumers, the node on its ports and store (an
/// instance connected to it fails over to another); afterwards both
/// instances hold every entry exactly once with identical digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_province_instance_and_nats_node_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start().await;
    let js = cluster.jetstream().await;
    create_journal_stream(&js, 3).await;
    let specs = SiteSpec::many(20);
    let sites = root.path().join("sites");
    write_sites(&sites, &specs, &BTreeMap::new());
    let (mut a, mut b) = pair(root.path(), &sites, &cluster.urls(), 3);
    a.wait_up().await;
    b.wait_up().await;

    let sims: Vec<SimCommune> = specs.iter().map(|s| SimCommune::new(&s.id)).collect();
    // 20 communes × 40 rounds × 5 entries, a round every 200 ms.
    let fleet = kit::province::spawn_fleet(js.clone(), sims, 40, 5, Duration::from_millis(200));
    let entries_at = |v: &Value| -> u64 {
        v["sites"]
            .as_array()
            .map(|s| s.iter().map(|s| s["entries"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    // Kill A once it holds some entries.
    a.wait("some entries", CATCH_UP, &|v| {
        (entries_at(v) >= 200)
            .then_some(())
            .ok_or("fewer than 200".into())
    })
    .await;
    a.kill();
    // Kill a NATS node (the instances fail over to the others when it is
    // theirs) once the stream has grown further.
    let grown = stream_count(&js, STREAM).await + 400;
    kit::wait_until("the stream to grow", Duration::from_secs(60), || async {
        (stream_count(&js, STREAM).await >= grown).then_some(())
    })
    .await;
    cluster.kill(0);
    a.restart();
    a.wait_up().await;
    let grown = stream_count(&js, STREAM).await + 400;
    kit::wait_until(
        "the stream to grow without node 1",
        Duration::from_secs(60),
        || async { (stream_count(&js, STREAM).await >= grown).then_some(()) },
    )
    .await;
    cluster.restart(0).await;
    let sims = fleet.await.unwrap().unwrap();
    assert!(sims.iter().all(|s| s.head() == 200));
    let want: BTreeMap<String, Want> = sims.iter().map(|s| (s.id.clone(), Want::of(s))).collect();
    both_caught_up(&a, &b, &want).await;
    assert_eq!(
        stream_count(&js, STREAM).await,
        sims.iter().map(|s| s.held()).sum::<u64>(),
        "the stream holds a message twice"
    );
}

/// A single province instance on a single NATS node (what gaps and
/// duplicates need): the sites dir with `specs`.
async fn single(
    root: &Path,
    specs: &[SiteSpec],
    keys: &BTreeMap<String, String>,
    tweak: impl FnOnce(&mut ProvinceConf),
) -> (kit::Nats, jetstream::Context, Province) {
    let nats = kit::Nats::start();
    let js = jetstream::new(nats.client().await);
    create_journal_stream(&js, 1).await;
    let sites = root.join("sites");
    write_sites(&sites, specs, keys);
    let mut conf = ProvinceConf::new("a", &nats.url(), 1);
    tweak(&mut conf);
    let mut p = Province::start(&root.join("province-a"), &sites, conf);
    p.wait_up().await;
    (nats, js, p)
}

/// A seq gap is recorded and shown (`gaps: [{from, to}]`, the metric),
/// never filled: entries after it are taken, the missing ones are not
/// invented, and the gap stays as later entries arrive. A duplicate that
/// reaches the stream (a re-send beyond JetStream's window, no message id)
/// changes nothing but the duplicate count: same entries, same digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_reported_never_filled_and_a_duplicate_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let specs = SiteSpec::many(2);
    let (_nats, js, p) = single(root.path(), &specs, &BTreeMap::new(), |_| {}).await;
    let mut sim = SimCommune::new(&specs[0].id);
    let mut quiet = SimCommune::new(&specs[1].id);
    sim.publish(&js, 5).await.unwrap();
    sim.skip(2);
    sim.publish(&js, 3).await.unwrap();
    quiet.publish(&js, 4).await.unwrap();
    let mut want = BTreeMap::from([
        (sim.id.clone(), Want::of(&sim)),
        (quiet.id.clone(), Want::of(&quiet)),
    ]);
    assert_eq!(
        want[&sim.id].gaps,
        serde_json::json!([{"from": 6, "to": 7}])
    );
    let o = p
        .wait("the gap shown", CATCH_UP, &|v| caught_up(v, &want))
        .await;
    let before = site_of(&o, &sim.id).unwrap().clone();
    assert_eq!(before["entries"], 8, "{before}");
    assert_eq!(before["head_seq"], 10, "{before}");
    assert_eq!(before["duplicates"], 0, "{before}");
    let (status, ready) = p.readyz().await;
    assert_eq!(status, 200, "{ready}");

    // A re-send inside the window: JetStream drops it.
    let in_stream = stream_count(&js, STREAM).await;
    sim.resend(&js, 3, true).await.unwrap();
    assert_eq!(stream_count(&js, STREAM).await, in_stream);
    // A re-send beyond the window reaches the stream; the province drops it.
    sim.resend(&js, 3, false).await.unwrap();
    sim.resend(&js, 9, false).await.unwrap();
    assert_eq!(stream_count(&js, STREAM).await, in_stream + 2);
    let o = p
        .wait("two duplicates counted", CATCH_UP, &|v| {
            let s = site_of(v, &sim.id).ok_or("no site")?;
            (s["duplicates"] == 2).then_some(()).ok_or(format!("{s}"))
        })
        .await;
    let after = site_of(&o, &sim.id).unwrap();
    for k in ["entries", "head_seq", "gaps", "digest"] {
        assert_eq!(after[k], before[k], "{k} changed by a duplicate: {after}");
    }
    // Later entries: the gap stays, never filled in.
    sim.publish(&js, 4).await.unwrap();
    want.insert(sim.id.clone(), Want::of(&sim));
    let o = p
        .wait("later entries", CATCH_UP, &|v| caught_up(v, &want))
        .await;
    let s = site_of(&o, &sim.id).unwrap();
    assert_eq!(s["gaps"], serde_json::json!([{"from": 6, "to": 7}]), "{s}");
    assert_eq!(s["entries"], 12, "{s}");
    assert_ne!(s["digest"], before["digest"]);
    // The metrics say the same, per site.
    let text = reqwest::get(format!("{}/metrics", p.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = kit::http::Scrape::parse(&text);
    let label = format!("site=\"{}\"", sim.id);
    let of = |name: &str| {
        scrape
            .by_label(name)
            .into_iter()
            .find(|(l, _)| l.contains(&label))
            .map(|(_, v)| v)
    };
    assert_eq!(of("ioc_province_gap_entries"), Some(2.0), "{text}");
    assert_eq!(of("ioc_province_duplicates"), Some(2.0), "{text}");
    assert_eq!(of("ioc_province_entries"), Some(12.0), "{text}");
}

/// One site file that does not load (an indicator of an unknown kind) is
/// shown as broken with its error (overview, `/readyz`) while the others
/// load and take their entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_site_file_is_shown_and_the_others_run() {
    let root = tempfile::tempdir().unwrap();
    let specs = SiteSpec::many(4);
    let nats = kit::Nats::start();
    let js = jetstream::new(nats.client().await);
    create_journal_stream(&js, 1).await;
    let sites = root.path().join("sites");
    write_sites(&sites, &specs[..3], &BTreeMap::new());
    std::fs::write(
        sites.join(format!("{}.toml", specs[3].id)),
        kit::province::site_toml(&specs[3], None)
            + "\n[[indicator]]\nid = \"hong\"\nname = \"Chỉ số hỏng\"\nkind = \"không_có\"\n",
    )
    .unwrap();
    let mut p = Province::start(
        &root.path().join("province-a"),
        &sites,
        ProvinceConf::new("a", &nats.url(), 1),
    );
    p.wait_up().await;
    let mut sims: Vec<SimCommune> = specs.iter().map(|s| SimCommune::new(&s.id)).collect();
    for s in sims.iter_mut() {
        s.publish(&js, 20).await.unwrap();
    }
    let want: BTreeMap<String, Want> = sims[..3]
        .iter()
        .map(|s| (s.id.clone(), Want::of(s)))
        .collect();
    let o = p
        .wait("the good sites", CATCH_UP, &|v| caught_up(v, &want))
        .await;
    let broken =
        site_of(&o, &specs[3].id).unwrap_or_else(|| panic!("the broken site is not shown: {o}"));
    assert_eq!(broken["status"], "broken", "{broken}");
    let err = broken["error"].as_str().unwrap_or_default();
    assert!(err.contains("không_có") || err.contains("kind"), "{broken}");
    let (_, ready) = p.readyz().await;
    assert_eq!(ready["sites"]["ok"], 3, "{ready}");
    assert_eq!(ready["sites"]["broken"], 1, "{ready}");
    let (status, site) = p.site(&specs[3].id).await;
    assert!(
        status == 200 && site["status"] == "broken",
        "{status} {site}"
    );
}

/// One commune's flood does not stall the others: with a per-site budget
/// of 100 entries/s, a commune that dumps 4,000 entries is still being
/// worked through while twenty others, publishing after the flood, are
/// already caught up; and the flood keeps moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_communes_flood_does_not_stall_the_others() {
    let root = tempfile::tempdir().unwrap();
    let specs = SiteSpec::many(21);
    let (_nats, js, p) = single(root.path(), &specs, &BTreeMap::new(), |c| {
        c.site_rate = 100;
        c.batch_max = 50;
    })
    .await;
    let mut flood = SimCommune::new(&specs[0].id);
    const FLOOD: usize = 4000;
    for _ in 0..FLOOD / 500 {
        flood.publish(&js, 500).await.unwrap();
    }
    let mut others: Vec<SimCommune> = specs[1..].iter().map(|s| SimCommune::new(&s.id)).collect();
    for s in others.iter_mut() {
        s.publish(&js, 30).await.unwrap();
    }
    let want: BTreeMap<String, Want> = others.iter().map(|s| (s.id.clone(), Want::of(s))).collect();
    let o = p
        .wait("the others caught up", CATCH_UP, &|v| caught_up(v, &want))
        .await;
    let f = site_of(&o, &flood.id).unwrap();
    let held = f["entries"].as_u64().unwrap_or(0);
    assert!(held < FLOOD as u64, "the flood was all taken first: {f}");
    p.wait("the flood moving", CATCH_UP, &|v| {
        let n = site_of(v, &flood.id).ok_or("no site")?["entries"]
            .as_u64()
            .unwrap_or(0);
        (n > held).then_some(()).ok_or(format!("{n} entries"))
    })
    .await;
}

/// Sealed monthly reports through the stream: a real commune box seals
/// (`POST /api/reports/{period}/seal`) and its uplink forwards the
/// `report` entry, which the province verifies with the commune's public
/// key from the site file; a simulated commune's genuine report verifies
/// too; one signed with another key (forged) and one altered after
/// sealing (tampered) are refused, each with its reason; a commune that
/// sent nothing is `missing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_reports_verify_and_forged_or_tampered_ones_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let period = closed_period();
    let nats = kit::Nats::start();
    let js = jetstream::new(nats.client().await);
    create_journal_stream(&js, 1).await;
    let broker = Mosquitto::start();
    let specs = SiteSpec::many(5);
    let (real, real_key) = start_commune(
        &root.path().join("real"),
        &specs[0],
        broker.port,
        &nats.url(),
    );
    real.wait_ready().await;

    // Keys: genuine ones for xa-002..xa-004, and another for the forger.
    let key_file = |n: &str| root.path().join("keys").join(format!("{n}.pem"));
    let mut keys = BTreeMap::from([(specs[0].id.clone(), real_key)]);
    for s in &specs[1..] {
        keys.insert(s.id.clone(), public_key(&key_file(&s.id)));
    }
    let sites = root.path().join("sites");
    write_sites(&sites, &specs, &keys);
    let mut conf = ProvinceConf::new("a", &nats.url(), 1);
    // Sealed today, weeks after the period's end: on time for this test.
    conf.report_due_days = Some(60);
    let mut p = Province::start(&root.path().join("province-a"), &sites, conf);
    p.wait_up().await;

    // The real box seals and forwards.
    let r = reqwest::Client::new()
        .post(format!("{}/api/reports/{period}/seal", real.url))
        .bearer_auth(real.token().await)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "seal: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    // xa-002: genuine.
    let genuine = sealed_report(
        &specs[1],
        &root.path().join("s2"),
        &key_file(&specs[1].id),
        &period,
    );
    // xa-003: signed with a key that is not the one in its site file.
    let forged = sealed_report(
        &specs[2],
        &root.path().join("s3"),
        &key_file("forger"),
        &period,
    );
    // xa-004: genuine, then a value changed after sealing.
    let mut tampered = sealed_report(
        &specs[3],
        &root.path().join("s4"),
        &key_file(&specs[3].id),
        &period,
    );
    let name = tampered["document"]["org_unit"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    tampered["document"]["org_unit"]["name"] = Value::from(format!("{name} (đã sửa)"));
    for (spec, body) in [
        (&specs[1], genuine),
        (&specs[2], forged),
        (&specs[3], tampered),
    ] {
        let mut sim = SimCommune::new(&spec.id);
        sim.publish(&js, 3).await.unwrap();
        let e = sim.make_body("report", serde_json::to_vec(&body).unwrap());
        sim.publish_made(&js, &[e.seq]).await.unwrap();
    }

    let status_of = |v: &Value, id: &str| {
        site_of(v, id)
            .map(|s| s["report"].clone())
            .unwrap_or(Value::Null)
    };
    let o = p
        .wait("the reports checked", CATCH_UP, &|v| {
            let done = specs[..4].iter().all(|s| {
                let r = status_of(v, &s.id);
                r["period"] == period.as_str() && r["status"] != "missing"
            });
            done.then_some(()).ok_or(format!("{}", v["sites"]))
        })
        .await;
    for s in &specs[..2] {
        let r = status_of(&o, &s.id);
        assert_eq!(r["status"], "verified", "{}: {r}", s.id);
        assert_eq!(r["revision"], 0, "{}: {r}", s.id);
    }
    for s in &specs[2..4] {
        let r = status_of(&o, &s.id);
        assert_eq!(r["status"], "refused", "{}: {r}", s.id);
        assert!(
            !r["reason"].as_str().unwrap_or_default().is_empty(),
            "{}: no reason: {r}",
            s.id
        );
    }
    // Each with its own reason: signed with a key that is not the
    // commune's; changed after sealing.
    let forged = status_of(&o, &specs[2].id)["reason"].to_string();
    let tampered = status_of(&o, &specs[3].id)["reason"].to_string();
    assert!(forged.contains("không phải khoá của xã"), "{forged}");
    assert!(tampered.contains("đã bị sửa"), "{tampered}");
    assert_eq!(status_of(&o, &specs[4].id)["status"], "missing");
    // The per-period list has each revision's result.
    let (status, list) = p
        .get(&format!("/api/province/reports?period={period}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let text = list.to_string();
    for s in &specs[..4] {
        assert!(text.contains(&s.id), "{} missing from {list}", s.id);
    }
}

/// The alert rule of the commune box in the alerts test.
const FIRE_RULE: &str = "\n[alerts]\neval_interval = \"100ms\"\n\
    [[alerts.rule]]\nid = \"chay\"\nname = \"Phát hiện cháy\"\nkind = \"camera\"\n\
    events = [\"fire\"]\nresolve_after = \"1h\"\n";

/// POST `path` on a commune box with its admin token and no body.
async fn commune_post(b: &Backend, path: &str) -> (u16, Value) {
    b.post(path, serde_json::json!({})).await
}

/// An alert as the province and the commune both show it, without what
/// only the commune plans (its next notification).
fn alert_as_shown(list: &Value, id: i64) -> Option<Value> {
    let mut a = list["items"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == id)?
        .clone();
    a["notify_at"] = Value::Null;
    Some(a)
}

/// A commune's own alerts reach the province as they stand at the
/// commune: a fire alert raised by a camera event on a real commune box is
/// listed at the province's `/site/{commune}/api/alerts` exactly as the
/// commune lists it, then acknowledged, then resolved, with the counts of
/// the site's board and the overview's `alerts` following each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_communes_alerts_are_shown_at_the_province_as_they_stand() {
    let root = tempfile::tempdir().unwrap();
    let specs = SiteSpec::many(1);
    let spec = &specs[0];
    let (nats, _js, p) = single(root.path(), &specs, &BTreeMap::new(), |_| {}).await;
    let broker = Mosquitto::start();
    let dir = root.path().join("commune");
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "{}{FIRE_RULE}",
        kit::province::commune_toml(spec, broker.port, &dir.join("store"), &nats.url())
    );
    let b = Backend::start(&dir, &toml);
    b.wait_ready().await;
    let mut publisher = kit::Publisher::new(broker.port);
    let fire = serde_json::json!({"kind": "fire", "ts": chrono::Utc::now().to_rfc3339(), "seq": 1, "score": 0.93});
    publisher
        .send(
            &format!("ioc/{}/camera/cam-01/event", spec.id),
            fire.to_string().as_bytes(),
        )
        .await;

    let site_alerts = format!("/site/{}/api/alerts", spec.id);
    // Wait until the province shows the commune's alert as the commune does.
    let same = |want: &'static str| {
        let site_alerts = site_alerts.clone();
        let (b, p) = (&b, &p);
        async move {
            let deadline = Instant::now() + CATCH_UP;
            loop {
                let here = b.get("/api/alerts").await;
                let id = here["items"][0]["id"].as_i64();
                if let (Some(id), Ok((200, there))) = (id, p.get(&site_alerts).await) {
                    let (mine, copy) = (alert_as_shown(&here, id), alert_as_shown(&there, id));
                    if mine.is_some()
                        && mine == copy
                        && mine.as_ref().unwrap()["status"] == want
                        && here["counts"] == there["counts"]
                    {
                        return (id, there);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{want}: the commune shows {mine:?} ({}), the province {copy:?} ({})",
                        here["counts"],
                        there["counts"]
                    );
                } else {
                    assert!(
                        Instant::now() < deadline,
                        "{want}: no alert yet: {here}; log:\n{}",
                        b.log_text()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (id, there) = same("firing_unack").await;
    assert_eq!(there["items"][0]["rule"], "chay", "{there}");
    assert_eq!(there["counts"]["firing_unack"], 1, "{there}");
    // The overview's count of the commune's alerts follows.
    let counted = |firing: u64, unacked: u64| {
        let (p, id) = (&p, spec.id.clone());
        async move {
            let want = serde_json::json!({"firing": firing, "unacked": unacked});
            p.wait("the overview's alert counts", CATCH_UP, &|o| {
                let a = site_of(o, &id).ok_or("no site")?["alerts"].clone();
                (a == want).then_some(()).ok_or(format!("{a}"))
            })
            .await;
        }
    };
    counted(1, 1).await;

    let (status, acked) = commune_post(&b, &format!("/api/alerts/{id}/ack")).await;
    assert_eq!(status, 200, "{acked}");
    let (_, there) = same("firing_ack").await;
    assert_eq!(alert_as_shown(&there, id).unwrap()["acked_by"], "admin");
    counted(1, 0).await;

    let (status, resolved) = commune_post(&b, &format!("/api/alerts/{id}/resolve")).await;
    assert_eq!(status, 200, "{resolved}");
    let (_, there) = same("resolved_ack").await;
    assert_eq!(alert_as_shown(&there, id).unwrap()["resolved_by"], "admin");
    counted(0, 0).await;
    // The copy is read only: the province cannot acknowledge for the commune.
    let r = reqwest::Client::new()
        .post(format!("{}{site_alerts}/{id}/ack", p.url))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

/// Copy directory `from` into `to` (files and folders), replacing it.
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// PROVINCE.md §6, "The stream's size": an instance down longer than the
/// stream keeps entries comes back with gaps (the entries it missed aged
/// out, simulated by a purge), shown and never filled; stopped, given a
/// copy of its peer's `sites/` directory and started again, it holds
/// exactly what its peer holds (same entries and digests), and both take
/// the entries that follow exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_down_longer_than_the_stream_keeps_is_rebuilt_from_its_peer() {
    let root = tempfile::tempdir().unwrap();
    let nats = kit::Nats::start();
    let js = jetstream::new(nats.client().await);
    create_journal_stream(&js, 1).await;
    let specs = SiteSpec::many(3);
    let sites = root.path().join("sites");
    write_sites(&sites, &specs, &BTreeMap::new());
    let (mut a, mut b) = pair(root.path(), &sites, &nats.url(), 1);
    a.wait_up().await;
    b.wait_up().await;
    let mut sims: Vec<SimCommune> = specs.iter().map(|s| SimCommune::new(&s.id)).collect();
    let want = |sims: &[SimCommune]| -> BTreeMap<String, Want> {
        sims.iter().map(|s| (s.id.clone(), Want::of(s))).collect()
    };
    for s in &mut sims {
        s.publish(&js, 50).await.unwrap();
    }
    both_caught_up(&a, &b, &want(&sims)).await;

    // A is down while 50 more entries per commune arrive and B takes
    // them; then they age out of the stream before A is back.
    a.kill();
    for s in &mut sims {
        s.publish(&js, 50).await.unwrap();
    }
    b.wait("B holds 100 per commune", CATCH_UP, &|v| {
        caught_up(v, &want(&sims))
    })
    .await;
    js.get_stream(STREAM).await.unwrap().purge().await.unwrap();
    a.restart();
    a.wait_up().await;
    for s in &mut sims {
        s.publish(&js, 10).await.unwrap();
    }
    let aged: BTreeMap<String, Want> = sims
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                Want {
                    head: s.head(),
                    entries: s.held() - 50,
                    gaps: serde_json::json!([{"from": 51, "to": 100}]),
                },
            )
        })
        .collect();
    a.wait("A shows what aged out as gaps", CATCH_UP, &|v| {
        caught_up(v, &aged)
    })
    .await;

    // The procedure: stop A, copy B's sites/ (B stopped too), start both.
    a.kill();
    b.kill();
    copy_dir(
        &b.dir.join("store").join("sites"),
        &a.dir.join("store").join("sites"),
    );
    a.restart();
    b.restart();
    a.wait_up().await;
    b.wait_up().await;
    for s in &mut sims {
        s.publish(&js, 10).await.unwrap();
    }
    let o = both_caught_up(&a, &b, &want(&sims)).await;
    for s in &sims {
        let site = site_of(&o, &s.id).unwrap();
        assert_eq!(site["entries"], 120, "{site}");
        assert_eq!(site["gaps"], serde_json::json!([]), "{site}");
    }
    // The indicators, rebuilt from the same events, are the same too.
    for s in &specs {
        assert_eq!(
            indicator_values(&a.site_indicators(&s.id).await),
            indicator_values(&b.site_indicators(&s.id).await),
            "{}",
            s.id
        );
    }
}

/// `GET /api/broadcasts` without the send counts (a re-send of a command
/// takes no journal entry, so the province's count may trail).
fn broadcasts_shown(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("attempts");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// A commune's loudspeaker broadcasts reach the province as they stand at
/// the commune: a plan drafted and approved on a real commune box (its
/// command sent to the smart cluster of Bản 1, a task for Bản 3, served
/// only by an FE cluster), then cancelled, is listed at the province's
/// `/site/{commune}/api/broadcasts` as the commune lists it at each step
/// (send counts aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_communes_broadcasts_are_shown_at_the_province_as_they_stand() {
    let root = tempfile::tempdir().unwrap();
    let specs = SiteSpec::many(1);
    let spec = &specs[0];
    let (nats, _js, p) = single(root.path(), &specs, &BTreeMap::new(), |_| {}).await;
    let broker = Mosquitto::start();
    let dir = root.path().join("commune");
    std::fs::create_dir_all(&dir).unwrap();
    let b = Backend::start(
        &dir,
        &kit::province::commune_toml(spec, broker.port, &dir.join("store"), &nats.url()),
    );
    b.wait_ready().await;
    let site = format!("/site/{}/api/broadcasts", spec.id);
    let same = |want: &'static str| {
        let site = site.clone();
        let (b, p) = (&b, &p);
        async move {
            let deadline = Instant::now() + CATCH_UP;
            loop {
                let here = broadcasts_shown(b.get("/api/broadcasts").await);
                let there = p.get(&site).await.ok().map(|(_, v)| broadcasts_shown(v));
                if here["broadcasts"][0]["state"] == want && Some(&here) == there.as_ref() {
                    return here;
                }
                assert!(
                    Instant::now() < deadline,
                    "{want}: the commune shows {here}, the province {there:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (status, v) = b.post("/api/broadcasts",
        serde_json::json!({
            "villages": ["ban-1", "ban-3"],
            "priority": "priority",
            "text_vi": "Thông báo của Ủy ban nhân dân xã: lũ quét có thể xảy ra, bà con không qua suối.",
            "repeats": 1,
            "expires_in_mins": 60,
        }),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    same("draft").await;
    let (status, v) = commune_post(&b, &format!("/api/broadcasts/{id}/approve")).await;
    assert_eq!(status, 200, "{v}");
    let shown = same("approved").await;
    let plan = &shown["broadcasts"][0];
    let cluster = |s: &str| {
        plan["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["speaker"] == s)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(cluster("spk-02")["state"], "manual", "{plan}");
    assert!(
        shown["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["village"] == "ban-3" && t["state"] == "open"),
        "{shown}"
    );
    let (status, v) = commune_post(&b, &format!("/api/broadcasts/{id}/cancel")).await;
    assert_eq!(status, 200, "{v}");
    same("cancelled").await;
}
