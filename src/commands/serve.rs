//! `commune-ioc serve`: the backend against the broker named in the config.

use std::path::Path;

use anyhow::Result;

use commune_ioc::{province, server};

/// Load, bind, serve until Ctrl+C or SIGTERM.
pub async fn run(config: &Path, port_file: Option<&Path>) -> Result<()> {
    super::init_logging();
    let cfg = super::load(config)?;
    let listener = super::bind(&cfg.http.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, commune = %cfg.commune.id, "HTTP listening");
    super::write_port_file(port_file, addr)?;
    let cancel = super::shutdown_signal();
    let config_path = config.display().to_string();
    server::run(cfg, listener, cancel, move |h| {
        if let Some(pw) = &h.first_admin_password {
            super::print_first_admin(pw, &config_path);
        }
    })
    .await?;
    Ok(())
}

/// Province mode: load the process config and the sites, bind, serve until
/// Ctrl+C or SIGTERM.
pub async fn province(config: &Path, sites: &Path, port_file: Option<&Path>) -> Result<()> {
    super::init_logging();
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("IOC__"))
        .collect();
    let layout = province::sites::load(config, sites, &env)?;
    for s in &layout.sites {
        if let Err(e) = &s.config {
            eprintln!("warning: xã {} không chạy: {e}", s.id);
        }
    }
    let listener = super::bind(&layout.process.http.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, province = %layout.province.id, "HTTP listening (province)");
    super::write_port_file(port_file, addr)?;
    let cancel = super::shutdown_signal();
    let config_path = config.display().to_string();
    province::run(layout, listener, cancel, move |h| {
        if let Some(pw) = &h.first_admin_password {
            super::print_first_admin(pw, &config_path);
        }
    })
    .await?;
    Ok(())
}
