//! The embedded MQTT broker (rumqttd), for the demo and single-box installs.
//!
//! rumqttd's `start()` blocks forever and has no shutdown API (rumqttd #771),
//! so it runs on its own thread for the life of the process. It cannot
//! report a port chosen with `:0`; callers pick the port.

use std::net::SocketAddr;

/// Errors starting the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The generated broker config was rejected.
    #[error("embedded broker config: {0}")]
    Config(String),
    /// The broker thread could not be started.
    #[error("cannot start embedded broker thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The port did not open.
    #[error("embedded broker did not start listening on {0}")]
    NotListening(SocketAddr),
}

/// Start the broker on `addr`; returns once it accepts connections.
pub fn start(addr: SocketAddr, max_payload_bytes: usize) -> Result<(), BrokerError> {
    let toml = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 500
dynamic_filters = true
"#,
        max_payload = max_payload_bytes.max(1024 * 1024)
    );
    let config: rumqttd::Config =
        toml::from_str(&toml).map_err(|e| BrokerError::Config(e.to_string()))?;
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(addr))
}
