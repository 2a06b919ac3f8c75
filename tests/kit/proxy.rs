//! A loopback TCP proxy that a test can cut and restore: a commune's link
//! to the province (its uplink URL names the proxy, not the server). A cut
//! closes every open connection and refuses new ones (accepted, then closed
//! at once) until `restore`. Plain threads, so it runs under any runtime;
//! stopped when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both sides of every open connection (to shut them down on a cut).
    open: Mutex<Vec<TcpStream>>,
    /// Connections accepted and forwarded since the start.
    forwarded: AtomicU64,
    /// Connections refused while cut.
    refused: AtomicU64,
}

/// A proxy from `127.0.0.1:port` to `upstream`.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    /// Where it forwards to.
    pub upstream: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free loopback port and forward to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let st = state.clone();
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept_loop(listener, upstream, st))
            .expect("spawn the proxy thread");
        Proxy {
            port,
            upstream,
            state,
            accept: Some(accept),
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Cut the link: close every open connection, refuse new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        close_all(&self.state);
    }

    /// Let connections through again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }

    /// Connections forwarded since the start.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        close_all(&self.state);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn close_all(state: &State) {
    let mut open = state.open.lock().unwrap_or_else(|e| e.into_inner());
    for s in open.drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if state.cut.load(Ordering::SeqCst) {
                    state.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))
                else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                {
                    let mut open = state.open.lock().unwrap_or_else(|e| e.into_inner());
                    // Connections closed since are shut down again: harmless.
                    open.retain(|s| s.peer_addr().is_ok());
                    open.push(c3);
                    open.push(s3);
                }
                state.forwarded.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || pump(client, s2));
                std::thread::spawn(move || pump(server, c2));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Copy `from` to `to` until either side closes, then close both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
