//! The socket glue of one WebSocket connection: it feeds a
//! [`Session`] with what the socket reads, the hub's steps, the clock and
//! shutdown, and performs what the session outputs (frames, pings, close),
//! each write bounded by `live.send_timeout_s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Step};
use super::protocol::CloseWhy;
use super::session::{Incoming, Out, ReadFault, Session, Slots};
use crate::auth::{AuthError, Authenticator, Principal};

/// How long to wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Serve one upgraded connection until the peer leaves or `cancel` fires.
/// `principal` is who the handshake's token named (`Err(Missing)` when it
/// carried none: the first frame must then be `auth`); `token` is the
/// handshake's token, checked again at every heartbeat.
pub async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    auth: Arc<dyn Authenticator>,
    slots: Arc<Slots>,
    principal: Result<Principal, AuthError>,
    token: Option<String>,
    cancel: CancellationToken,
) {
    let send_timeout = Duration::from_secs(hub.limits().send_timeout_s.max(1));
    let session = Session::new(
        Arc::clone(&hub),
        auth,
        slots,
        principal,
        token,
        Instant::now(),
    );
    let mut glue = Glue {
        socket,
        hub,
        session,
        ring: None,
        send_timeout,
    };
    glue.run(&cancel).await;
}

struct Glue {
    socket: WebSocket,
    hub: Arc<Hub>,
    session: Session<Hub>,
    /// The hub's ring, once the session is authenticated.
    ring: Option<broadcast::Receiver<Arc<Step>>>,
    send_timeout: Duration,
}

/// What the hub's ring delivered.
enum FromRing {
    Steps(Vec<Arc<Step>>),
    Lagged,
    Closed,
}

impl Glue {
    async fn run(&mut self, cancel: &CancellationToken) {
        loop {
            if !self.flush().await {
                return;
            }
            let wake = tokio::time::Instant::from_std(self.session.next_wake());
            tokio::select! {
                biased;
                _ = cancel.cancelled() => self.session.on_shutdown(),
                msg = self.socket.recv() => {
                    let now = Instant::now();
                    match msg {
                        None => self.session.on_frame(Incoming::Closed, now),
                        Some(Err(e)) => {
                            let fault = classify(e);
                            self.session.on_frame(Incoming::Fault(fault), now);
                        }
                        Some(Ok(Message::Text(t))) => {
                            self.session.on_frame(Incoming::Text(t.as_str()), now)
                        }
                        Some(Ok(Message::Binary(_))) => self.session.on_frame(Incoming::Binary, now),
                        Some(Ok(Message::Close(_))) => self.session.on_frame(Incoming::Closed, now),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            self.session.on_frame(Incoming::Control, now)
                        }
                    }
                }
                r = recv_steps(self.ring.as_mut()) => match r {
                    FromRing::Steps(steps) => self.session.on_steps(&steps),
                    FromRing::Lagged => self.session.on_lagged(),
                    FromRing::Closed => self.session.on_hub_closed(),
                },
                _ = tokio::time::sleep_until(wake) => self.session.on_tick(Instant::now()),
            }
        }
    }

    /// Perform every pending output; false when the connection ended.
    async fn flush(&mut self) -> bool {
        while let Some(out) = self.session.poll() {
            match out {
                Out::Text(t) => {
                    if !self.send(Message::Text(t)).await {
                        return false;
                    }
                }
                Out::Ping => {
                    if !self.send(Message::Ping(Default::default())).await {
                        return false;
                    }
                }
                Out::Attach => {
                    let (seq, rx) = self.hub.attach();
                    self.ring = Some(rx);
                    self.session.on_attached(seq, Instant::now());
                }
                Out::Close(why) => {
                    self.close(why).await;
                    return false;
                }
                Out::Stop => return false,
            }
        }
        true
    }

    /// Write one message within the send timeout. A write that fails or
    /// times out ends the connection without a close frame: the socket
    /// that could not take a frame cannot take a close frame either.
    async fn send(&mut self, msg: Message) -> bool {
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
                    "websocket client too slow to take a frame; dropping the connection"
                );
                false
            }
        }
    }

    /// Send a close frame and wait briefly for the peer's.
    async fn close(&mut self, why: CloseWhy) {
        let frame = Message::Close(Some(CloseFrame {
            code: why.code(),
            reason: Utf8Bytes::from_static(why.reason()),
        }));
        if !self.send(frame).await {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = self.socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The next steps of the ring (every one already queued, so a connection
/// that fell behind merges them), or never while not attached.
async fn recv_steps(ring: Option<&mut broadcast::Receiver<Arc<Step>>>) -> FromRing {
    let Some(rx) = ring else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(step) => {
            let mut steps = vec![step];
            loop {
                match rx.try_recv() {
                    Ok(s) => steps.push(s),
                    Err(TryRecvError::Lagged(_)) => return FromRing::Lagged,
                    Err(_) => break,
                }
            }
            FromRing::Steps(steps)
        }
        Err(RecvError::Lagged(_)) => FromRing::Lagged,
        Err(RecvError::Closed) => FromRing::Closed,
    }
}

/// Classify a read error by its type: a frame or message over the size
/// limit (or an oversized control frame) is `TooBig` (close 1009);
/// anything else ends the connection.
fn classify(e: axum::Error) -> ReadFault {
    tracing::debug!(error = %e, "websocket read failed");
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(inner) => match *inner {
            tungstenite::Error::Capacity(_)
            | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ControlFrameTooBig) => {
                ReadFault::TooBig
            }
            _ => ReadFault::Broken,
        },
        Err(_) => ReadFault::Broken,
    }
}
