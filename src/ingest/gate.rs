//! The embedded broker's front door: who may connect, publish and subscribe.
//!
//! rumqttd 0.20 has a login check (a user/password map, or a hook given the
//! client id, user name and password) but no hook for what a client
//! publishes or subscribes to, and it keeps every topic a client publishes
//! to or subscribes to as a log in memory. So devices do not reach it
//! directly: this gate listens on `mqtt.host:mqtt.port`, reads each client's
//! packets (MQTT 3.1.1), checks them, and forwards them to rumqttd on a
//! private loopback port that only accepts a per-process secret login (the
//! gate rewrites each CONNECT with it; commune-ioc's own client connects
//! there directly). What rumqttd sends back is copied unchanged.
//!
//! The rules (docs/PROTOCOL.md §1.7):
//!
//! - commune-ioc's client id is reserved: any client presenting it is
//!   refused (CONNACK 2, identifier rejected);
//! - with `mqtt.embedded_logins`, a client must present one of them
//!   (CONNACK 4 otherwise); its identity is the login name, else the client
//!   id;
//! - publish: with logins, a device (login = device id) only under its own
//!   id and its class's topics, the login `frigate` only `frigate/events`,
//!   `frigate/reviews`, `frigate/available`, the login `dossier` only
//!   `ioc/{commune}/procedure/dossier`, the login `warning` only
//!   `ioc/{commune}/warning/cap`, a login named like a mapped source
//!   (`[[mapped]]` id, e.g. `z2m`) only that source's topics; without
//!   logins, any topic commune-ioc decodes (section 2 and 3) for the
//!   commune, and every mapped source's topics;
//! - subscribe: only the client's own command topic
//!   `ioc/{commune}/{class}/{id}/cmd`, exactly, for a device in the config;
//! - publishers wait (the gate stops reading them) while commune-ioc is
//!   more than half of rumqttd's per-filter log behind, at most 2 s per
//!   message: rumqttd drops the oldest part of a full log even when it has
//!   not been delivered;
//! - a payload above the broker's limit, a forbidden topic (or last will)
//!   or a forbidden filter closes the connection (MQTT 3.1.1 has no way to
//!   refuse one publish), with a warning in the log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Login, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The topics each device class publishes (docs/PROTOCOL.md §2).
const LEAVES: [(&str, &[&str]); 3] = [
    ("camera", &["event", "status"]),
    ("speaker", &["status", "session", "ack"]),
    ("sensor", &["telemetry", "status"]),
];

/// Longest wait for a client's CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most clients connected through the gate at once.
pub const MAX_CLIENTS: usize = 10_000;

/// Payload bytes the gate forwarded to rumqttd, and payload bytes
/// commune-ioc's client took from it. rumqttd acknowledges a publish as soon
/// as it is in its in-memory log and drops the oldest segments of a full log,
/// even those commune-ioc has not read yet: so the gate holds publishers back
/// (it stops reading their sockets) while commune-ioc is more than
/// [`MAX_LAG_BYTES`] behind.
static FORWARDED: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// How far commune-ioc may fall behind the gate before publishers wait: half
/// of what rumqttd keeps per topic filter.
pub fn max_lag_bytes(max_payload: usize) -> u64 {
    (crate::ingest::broker::segment_size(max_payload) * (crate::ingest::broker::SEGMENT_COUNT - 1)
        / 2) as u64
}

/// Longest a publish waits for commune-ioc to catch up before it is
/// forwarded anyway (a message no subscriber takes never catches up).
const MAX_HOLD: Duration = Duration::from_secs(2);

/// commune-ioc's client took `bytes` of payload from the embedded broker.
pub fn delivered(bytes: usize) {
    DELIVERED.fetch_add(bytes as u64, Ordering::AcqRel);
}

/// commune-ioc's client (re)connected: what it missed before is not coming
/// (the embedded broker keeps no session across a lost connection), so the
/// lag starts again from zero.
pub fn resync() {
    DELIVERED.store(FORWARDED.load(Ordering::Acquire), Ordering::Release);
}

