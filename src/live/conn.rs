//! One WebSocket connection: its subscriptions, and the loop that reads
//! commands, forwards the hub's steps (merged by key when it fell behind),
//! sends heartbeats and closes cleanly on shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::{SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Item, Step, MAX_SHARED_FRAMES};
use super::keys::{KeyInfo, Pattern};
use super::protocol::{error_frame, pages, parse_command, Command, ErrorCode, Resume};
use crate::auth::{AuthError, Authenticator, Principal};

/// Close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TOO_BIG: u16 = 1009;
const INTERNAL: u16 = 1011;
const TRY_AGAIN: u16 = 1013;

/// Rate-limit violations in a row before the connection is closed.
const MAX_STRIKES: u32 = 20;
/// Patterns per subscription.
const MAX_PATTERNS: usize = 64;
/// Time a connection without a token has to send `auth`.
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// One subscription.
#[derive(Debug)]
struct Sub {
    id: String,
    /// The patterns as the client wrote them (for the signature).
    keys: Vec<String>,
    patterns: Vec<Pattern>,
    villages: Option<HashSet<String>>,
    /// Items of steps up to this seq are already in the client's snapshot.
    since: u64,
    /// Per key id: 0 unknown, 1 no, 2 yes.
    cache: Vec<u8>,
}

impl Sub {
    fn matches(&self, key: &KeyInfo) -> bool {
        self.villages
            .as_ref()
            .is_none_or(|v| v.contains(&key.scope))
            && self.patterns.iter().any(|p| p.matches(key))
    }

    fn accepts(&mut self, key: &KeyInfo) -> bool {
        let i = key.id as usize;
        if i >= self.cache.len() {
            self.cache.resize(i + 1, 0);
        }
        if self.cache[i] == 0 {
            self.cache[i] = if self.matches(key) { 2 } else { 1 };
        }
        self.cache[i] == 2
    }
}

/// Why the loop ended.
enum End {
    /// The peer left or the socket failed: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

struct Conn {
    hub: Arc<Hub>,
    socket: WebSocket,
    subs: Vec<Sub>,
    /// Hash of the subscriptions' keys and village filters: connections
    /// with equal signatures get equal update frames.
    signature: u64,
    send_timeout: Duration,
    /// Token bucket for commands.
    tokens: f64,
    refilled: Instant,
    strikes: u32,
}

/// Serve one upgraded connection until the peer leaves or `cancel` fires.
/// `principal` is who the handshake's token named (`Err(Missing)` when it
/// carried none: the first frame must then be `auth`); `token` is the
/// handshake's token, checked again at every heartbeat.
pub async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    auth: Arc<dyn Authenticator>,
    principal: Result<Principal, AuthError>,
    token: Option<String>,
    cancel: CancellationToken,
) {
    let limits = hub.limits().clone();
    let mut conn = Conn {
        hub: Arc::clone(&hub),
        socket,
        subs: Vec::new(),
        signature: 0,
        send_timeout: Duration::from_secs(limits.send_timeout_s.max(1)),
        tokens: f64::from(limits.commands_per_second),
        refilled: Instant::now(),
        strikes: 0,
    };
    let metrics = &hub.metrics().live_connections;
    let Some(_slot) = hub.admit() else {
        conn.error(
            ErrorCode::TooManyConnections,
            None,
            "Máy chủ đang có quá nhiều kết nối; hãy thử lại sau.",
        )
        .await;
        conn.close(TRY_AGAIN, "qua nhieu ket noi").await;
        return;
    };
    metrics.inc();
    let end = conn.run(auth, principal, token, &cancel).await;
    if let End::Close(code, reason) = end {
        conn.close(code, reason).await;
    }
    metrics.dec();
}

