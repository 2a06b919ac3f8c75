//! `commune-ioc demo`: embedded broker, traffic simulator and backend on
//! this box, for the example site built into the binary (or `--config`).

use std::net::TcpListener as StdListener;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use commune_ioc::{app, config, server, sim};

/// The demo's choices.
pub struct Options {
    /// A site config instead of the embedded example.
    pub config: Option<PathBuf>,
    /// HTTP address.
    pub listen: String,
    /// Port of the embedded broker.
    pub mqtt_port: Option<u16>,
    /// Store directory.
    pub store: Option<PathBuf>,
    /// Simulated messages per second.
    pub rate: f64,
    /// Publish the simulated warning bulletins.
    pub warnings: bool,
    /// Run simulated loudspeaker clusters that obey broadcast commands.
    pub speakers: Option<super::SpeakerOptions>,
    /// Where to write the bound address.
    pub port_file: Option<PathBuf>,
}

fn free_port(preferred: u16) -> Result<u16> {
    if StdListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    let l = StdListener::bind(("127.0.0.1", 0)).context("no free port for the embedded broker")?;
    Ok(l.local_addr()?.port())
}

/// Where the embedded example keeps its store when `--store` is not given:
/// `$XDG_DATA_HOME/commune-ioc/demo`, else `~/.local/share/commune-ioc/demo`,
/// else a directory under the system's temporary directory. Never relative
/// to the working directory.
pub fn default_store(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = nonempty("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return d.join("commune-ioc").join("demo");
    }
    if let Some(h) = nonempty("HOME").filter(|p| p.is_absolute()) {
        return h.join(".local/share/commune-ioc/demo");
    }
    std::env::temp_dir().join("commune-ioc-demo")
}

/// Run the demo until Ctrl+C.
pub async fn run(o: Options) -> Result<()> {
    super::init_logging();
    if !cfg!(feature = "embedded-broker") {
        bail!("this build has no embedded broker: rebuild with the default features");
    }
    let (mut cfg, shown_config, store) = match &o.config {
        Some(path) => (super::load(path)?, path.display().to_string(), o.store),
        None => {
            let cfg = config::examples::binh_lu().map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = o
                .store
                .unwrap_or_else(|| default_store(|k| std::env::var(k).ok()));
            let shown = format!(
                "FILE  (tệp cấu hình của bạn, với IOC__STORE__PATH={})",
                store.display()
            );
            (cfg, shown, Some(store))
        }
    };
    let mqtt_port = match o.mqtt_port {
        Some(p) => p,
        None => free_port(1883)?,
    };
    app::demo::prepare(&mut cfg, mqtt_port, store);
    std::fs::create_dir_all(&cfg.store.path)
        .with_context(|| format!("không tạo được thư mục {}", cfg.store.path.display()))?;
    tracing::info!(store = %cfg.store.path.display(), "demo store");
    let listener = super::bind(&o.listen).await?;
    let addr = listener.local_addr()?;
    let cancel = super::shutdown_signal();
    let sim_cfg = cfg.clone();
    let sim_cancel = cancel.child_token();
    let commune = cfg.commune.name.clone();
    let port_file = o.port_file;
    let rate = o.rate;
    let bulletins = o.warnings.then_some(sim::bulletin::Cadence::DEMO);
    let speakers = o.speakers;
    server::run(cfg, listener, cancel, move |h| {
        let shown = if addr.ip().is_unspecified() {
            format!("http://127.0.0.1:{}/", addr.port())
        } else {
            format!("http://{addr}/")
        };
        if let Some(pw) = &h.first_admin_password {
            super::print_first_admin(pw, &shown_config);
        }
        let login = app::demo::login(&h.accounts);
        println!();
        println!("  Trung tâm giám sát và điều hành thông minh — {commune} (bản chạy thử)");
        match &login {
            Ok((password, kiosk)) => {
                println!("  Màn hình giám sát:  {shown}?kiosk=1&token={kiosk}");
                println!("  Đăng nhập:          {shown}  (tài khoản demo / mật khẩu {password})");
            }
            Err(e) => println!("  Không tạo được tài khoản chạy thử: {e}"),
        }
        println!("  MQTT (nhúng):       127.0.0.1:{mqtt_port}");
        println!("  Dừng: Ctrl+C");
        println!();
        if let Err(e) = super::write_port_file(port_file.as_deref(), addr) {
            tracing::error!(error = %e, "cannot write port file");
        }
        if let Some(s) = speakers {
            let (cfg, cancel) = (sim_cfg.clone(), sim_cancel.clone());
            tokio::spawn(async move {
                sim::speakers::fleet(
                    &cfg,
                    "127.0.0.1",
                    mqtt_port,
                    s.behaviour,
                    s.dead_zones_silent,
                    cancel,
                )
                .await;
            });
        }
        tokio::spawn(async move {
            match sim::publish(
                &sim_cfg,
                "127.0.0.1",
                mqtt_port,
                rate,
                None,
                2026,
                bulletins,
                sim_cancel,
            )
            .await
            {
                Ok(n) => tracing::info!(sent = n, "simulator stopped"),
                Err(e) => tracing::error!(error = %e, "simulator failed"),
            }
        });
    })
    .await?;
    Ok(())
}
