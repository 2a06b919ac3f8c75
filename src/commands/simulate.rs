//! `commune-ioc simulate`: publish realistic commune traffic to a broker.

use anyhow::Result;

use commune_ioc::config::Config;
use commune_ioc::sim;

/// What to publish and where.
pub struct Options {
    /// Broker host (default: mqtt.host).
    pub host: Option<String>,
    /// Broker port (default: mqtt.port).
    pub port: Option<u16>,
    /// Messages per second.
    pub rate: f64,
    /// Stop after this many.
    pub count: Option<u64>,
    /// Random seed.
    pub seed: u64,
    /// Also publish the warning bulletin chain on the demo's cadence.
    pub warnings: bool,
    /// Also run the simulated loudspeaker clusters.
    pub speakers: Option<super::SpeakerOptions>,
}

/// Publish until `count` or Ctrl+C.
pub async fn run(cfg: Config, o: Options) -> Result<()> {
    let host = o.host.unwrap_or_else(|| cfg.mqtt.host.clone());
    let port = o.port.unwrap_or(cfg.mqtt.port);
    let cancel = super::shutdown_signal();
    tracing::info!(%host, port, rate = o.rate, "publishing simulated traffic");
    let bulletins = o.warnings.then_some(sim::bulletin::Cadence::DEMO);
    let fleet = o.speakers.map(|s| {
        let (cfg, host, cancel) = (cfg.clone(), host.clone(), cancel.clone());
        tokio::spawn(async move {
            sim::speakers::fleet(&cfg, &host, port, s.behaviour, s.dead_zones_silent, cancel).await
        })
    });
    let sent = sim::publish(
        &cfg, &host, port, o.rate, o.count, o.seed, bulletins, cancel,
    )
    .await?;
    if let Some(f) = fleet {
        let _ = f.await;
    }
    tracing::info!(sent, "simulator stopped");
    Ok(())
}