async fn wait_for_room(max_payload: usize) {
    let limit = max_lag_bytes(max_payload);
    let start = tokio::time::Instant::now();
    while FORWARDED
        .load(Ordering::Acquire)
        .saturating_sub(DELIVERED.load(Ordering::Acquire))
        > limit
        && start.elapsed() < MAX_HOLD
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The largest packet the gate takes for a payload limit (topic and
/// header on top).
pub fn max_packet(max_payload: usize) -> usize {
    max_payload.saturating_add(64 * 1024 + 16)
}

/// What the gate allows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `commune.id`.
    pub commune: String,
    /// commune-ioc's own client id (reserved).
    pub backend_client_id: String,
    /// Device id → class (`camera`, `speaker`, `sensor`).
    pub devices: HashMap<String, &'static str>,
    /// Device logins (user → password); empty: anonymous clients.
    pub logins: HashMap<String, String>,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// Mapped sources: (source id, one of its topic patterns).
    pub mapped: Vec<(String, crate::config::mapped::TopicPattern)>,
}

impl Policy {
    fn leaves(class: &str) -> &'static [&'static str] {
        LEAVES
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, l)| *l)
            .unwrap_or(&[])
    }

    /// Whether `who` (a login name when logins are on, else `None`) may
    /// publish to `topic`.
    pub fn may_publish(&self, who: Option<&str>, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();
        let frigate = matches!(
            levels.as_slice(),
            ["frigate", "events" | "reviews" | "available"]
        );
        let dossier =
            matches!(levels.as_slice(), ["ioc", c, "procedure", "dossier"] if *c == self.commune);
        let warning =
            matches!(levels.as_slice(), ["ioc", c, "warning", "cap"] if *c == self.commune);
        let device = match levels.as_slice() {
            ["ioc", c, class, id, leaf] if *c == self.commune => {
                Self::leaves(class).contains(leaf).then_some((*class, *id))
            }
            _ => None,
        };
        let mapped = |login: Option<&str>| {
            self.mapped.iter().any(|(source, pattern)| {
                login.is_none_or(|l| l == source) && pattern.captures(topic).is_some()
            })
        };
        match who {
            None => frigate || dossier || warning || device.is_some() || mapped(None),
            Some("frigate") => frigate,
            Some("dossier") => dossier,
            Some("warning") => warning,
            Some(login) => {
                device.is_some_and(|(class, id)| {
                    id == login && self.devices.get(id).is_some_and(|c| *c == class)
                }) || mapped(Some(login))
            }
        }
    }

    /// Whether `identity` (login name, else client id) may subscribe to
    /// `filter`: only its own command topic.
    pub fn may_subscribe(&self, identity: &str, filter: &str) -> bool {
        match self.devices.get(identity) {
            Some(class) => filter == format!("ioc/{}/{class}/{identity}/cmd", self.commune),
            None => false,
        }
    }
}

