//! Log output: `RUST_LOG` (default `info,rumqttd=off`) to stderr, with
//! one rule that no setting overrides: the WebSocket layer's trace records
//! are dropped, because they print every frame's payload, and a client's
//! `auth` frame carries its token (a kiosk token never expires).

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets whose trace records carry frame payloads.
const FRAME_DUMPERS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// Whether a record of `target` at `level` may be written.
pub fn allowed(target: &str, level: &Level) -> bool {
    *level != Level::TRACE || !FRAME_DUMPERS.iter().any(|t| target.starts_with(t))
}

/// Install the global subscriber (also for `log` records of dependencies).
pub fn init() {
    let env =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off"));
    let secrets = filter_fn(|m| allowed(m.target(), m.level()));
    use std::io::IsTerminal;
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(env.and(secrets));
    // Fails only when a subscriber is already installed.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_frame_dumps_are_dropped_and_the_rest_kept() {
        assert!(!allowed("tungstenite::protocol", &Level::TRACE));
        assert!(!allowed("tungstenite::protocol::frame", &Level::TRACE));
        assert!(!allowed("tokio_tungstenite", &Level::TRACE));
        assert!(allowed("tungstenite::protocol", &Level::DEBUG));
        assert!(allowed("commune_ioc::live::conn", &Level::TRACE));
        assert!(allowed("hyper", &Level::TRACE));
    }
}
