//! The embedded MQTT broker (rumqttd), for the demo and single-box installs.
//!
//! rumqttd's `start()` blocks forever and has no shutdown API (rumqttd #771),
//! so it runs on its own thread for the life of the process. It cannot
//! report a port chosen with `:0`; callers pick the port. It logs ordinary
//! disconnects at ERROR level, so the default log filter silences it
//! (`RUST_LOG=info,rumqttd=warn` shows it again).

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

/// Start the broker on `addr`; returns once it accepts connections. When
/// `logins` (user name → password) is not empty, clients must present one
/// of them.
pub fn start(
    addr: SocketAddr,
    max_payload_bytes: usize,
    logins: std::collections::HashMap<String, String>,
) -> Result<(), BrokerError> {
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
    let mut config: rumqttd::Config =
        toml::from_str(&toml).map_err(|e| BrokerError::Config(e.to_string()))?;
    if !logins.is_empty() {
        for server in config.v4.iter_mut().flat_map(|m| m.values_mut()) {
            server.connections.auth = Some(logins.clone());
        }
    }
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    let probe = logins.iter().next().map(|(u, p)| (u.clone(), p.clone()));
    for _ in 0..100 {
        if handshake(addr, probe.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(addr))
}

/// A full MQTT 3.1.1 CONNECT / CONNACK / DISCONNECT, so the readiness check
/// looks like a client to the broker (a bare TCP connect makes it log an
/// error). With `login`, the CONNECT carries it.
fn handshake(addr: SocketAddr, login: Option<(&str, &str)>) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))?;
    s.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        let n = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&bytes[..usize::from(n)]);
    };
    // Variable header: protocol "MQTT" level 4, flags, keep-alive 10 s.
    let mut flags = 0x02; // clean session
    if login.is_some() {
        flags |= 0x80 | 0x40;
    }
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 10];
    field(&mut body, b"commune-ioc-probe");
    if let Some((user, pass)) = login {
        field(&mut body, user.as_bytes());
        field(&mut body, pass.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    s.write_all(&packet)?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(std::io::Error::other("broker refused the probe connection"));
    }
    s.write_all(&[0xE0, 0])
}