/// Accept clients on `listener` and forward them to rumqttd at `inner`,
/// logging in there as `inner_login`. Runs until the process ends (like
/// rumqttd itself).
pub async fn run(
    listener: TcpListener,
    inner: SocketAddr,
    inner_login: (String, String),
    policy: Arc<Policy>,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    let inner_login = Arc::new(inner_login);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "embedded broker: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, max = MAX_CLIENTS, "embedded broker: too many clients; connection refused");
            continue;
        }
        let (policy, login, clients) = (
            Arc::clone(&policy),
            Arc::clone(&inner_login),
            Arc::clone(&clients),
        );
        tokio::spawn(async move {
            if let Err(why) = client(socket, inner, &login, &policy).await {
                tracing::warn!(%peer, "embedded broker: {why}; connection closed");
            }
            clients.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Read one whole packet (or `None` at the end of the stream).
async fn read_packet(
    socket: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Packet>, String> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
                return Err(format!("packet of {n} bytes above the limit of {max}"))
            }
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
        buf.reserve(8 * 1024);
        match socket.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

async fn refuse(mut w: tokio::net::tcp::OwnedWriteHalf, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if ConnAck::new(code, false).write(&mut out).is_ok() {
        let _ = w.write_all(&out).await;
    }
    let _ = w.shutdown().await;
}

async fn client(
    socket: TcpStream,
    inner: SocketAddr,
    inner_login: &(String, String),
    policy: &Policy,
) -> Result<(), String> {
    let _ = socket.set_nodelay(true);
    let (mut rd, wr) = socket.into_split();
    let max = max_packet(policy.max_payload);
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut rd, &mut buf, max))
        .await
        .map_err(|_| "no CONNECT within 10 s".to_string())??;
    let Some(Packet::Connect(mut connect)) = first else {
        return Err("the first packet is not CONNECT".into());
    };
    if connect.client_id == policy.backend_client_id {
        refuse(wr, ConnectReturnCode::BadClientId).await;
        return Err(format!(
            "client id `{}` is reserved for commune-ioc itself",
            connect.client_id
        ));
    }
    let login = connect.login.take();
    let who = if policy.logins.is_empty() {
        None
    } else {
        match &login {
            Some(l) if policy.logins.get(&l.username) == Some(&l.password) => {
                Some(l.username.clone())
            }
            _ => {
                refuse(wr, ConnectReturnCode::BadUserNamePassword).await;
                return Err("unknown login".into());
            }
        }
    };
    let identity = who.clone().unwrap_or_else(|| connect.client_id.clone());
    if let Some(will) = &connect.last_will {
        if !policy.may_publish(who.as_deref(), &will.topic) {
            refuse(wr, ConnectReturnCode::NotAuthorized).await;
            return Err(format!(
                "`{identity}` may not publish its will to `{}`",
                will.topic
            ));
        }
    }
    connect.login = Some(Login::new(inner_login.0.clone(), inner_login.1.clone()));
    let upstream = TcpStream::connect(inner)
        .await
        .map_err(|e| format!("cannot reach the broker: {e}"))?;
    let _ = upstream.set_nodelay(true);
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let mut out = BytesMut::new();
    Packet::Connect(connect)
        .write(&mut out, max)
        .map_err(|e| format!("CONNECT: {e}"))?;
    up_wr
        .write_all(&out)
        .await
        .map_err(|e| format!("write: {e}"))?;
    // The broker's answers go back as they are.
    let mut down = wr;
    let mut back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut up_rd, &mut down).await;
        let _ = down.shutdown().await;
    });
    let forward = async {
        loop {
            let Some(packet) = read_packet(&mut rd, &mut buf, max).await? else {
                return Ok(());
            };
            match &packet {
                Packet::Publish(p) => {
                    if p.payload.len() > policy.max_payload {
                        return Err(format!(
                            "`{identity}` published {} bytes, the limit is {}",
                            p.payload.len(),
                            policy.max_payload
                        ));
                    }
                    let topic = p.topic.as_str();
                    if !policy.may_publish(who.as_deref(), topic) {
                        return Err(format!("`{identity}` may not publish to `{topic}`"));
                    }
                    wait_for_room(policy.max_payload).await;
                    FORWARDED.fetch_add(p.payload.len() as u64, Ordering::AcqRel);
                }
                Packet::Subscribe(s) => {
                    if let Some(f) = s
                        .filters
                        .iter()
                        .find(|f| !policy.may_subscribe(&identity, &f.path))
                    {
                        return Err(format!("`{identity}` may not subscribe to `{}`", f.path));
                    }
                }
                Packet::Connect(_) => return Err("a second CONNECT".into()),
                _ => {}
            }
            out.clear();
            packet
                .write(&mut out, max)
                .map_err(|e| format!("encode: {e}"))?;
            up_wr
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            if matches!(packet, Packet::Disconnect) {
                return Ok(());
            }
        }
    };
    // When rumqttd closes the connection (keep-alive, a session taken over),
    // the client's side ends too, even if the client stays silent.
    let result = tokio::select! {
        r = forward => r,
        _ = &mut back => Ok(()),
    };
    let _ = up_wr.shutdown().await;
    back.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(logins: bool) -> Policy {
        Policy {
            commune: "binh-lu".into(),
            backend_client_id: "commune-ioc-binh-lu".into(),
            devices: [
                ("cam-01", "camera"),
                ("spk-01", "speaker"),
                ("rain-01", "sensor"),
            ]
            .into_iter()
            .map(|(i, c)| (i.to_owned(), c))
            .collect(),
            logins: if logins {
                [("cam-01", "x")]
                    .into_iter()
                    .map(|(u, p)| (u.to_owned(), p.to_owned()))
                    .collect()
            } else {
                HashMap::new()
            },
            max_payload: 1024,
            mapped: Vec::new(),
        }
    }

    #[test]
    fn mapped_topics_for_anyone_without_logins_and_for_the_source_login_with_them() {
        let pattern = |t: &str| crate::config::mapped::TopicPattern::parse(t).unwrap();
        let mut p = policy(false);
        p.mapped = vec![
            ("z2m".into(), pattern("zigbee2mqtt/{device}")),
            ("tasmota".into(), pattern("tele/{device}/LWT")),
        ];
        assert!(p.may_publish(None, "zigbee2mqtt/Cảm biến nước"));
        assert!(p.may_publish(None, "tele/nha-van-hoa/LWT"));
        assert!(!p.may_publish(None, "zigbee2mqtt/a/b"));
        assert!(!p.may_publish(None, "tele/nha-van-hoa/SENSOR"));
        p.logins = [("z2m", "x")]
            .into_iter()
            .map(|(u, pw)| (u.to_owned(), pw.to_owned()))
            .collect();
        assert!(p.may_publish(Some("z2m"), "zigbee2mqtt/Cảm biến nước"));
        assert!(!p.may_publish(Some("z2m"), "tele/nha-van-hoa/LWT"));
        assert!(!p.may_publish(Some("cam-01"), "zigbee2mqtt/Cảm biến nước"));
    }

    #[test]
    fn devices_publish_under_their_own_id_and_read_only_their_command_topic() {
        let p = policy(true);
        assert!(p.may_publish(Some("cam-01"), "ioc/binh-lu/camera/cam-01/event"));
        assert!(p.may_publish(Some("cam-01"), "ioc/binh-lu/camera/cam-01/status"));
        assert!(!p.may_publish(Some("cam-01"), "ioc/binh-lu/camera/cam-02/event"));
        assert!(!p.may_publish(Some("cam-01"), "ioc/binh-lu/speaker/cam-01/session"));
        assert!(!p.may_publish(Some("cam-01"), "ioc/binh-lu/procedure/dossier"));
        assert!(!p.may_publish(Some("cam-01"), "ioc/binh-lu/camera/cam-01/cmd"));
        assert!(!p.may_publish(Some("cam-01"), "anything/else"));
        assert!(p.may_publish(Some("frigate"), "frigate/events"));
        assert!(!p.may_publish(Some("frigate"), "ioc/binh-lu/procedure/dossier"));
        assert!(p.may_publish(Some("dossier"), "ioc/binh-lu/procedure/dossier"));
        assert!(!p.may_publish(Some("dossier"), "ioc/lung-phinh/procedure/dossier"));
        assert!(p.may_publish(Some("warning"), "ioc/binh-lu/warning/cap"));
        assert!(!p.may_publish(Some("warning"), "ioc/binh-lu/procedure/dossier"));
        assert!(!p.may_publish(Some("cam-01"), "ioc/binh-lu/warning/cap"));
        assert!(p.may_subscribe("cam-01", "ioc/binh-lu/camera/cam-01/cmd"));
        for f in [
            "ioc/#",
            "#",
            "ioc/binh-lu/camera/+/cmd",
            "ioc/binh-lu/camera/cam-02/cmd",
            "$share/g/ioc/#",
            "ioc/binh-lu/camera/cam-01/event",
        ] {
            assert!(!p.may_subscribe("cam-01", f), "{f}");
        }
        assert!(!p.may_subscribe("stranger", "ioc/binh-lu/camera/stranger/cmd"));
    }

    /// A loudspeaker cluster answers its commands on `.../ack` (PROTOCOL
    /// §8) and reads its own `.../cmd`; it never publishes a command.
    #[test]
    fn a_speaker_acknowledges_commands_under_its_own_id() {
        let mut p = policy(true);
        p.logins.insert("spk-01".into(), "x".into());
        assert!(p.may_publish(Some("spk-01"), "ioc/binh-lu/speaker/spk-01/ack"));
        assert!(p.may_publish(Some("spk-01"), "ioc/binh-lu/speaker/spk-01/session"));
        assert!(!p.may_publish(Some("spk-01"), "ioc/binh-lu/speaker/spk-02/ack"));
        assert!(!p.may_publish(Some("spk-01"), "ioc/binh-lu/speaker/spk-01/cmd"));
        assert!(p.may_subscribe("spk-01", "ioc/binh-lu/speaker/spk-01/cmd"));
        assert!(policy(false).may_publish(None, "ioc/binh-lu/speaker/spk-01/ack"));
    }

    #[test]
    fn without_logins_any_decoded_topic_of_the_commune_may_be_published() {
        let p = policy(false);
        assert!(p.may_publish(None, "ioc/binh-lu/camera/cam-99/event"));
        assert!(p.may_publish(None, "ioc/binh-lu/procedure/dossier"));
        assert!(p.may_publish(None, "frigate/available"));
        assert!(p.may_publish(None, "ioc/binh-lu/warning/cap"));
        assert!(!p.may_publish(None, "ioc/lung-phinh/warning/cap"));
        assert!(!p.may_publish(None, "ioc/binh-lu/camera/cam-01/cmd"));
        assert!(!p.may_publish(None, "ioc/lung-phinh/procedure/dossier"));
        assert!(!p.may_publish(None, "flood/1"));
        assert!(!p.may_publish(None, "ioc/binh-lu/camera/cam-01/event/extra"));
    }
}
