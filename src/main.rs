//! The `commune-ioc` command: parses the command line and hands each
//! subcommand to its file in `commands/` (one per subcommand).
//!
//! ```text
//! commune-ioc demo                       # embedded broker + simulator + backend, Bình Lư example
//! commune-ioc serve --config FILE        # the backend against any MQTT broker
//! commune-ioc check-config FILE          # validate a config, list every problem
//! commune-ioc map --config FILE --topic T --payload FILE  # what a message would become
//! commune-ioc simulate [--config FILE]   # publish realistic commune traffic
//! commune-ioc user add|passwd|list|disable|unlock  # accounts, on the box
//! ```

mod commands;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use commands::report::ReportAction;
use commands::user::UserAction;

#[derive(Parser, Debug)]
#[command(
    name = "commune-ioc",
    version,
    about = "Backend of a commune's Intelligent Operations Center (IOC)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the simulated loudspeaker clusters behave (`demo`, `simulate
/// --speakers`).
#[derive(clap::Args, Debug, Clone)]
struct SpeakerSim {
    /// Simulated loudspeaker clusters: share of commands lost (0–1), never
    /// answered (the server retries them).
    #[arg(long, env = "IOC_SIM_SPEAKER_LOSS", default_value_t = 0.0)]
    speaker_loss: f64,
    /// Wait before a simulated cluster answers a command, milliseconds.
    #[arg(long, env = "IOC_SIM_SPEAKER_DELAY_MS", default_value_t = 800)]
    speaker_delay_ms: u64,
    /// How long a simulated play lasts, seconds.
    #[arg(long, env = "IOC_SIM_SPEAKER_PLAY_SECS", default_value_t = 30)]
    speaker_play_secs: u64,
    /// Let the clusters of dead-zone villages answer too (by default they
    /// stay silent, as a cluster without mobile coverage does).
    #[arg(long, env = "IOC_SIM_SPEAKER_DEAD_ZONES_ANSWER")]
    speaker_dead_zones_answer: bool,
}

