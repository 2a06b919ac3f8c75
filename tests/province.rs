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

use std::time::Duration;

use async_nats::jetstream;
use kit::nats::{create_journal_stream, stream_count, stream_entries, Cluster};
use kit::province::{SimCommune, STREAM};
use kit::proxy::Proxy;

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