fn now_str() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Conn {
    async fn run(
        &mut self,
        auth: Arc<dyn Authenticator>,
        principal: Result<Principal, AuthError>,
        mut token: Option<String>,
        cancel: &CancellationToken,
    ) -> End {
        match principal {
            Ok(_) => {}
            Err(AuthError::Missing) => match self.await_auth(auth.as_ref(), cancel).await {
                Ok(t) => token = Some(t),
                Err(end) => return end,
            },
            Err(AuthError::Invalid) => {
                self.error(
                    ErrorCode::Unauthorized,
                    None,
                    "Mã truy cập không hợp lệ hoặc đã hết hạn.",
                )
                .await;
                return End::Close(POLICY, "unauthorized");
            }
            Err(AuthError::Unavailable) => {
                self.error(
                    ErrorCode::Unavailable,
                    None,
                    "Máy chủ tạm thời không kiểm tra được mã truy cập; hãy thử lại sau.",
                )
                .await;
                return End::Close(TRY_AGAIN, "try again");
            }
        }
        let (seq, mut rx) = self.hub.attach();
        let limits = self.hub.limits().clone();
        let hello = json!({
            "type": "hello",
            "epoch": self.hub.epoch(),
            "seq": seq,
            "at": now_str(),
            "heartbeat_s": limits.heartbeat_s,
            "limits": {
                "max_subscriptions": limits.max_subscriptions,
                "max_frame_bytes": limits.max_frame_bytes,
                "max_command_bytes": limits.max_command_bytes,
                "commands_per_second": limits.commands_per_second,
            },
        });
        if !self.send(hello.to_string()).await {
            return End::Gone;
        }

        let heartbeat = Duration::from_secs(limits.heartbeat_s.max(1));
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.tick().await;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.error(ErrorCode::ShuttingDown, None, "Máy chủ đang dừng; màn hình sẽ tự kết nối lại.").await;
                    return End::Close(GOING_AWAY, "server stopping");
                }
                msg = self.socket.recv() => {
                    last_heard = Instant::now();
                    match msg {
                        None => return End::Gone,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "websocket read failed");
                            let text = e.to_string();
                            if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
                                return End::Close(TOO_BIG, "frame too large");
                            }
                            return End::Gone;
                        }
                        Some(Ok(Message::Text(t))) => {
                            if let Err(end) = self.command(t.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.error(ErrorCode::BinaryNotSupported, None, "Chỉ nhận khung văn bản JSON.").await;
                        }
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(_)) => {}
                    }
                }
                r = rx.recv() => match r {
                    Ok(step) => {
                        let mut steps = vec![step];
                        let mut lagged = false;
                        loop {
                            match rx.try_recv() {
                                Ok(s) => steps.push(s),
                                Err(TryRecvError::Lagged(_)) => { lagged = true; break; }
                                Err(_) => break,
                            }
                        }
                        if lagged {
                            if !self.resync_all().await { return End::Gone; }
                        } else if !self.forward(&steps).await {
                            return End::Gone;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if !self.resync_all().await { return End::Gone; }
                    }
                    Err(RecvError::Closed) => return End::Close(GOING_AWAY, "server stopping"),
                },
                _ = ticker.tick() => {
                    // A token revoked or expired since the handshake ends
                    // the stream.
                    if let Some(t) = token.as_deref() {
                        if auth.authenticate(Some(t)) == Err(AuthError::Invalid) {
                            self.error(ErrorCode::Unauthorized, None, "Mã truy cập đã bị thu hồi hoặc hết hạn.").await;
                            return End::Close(POLICY, "unauthorized");
                        }
                    }
                    if last_heard.elapsed() > heartbeat * 3 {
                        tracing::debug!("websocket peer silent for three heartbeats; closing");
                        return End::Close(INTERNAL, "no heartbeat");
                    }
                    if !self.send_message(Message::Ping(Default::default())).await {
                        return End::Gone;
                    }
                    let beat = json!({"type": "heartbeat", "seq": self.hub.seq(), "at": now_str()});
                    if !self.send(beat.to_string()).await {
                        return End::Gone;
                    }
                }
            }
        }
    }

    /// Wait for an `auth` frame; its token, once accepted.
    async fn await_auth(
        &mut self,
        auth: &dyn Authenticator,
        cancel: &CancellationToken,
    ) -> Result<String, End> {
        let deadline = tokio::time::sleep(AUTH_WAIT);
        tokio::pin!(deadline);
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return Err(End::Close(GOING_AWAY, "server stopping")),
                _ = &mut deadline => None,
                m = self.socket.recv() => m.and_then(Result::ok),
            };
            let text = match msg {
                Some(Message::Text(t)) => t,
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                _ => {
                    self.error(
                        ErrorCode::Unauthorized,
                        None,
                        "Cần đăng nhập: gửi lệnh auth với mã truy cập.",
                    )
                    .await;
                    return Err(End::Close(POLICY, "unauthorized"));
                }
            };
            let token = match parse_command(text.as_str()) {
                Ok(Command::Auth { token }) => token,
                _ => {
                    self.error(
                        ErrorCode::Unauthorized,
                        None,
                        "Cần đăng nhập: lệnh đầu tiên phải là auth.",
                    )
                    .await;
                    return Err(End::Close(POLICY, "unauthorized"));
                }
            };
            return match auth.authenticate(Some(&token)) {
                Ok(_) => Ok(token),
                Err(_) => {
                    self.error(
                        ErrorCode::Unauthorized,
                        None,
                        "Mã truy cập không hợp lệ hoặc đã hết hạn.",
                    )
                    .await;
                    Err(End::Close(POLICY, "unauthorized"))
                }
            };
        }
    }

    fn take_token(&mut self) -> bool {
        let rate = f64::from(self.hub.limits().commands_per_second);
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn command(&mut self, text: &str) -> Result<(), End> {
        if !self.take_token() {
            self.strikes += 1;
            self.error(
                ErrorCode::RateLimited,
                None,
                "Gửi lệnh quá nhanh; lệnh này bị bỏ qua.",
            )
            .await;
            if self.strikes >= MAX_STRIKES {
                return Err(End::Close(POLICY, "rate limited"));
            }
            return Ok(());
        }
        self.strikes = 0;
        let limits = self.hub.limits().clone();
        if text.len() > limits.max_command_bytes {
            let msg = format!(
                "Lệnh quá lớn: {} byte, tối đa {} byte.",
                text.len(),
                limits.max_command_bytes
            );
            self.error(ErrorCode::CommandTooLarge, None, &msg).await;
            return Ok(());
        }
        let cmd = match parse_command(text) {
            Ok(c) => c,
            Err(msg) => {
                self.error(ErrorCode::Malformed, None, &msg).await;
                return Ok(());
            }
        };
        let ok = match cmd {
            Command::Auth { .. } => true,
            Command::Ping { id } => {
                let pong =
                    json!({"type": "pong", "id": id, "seq": self.hub.seq(), "at": now_str()});
                self.send(pong.to_string()).await
            }
            Command::Unsubscribe { id } => {
                self.subs.retain(|s| s.id != id);
                self.resign();
                true
            }
            Command::Subscribe {
                id,
                keys,
                villages,
                resume,
            } => self.subscribe(id, keys, villages, resume).await,
        };
        if ok {
            Ok(())
        } else {
            Err(End::Gone)
        }
    }

    async fn subscribe(
        &mut self,
        id: String,
        keys: Vec<String>,
        villages: Option<Vec<String>>,
        resume: Option<Resume>,
    ) -> bool {
        if id.is_empty() || id.chars().count() > 64 {
            return self
                .error(
                    ErrorCode::Malformed,
                    None,
                    "Mã đăng ký (id) phải dài từ 1 đến 64 ký tự.",
                )
                .await;
        }
        if keys.is_empty() || keys.len() > MAX_PATTERNS {
            let msg = format!("Cần từ 1 đến {MAX_PATTERNS} khóa trong `keys`.");
            return self.error(ErrorCode::Malformed, Some(&id), &msg).await;
        }
        let replacing = self.subs.iter().any(|s| s.id == id);
        let max = self.hub.limits().max_subscriptions;
        if !replacing && self.subs.len() >= max {
            let msg = format!("Quá nhiều đăng ký trên một kết nối (tối đa {max}).");
            return self
                .error(ErrorCode::TooManySubscriptions, Some(&id), &msg)
                .await;
        }
        let parsed = self.hub.with_known(|known| {
            let patterns = keys
                .iter()
                .map(|k| Pattern::parse(k, known))
                .collect::<Result<Vec<_>, String>>()?;
            if let Some(v) = &villages {
                if let Some(bad) = v.iter().find(|v| !known.scopes.contains(*v)) {
                    return Err(format!("Khóa không tồn tại: thôn/bản `{bad}` không có."));
                }
            }
            Ok(patterns)
        });
        let patterns = match parsed {
            Ok(p) => p,
            Err(msg) => return self.error(ErrorCode::UnknownKey, Some(&id), &msg).await,
        };
        self.subs.retain(|s| s.id != id);
        let mut sub = Sub {
            id,
            keys,
            patterns,
            villages: villages.map(|v| v.into_iter().collect()),
            since: 0,
            cache: Vec::new(),
        };
        let resume_asked = resume.is_some();
        let resumed = resume.and_then(|r| self.hub.resume(&r.epoch, r.seq).map(|x| (r.seq, x)));
        let ok = match resumed {
            Some((from, (seq, steps))) => {
                sub.since = seq;
                let head = json!({"type": "resumed", "id": sub.id, "from": from, "seq": seq});
                let mut ok = self.send(head.to_string()).await;
                for step in steps {
                    if !ok {
                        break;
                    }
                    let items: Vec<&Item> =
                        step.items.iter().filter(|i| sub.accepts(&i.key)).collect();
                    if !items.is_empty() {
                        ok = self
                            .send_items("update", None, step.seq, false, step.at, &items)
                            .await;
                    }
                }
                ok
            }
            // Asked to resume but cannot: the snapshot replaces what it had.
            None => self.snapshot(&mut sub, resume_asked).await,
        };
        self.subs.push(sub);
        self.resign();
        ok
    }

    /// Recompute the signature after the subscriptions changed.
    fn resign(&mut self) {
        use std::hash::{Hash, Hasher};
        let mut parts: Vec<(Vec<String>, Vec<String>)> = self
            .subs
            .iter()
            .map(|s| {
                let mut keys = s.keys.clone();
                keys.sort();
                let mut villages: Vec<String> = s.villages.iter().flatten().cloned().collect();
                villages.sort();
                (keys, villages)
            })
            .collect();
        parts.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        parts.hash(&mut h);
        self.signature = h.finish();
    }

    async fn snapshot(&mut self, sub: &mut Sub, resync: bool) -> bool {
        let (seq, items) = self.hub.snapshot(|k| sub.matches(k));
        sub.since = seq;
        if resync {
            self.hub.metrics().live_resyncs.inc();
        }
        let refs: Vec<&Item> = items.iter().collect();
        let id = sub.id.clone();
        self.send_items("snapshot", Some(&id), seq, resync, Utc::now(), &refs)
            .await
    }

    async fn resync_all(&mut self) -> bool {
        let mut subs = std::mem::take(&mut self.subs);
        let mut ok = true;
        for sub in &mut subs {
            if ok {
                ok = self.snapshot(sub, true).await;
            }
        }
        self.subs = subs;
        ok
    }

    /// Forward the items of `steps` the subscriptions want, the latest
    /// value of each key winning, as one frame (paged when large). A
    /// connection that keeps up (one step, no fresh snapshot pending) shares
    /// the frames built for its signature by the first connection to ask.
    async fn forward(&mut self, steps: &[Arc<Step>]) -> bool {
        if let [step] = steps {
            if self.subs.iter().all(|s| s.since < step.seq) {
                let sig = self.signature;
                let cached = step
                    .frames
                    .lock()
                    .iter()
                    .find(|(k, _)| *k == sig)
                    .map(|(_, f)| Arc::clone(f));
                let frames = match cached {
                    Some(f) => f,
                    None => {
                        let built: Arc<[Utf8Bytes]> = self
                            .update_frames(steps)
                            .into_iter()
                            .map(Utf8Bytes::from)
                            .collect();
                        let mut shared = step.frames.lock();
                        if shared.len() < MAX_SHARED_FRAMES {
                            shared.push((sig, Arc::clone(&built)));
                        }
                        built
                    }
                };
                for frame in frames.iter() {
                    if !self.send_message(Message::Text(frame.clone())).await {
                        return false;
                    }
                }
                return true;
            }
        }
        for frame in self.update_frames(steps) {
            if !self.send(frame).await {
                return false;
            }
        }
        true
    }

    /// The update frames of `steps` for this connection's subscriptions.
    fn update_frames(&mut self, steps: &[Arc<Step>]) -> Vec<String> {
        let Some(last) = steps.last() else {
            return Vec::new();
        };
        // The latest item of each key wins; when an earlier one carried the
        // whole value (its static part changed), the winner goes whole too.
        let mut out: Vec<(&Item, bool)> = Vec::new();
        let mut index: HashMap<u32, usize> = HashMap::new();
        for step in steps {
            for item in &step.items {
                let wanted = self
                    .subs
                    .iter_mut()
                    .any(|s| step.seq > s.since && s.accepts(&item.key));
                if !wanted {
                    continue;
                }
                match index.get(&item.key.id) {
                    Some(&i) => out[i] = (item, out[i].1 || item.whole),
                    None => {
                        index.insert(item.key.id, out.len());
                        out.push((item, item.whole));
                    }
                }
            }
        }
        if out.is_empty() {
            return Vec::new();
        }
        let wholes: Vec<Item> = out
            .iter()
            .filter(|(i, whole)| *whole && !i.whole)
            .map(|(i, _)| i.as_whole())
            .collect();
        let mut wholes = wholes.iter();
        let items: Vec<&Item> = out
            .iter()
            .map(|(i, whole)| {
                if *whole && !i.whole {
                    wholes.next().unwrap_or(i)
                } else {
                    i
                }
            })
            .collect();
        self.frames("update", None, last.seq, false, last.at, &items)
    }

    async fn send_items(
        &mut self,
        kind: &str,
        id: Option<&str>,
        seq: u64,
        resync: bool,
        at: chrono::DateTime<Utc>,
        items: &[&Item],
    ) -> bool {
        for frame in self.frames(kind, id, seq, resync, at, items) {
            if !self.send(frame).await {
                return false;
            }
        }
        true
    }

    /// Frames (pages) of a snapshot or an update.
    fn frames(
        &self,
        kind: &str,
        id: Option<&str>,
        seq: u64,
        resync: bool,
        at: chrono::DateTime<Utc>,
        items: &[&Item],
    ) -> Vec<String> {
        let mut head = format!("\"type\":\"{kind}\"");
        if let Some(id) = id {
            head.push_str(",\"id\":");
            head.push_str(&serde_json::to_string(id).unwrap_or_default());
        }
        head.push_str(&format!(",\"seq\":{seq}"));
        if kind == "snapshot" {
            head.push_str(&format!(",\"resync\":{resync}"));
        }
        head.push_str(&format!(
            ",\"at\":\"{}\"",
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        ));
        let texts: Vec<&str> = items.iter().map(|i| &*i.json).collect();
        pages(&head, &texts, self.hub.limits().max_frame_bytes)
    }

    async fn error(&mut self, code: ErrorCode, id: Option<&str>, message: &str) -> bool {
        self.hub.metrics().live_errors.inc();
        self.send(error_frame(code, id, message)).await
    }

    async fn send(&mut self, text: String) -> bool {
        self.send_message(Message::Text(Utf8Bytes::from(text)))
            .await
    }

    async fn send_message(&mut self, msg: Message) -> bool {
        match tokio::time::timeout(self.send_timeout, self.socket.send(msg)).await {
            Ok(Ok(())) => {
                self.hub.metrics().live_frames.inc();
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "websocket write failed");
                false
            }
            Err(_) => {
                tracing::info!(
                    timeout_s = self.send_timeout.as_secs(),
                    "websocket client too slow to take a frame; closing"
                );
                false
            }
        }
    }

    /// Send a close frame and wait briefly for the peer's.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        if !self.send_message(frame).await {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = self.socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}
