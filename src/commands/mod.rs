//! One file per subcommand, and what they share (logging, loading, binding,
//! signals). Each subcommand parses nothing itself and calls the library;
//! changes with an audit entry go through `commune_ioc::app`.

pub mod check_config;
pub mod demo;
pub mod healthcheck;
pub mod map;
pub mod report;
pub mod report_out;
pub mod serve;
pub mod simulate;
pub mod user;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use commune_ioc::config::{self, Config};

/// Logs go to stderr; `RUST_LOG` overrides the default filter (never the
/// rule that drops WebSocket frame dumps: `commune_ioc::logging`).
pub fn init_logging() {
    commune_ioc::logging::init();
}

/// Load and validate a config file with its `IOC__*` overrides.
pub fn load(path: &Path) -> Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Bind the HTTP listener, with a message that says what to do when the
/// port is taken.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("không mở được địa chỉ {addr}: có chương trình khác đang dùng cổng này? Chọn địa chỉ khác: với demo dùng --listen 127.0.0.1:8081, với serve đặt http.listen hoặc IOC__HTTP__LISTEN (cannot listen on {addr})"))
}

/// Write the bound address to `path` (atomically), for tests and scripts.
pub fn write_port_file(path: Option<&Path>, addr: SocketAddr) -> Result<()> {
    if let Some(p) = path {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// A token cancelled on Ctrl+C or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// Print the generated password of the first admin, once, on stderr (not
/// through the log).
pub fn print_first_admin(password: &str, config: &str) {
    eprintln!();
    eprintln!("  ==============================================================");
    eprintln!("  Đã tạo tài khoản quản trị đầu tiên:");
    eprintln!("    tên đăng nhập: admin");
    eprintln!("    mật khẩu:      {password}");
    eprintln!("  Mật khẩu này chỉ hiện MỘT LẦN. Hãy ghi lại, hoặc đổi bằng:");
    eprintln!("    commune-ioc user passwd admin --config {config}");
    eprintln!("  ==============================================================");
    eprintln!();
}

/// The simulated loudspeaker clusters of `demo` and `simulate --speakers`.
#[derive(Debug, Clone)]
pub struct SpeakerOptions {
    /// Loss, delay, play time.
    pub behaviour: commune_ioc::sim::speakers::Behaviour,
    /// The clusters of dead-zone villages never answer.
    pub dead_zones_silent: bool,
}
