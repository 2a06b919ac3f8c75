//! The embedded MQTT broker (rumqttd), for the demo and single-box installs.
//! Clients reach it through [`crate::ingest::gate`], which enforces who may
//! connect, publish and subscribe; rumqttd itself listens on a private
//! loopback port.
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

/// Where commune-ioc's own client reaches the embedded broker: rumqttd's
/// private loopback port and the per-process login it accepts.
#[derive(Debug, Clone)]
pub struct Inner {
    /// rumqttd's listener (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// The login rumqttd accepts.
    pub username: String,
    /// Its secret (random per process, never logged).
    pub password: String,
}

static INNER: std::sync::Mutex<Option<Inner>> = std::sync::Mutex::new(None);

/// The running embedded broker's private address and login, if any.
pub fn inner() -> Option<Inner> {
    INNER.lock().ok()?.clone()
}

/// The embedded broker, started: the gate's listener (to be served with
/// [`crate::ingest::gate::run`]) and rumqttd's private side.
#[derive(Debug)]
pub struct Started {
    /// The public listener on `mqtt.host:mqtt.port`.
    pub listener: std::net::TcpListener,
    /// rumqttd's private side.
    pub inner: Inner,
}

/// Start rumqttd on a private loopback port that accepts only a secret
/// login, bounded in memory, and bind the gate's public listener on
/// `public`; returns once rumqttd accepts connections. `max_payload_bytes`
/// is the largest payload it takes.
pub fn start(public: SocketAddr, max_payload_bytes: usize) -> Result<Started, BrokerError> {
    let inner_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let username = "commune-ioc-internal".to_string();
    let password: String = {
        use rand::Rng;
        let mut r = rand::rng();
        (0..32)
            .map(|_| char::from(b"0123456789abcdef"[r.random_range(0..16)]))
            .collect()
    };
    // Memory bounds (issue 11): each topic filter keeps at most
    // `max_segment_count` segments of `max_segment_size` bytes; the gate lets
    // data reach only commune-ioc's four filters. `max_inflight_count`
    // bounds what is sent to one client and not yet acknowledged.
    let toml = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = {segment}
max_segment_count = {SEGMENT_COUNT}

[v4.1]
name = "v4-1"
listen = "{inner_addr}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload_bytes}
max_inflight_count = {MAX_INFLIGHT}
dynamic_filters = true
"#,
        segment = segment_size(max_payload_bytes),
    );
    let mut config: rumqttd::Config =
        toml::from_str(&toml).map_err(|e| BrokerError::Config(e.to_string()))?;
    let logins: std::collections::HashMap<String, String> =
        [(username.clone(), password.clone())].into_iter().collect();
    for server in config.v4.iter_mut().flat_map(|m| m.values_mut()) {
        server.connections.auth = Some(logins.clone());
    }
    let listener = std::net::TcpListener::bind(public)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    for _ in 0..100 {
        if handshake(inner_addr, Some((&username, &password))).is_ok() {
            let inner = Inner {
                addr: inner_addr,
                username,
                password,
            };
            if let Ok(mut slot) = INNER.lock() {
                *slot = Some(inner.clone());
            }
            return Ok(Started { listener, inner });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(inner_addr))
}

/// Segments kept per topic filter.
pub const SEGMENT_COUNT: usize = 4;

/// QoS 1 messages sent to one client and not yet acknowledged.
pub const MAX_INFLIGHT: usize = 100;

/// Bytes per segment: 8 MiB, or room for two payloads of the limit.
pub fn segment_size(max_payload_bytes: usize) -> usize {
    (8 * 1024 * 1024).max(max_payload_bytes.saturating_mul(2))
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