impl SpeakerSim {
    fn options(&self) -> commands::SpeakerOptions {
        commands::SpeakerOptions {
            behaviour: commune_ioc::sim::speakers::Behaviour {
                loss: self.speaker_loss.clamp(0.0, 1.0),
                delay: std::time::Duration::from_millis(self.speaker_delay_ms),
                play: std::time::Duration::from_secs(self.speaker_play_secs),
                ..Default::default()
            },
            dead_zones_silent: !self.speaker_dead_zones_answer,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the backend against the MQTT broker named in the config.
    Serve {
        /// Config file (TOML). Keys can be overridden by IOC__SECTION__KEY.
        #[arg(long, env = "IOC_CONFIG", default_value = "config/commune.toml")]
        config: PathBuf,
        /// Write the bound HTTP address here once listening (for tests and scripts).
        #[arg(long, env = "IOC_PORT_FILE")]
        port_file: Option<PathBuf>,
        /// Province mode: a directory of site configs, one per commune
        /// (`--config` is then the process config with `[province]` and
        /// `[stream]`; docs/PROVINCE.md §6).
        #[arg(long, env = "IOC_SITES")]
        sites: Option<PathBuf>,
    },
    /// Validate a config file and list every problem with its key and reason.
    /// To see what a sample message would become under it (a new sensor's
    /// mapping, before it goes live): `commune-ioc map --config FILE
    /// --topic TOPIC --payload FILE`.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Show what one sample message would become under a config: the rule
    /// that takes it, its events (device, time, readings) or why it would
    /// be a dead letter. Exit 0 for events, 3 for a dead letter.
    Map {
        /// Config file (TOML), with its [[mapped]] sources.
        #[arg(long, env = "IOC_CONFIG", default_value = "config/commune.toml")]
        config: PathBuf,
        /// The MQTT topic, e.g. "zigbee2mqtt/Cảm biến nước".
        #[arg(long)]
        topic: String,
        /// File holding the payload bytes (`-`: standard input).
        #[arg(long)]
        payload: PathBuf,
        /// As if delivered from the broker's retained store.
        #[arg(long)]
        retained: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish realistic commune traffic to a broker.
    Simulate {
        /// Config file: the commune, its villages and devices (default: the
        /// Bình Lư example built into the binary).
        #[arg(long, env = "IOC_CONFIG")]
        config: Option<PathBuf>,
        /// Broker host (default: mqtt.host from the config).
        #[arg(long, env = "IOC_SIM_HOST")]
        host: Option<String>,
        /// Broker port (default: mqtt.port from the config).
        #[arg(long, env = "IOC_SIM_PORT")]
        port: Option<u16>,
        /// Messages per second.
        #[arg(long, env = "IOC_SIM_RATE", default_value_t = 20.0)]
        rate: f64,
        /// Stop after this many messages.
        #[arg(long, env = "IOC_SIM_COUNT")]
        count: Option<u64>,
        /// Random seed (same seed, same traffic).
        #[arg(long, env = "IOC_SIM_SEED", default_value_t = 2026)]
        seed: u64,
        /// Also publish a flash-flood warning bulletin chain (CAP 1.2 on
        /// ioc/{commune}/warning/cap) on the demo's cadence: level 2 after
        /// 15 s, raised to level 3 a minute later, cancelled after 5 min,
        /// again every 10 min.
        #[arg(long, env = "IOC_SIM_WARNINGS")]
        warnings: bool,
        /// Also run the site's smart loudspeaker clusters, obeying broadcast
        /// commands on ioc/{commune}/speaker/{id}/cmd (each its own client,
        /// id = the cluster's id, no login).
        #[arg(long, env = "IOC_SIM_SPEAKERS")]
        speakers: bool,
        #[command(flatten)]
        speaker_sim: SpeakerSim,
    },
    /// Manage user accounts in the store named by the config (works while
    /// the server runs; changes take effect at once).
    User {
        /// Config file (its store.path holds the accounts).
        #[arg(long, env = "IOC_CONFIG", default_value = "config/commune.toml")]
        config: PathBuf,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Sealed periodic reports: seal, verify, the signing key, documents,
    /// correction drafts (works while the server runs).
    Report {
        /// Config file (its store.path holds the journal and the key).
        #[arg(long, env = "IOC_CONFIG", default_value = "config/commune.toml")]
        config: PathBuf,
        #[command(subcommand)]
        action: ReportAction,
    },
    /// The demo: embedded broker, traffic simulator and backend on this box.
    Demo {
        /// Config file of a site (default: the Bình Lư example built into
        /// the binary).
        #[arg(long, env = "IOC_CONFIG")]
        config: Option<PathBuf>,
        /// HTTP address (port 0 picks a free one).
        #[arg(long, env = "IOC_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Port of the embedded MQTT broker (default: 1883 if free, else any free port).
        #[arg(long, env = "IOC_DEMO_MQTT_PORT")]
        mqtt_port: Option<u16>,
        /// Store directory (default: the config's store.path with --config;
        /// for the built-in example $XDG_DATA_HOME/commune-ioc/demo or
        /// ~/.local/share/commune-ioc/demo).
        #[arg(long, env = "IOC_DEMO_STORE")]
        store: Option<PathBuf>,
        /// Simulated messages per second.
        #[arg(long, env = "IOC_DEMO_RATE", default_value_t = 20.0)]
        rate: f64,
        /// Leave out the simulated warning bulletins (a flash-flood chain:
        /// level 2, raised to level 3, cancelled; every 10 min).
        #[arg(long, env = "IOC_DEMO_NO_WARNINGS")]
        no_warnings: bool,
        /// Leave out the simulated loudspeaker clusters that obey broadcast
        /// commands.
        #[arg(long, env = "IOC_DEMO_NO_SPEAKERS")]
        no_speakers: bool,
        #[command(flatten)]
        speaker_sim: SpeakerSim,
        /// Write the bound HTTP address here once listening.
        #[arg(long, env = "IOC_PORT_FILE")]
        port_file: Option<PathBuf>,
    },
    /// Exit 0 when a running backend answers /healthz (for Docker's
    /// HEALTHCHECK, which has no curl in the image).
    Healthcheck {
        /// The backend's HTTP address.
        #[arg(long, env = "IOC_HEALTH_ADDR", default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

fn main() {
    let cli = Cli::parse();
    commune_ioc::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        // One readable message for people, no backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CheckConfig { file } => commands::check_config::run(&file),
        Command::Map {
            config,
            topic,
            payload,
            retained,
            json,
        } => commands::map::run(&commands::load(&config)?, topic, &payload, retained, json),
        Command::Healthcheck { addr } => commands::healthcheck::run(&addr),
        Command::Serve {
            config,
            port_file,
            sites: Some(sites),
        } => commands::serve::province(&config, &sites, port_file.as_deref()).await,
        Command::Serve {
            config, port_file, ..
        } => commands::serve::run(&config, port_file.as_deref()).await,
        Command::User { config, action } => commands::user::run(&commands::load(&config)?, action),
        Command::Report { config, action } => {
            // `verify` runs without a config (the province side).
            let needs = !matches!(action, ReportAction::Verify { .. }) || config.exists();
            let cfg = if needs {
                Some(commands::load(&config)?)
            } else {
                None
            };
            commands::report::run(cfg.as_ref(), action)
        }
        Command::Simulate {
            config,
            host,
            port,
            rate,
            count,
            seed,
            warnings,
            speakers,
            speaker_sim,
        } => {
            commands::init_logging();
            let cfg = match config {
                Some(path) => commands::load(&path)?,
                None => {
                    commune_ioc::config::examples::binh_lu().map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
            let o = commands::simulate::Options {
                host,
                port,
                rate,
                count,
                seed,
                warnings,
                speakers: speakers.then(|| speaker_sim.options()),
            };
            commands::simulate::run(cfg, o).await
        }
        Command::Demo {
            config,
            listen,
            mqtt_port,
            store,
            rate,
            no_warnings,
            no_speakers,
            speaker_sim,
            port_file,
        } => {
            commands::demo::run(commands::demo::Options {
                config,
                listen,
                mqtt_port,
                store,
                rate,
                warnings: !no_warnings,
                speakers: (!no_speakers).then(|| speaker_sim.options()),
                port_file,
            })
            .await
        }
    }
}
