//! A local HTTP receiver on a free loopback port, standing in for the
//! endpoints commune-ioc sends to (webhooks, the province's report
//! endpoint): it records every request and answers with the statuses a
//! test scripts (default 200 with an empty JSON object). Over plain HTTP,
//! or over HTTPS with a private CA and, optionally, a required client
//! certificate (`start_tls_on`, `kit::pki`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query, e.g. `/hook?x=1`.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub answered: u16,
    /// When it arrived (wall clock, for latency figures).
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Received {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {}: body is not JSON ({e})", self.method, self.uri))
    }

    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    /// Scripted answers, used in order; then `default`.
    answers: Mutex<VecDeque<(StatusCode, String)>>,
    default: Mutex<Option<(StatusCode, String)>>,
    arrived: Notify,
    handshakes: Mutex<Vec<Handshake>>,
}

/// One TLS handshake as the HTTPS receiver saw it.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The client certificate it presented (DER), if any.
    pub client_cert: Option<Vec<u8>>,
    /// Why the handshake failed, if it did.
    pub error: Option<String>,
}

/// A TCP listener that completes a TLS handshake before handing the
/// connection to axum; failed handshakes are recorded and skipped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    inner: Arc<Inner>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), self.acceptor.accept(tcp)).await;
            let result = match handshake {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("handshake timed out".to_owned()),
            };
            match result {
                Ok(tls) => {
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    self.inner.handshakes.lock().unwrap().push(Handshake {
                        client_cert: cert,
                        error: None,
                    });
                    return (tls, addr);
                }
                Err(e) => self.inner.handshakes.lock().unwrap().push(Handshake {
                    client_cert: None,
                    error: Some(e),
                }),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The receiver; stops when dropped.
pub struct Receiver {
    inner: Arc<Inner>,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listen on `127.0.0.1:0`.
    pub async fn start() -> Receiver {
        Receiver::start_on(0).await
    }

    /// Listen on `127.0.0.1:port` (a port chosen earlier with
    /// `free_port`, so a sender can be pointed at a receiver that is not
    /// up yet).
    pub async fn start_on(port: u16) -> Receiver {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver on a loopback port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("receiver address")
        );
        let app = router(&inner);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, url, task }
    }

    /// Listen over HTTPS on `127.0.0.1:port` (0: any free port) with a
    /// rustls server config (`kit::pki::Pki::server` requires a client
    /// certificate); the URL names `localhost`, the certificate's name.
    pub async fn start_tls_on(port: u16, tls: Arc<rustls::ServerConfig>) -> Receiver {
        let inner = Arc::new(Inner::default());
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver on a loopback port");
        let port = tcp.local_addr().expect("receiver address").port();
        let url = format!("https://localhost:{port}");
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            inner: Arc::clone(&inner),
        };
        let app = router(&inner);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, url, task }
    }

    /// Every TLS handshake so far (HTTPS receivers).
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.inner.handshakes.lock().unwrap().clone()
    }

    /// Answer the next requests with these statuses and bodies, in order.
    pub fn answer(&self, status: u16, body: &str) {
        self.inner.answers.lock().unwrap().push_back((
            StatusCode::from_u16(status).expect("a valid status"),
            body.to_owned(),
        ));
    }

    /// Answer every request not scripted with `answer` like this.
    pub fn answer_always(&self, status: u16, body: &str) {
        *self.inner.default.lock().unwrap() = Some((
            StatusCode::from_u16(status).expect("a valid status"),
            body.to_owned(),
        ));
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Wait until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "the receiver got {} of {n} requests within {timeout:?}",
                    self.received().len()
                );
            }
        }
    }
}

fn router(inner: &Arc<Inner>) -> axum::Router {
    let state = Arc::clone(inner);
    axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&state);
            async move { record(&state, method, uri, headers, body) }
        },
    )
}

fn record(inner: &Inner, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (status, answer) = inner
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| inner.default.lock().unwrap().clone())
        .unwrap_or((StatusCode::OK, "{}".into()));
    inner.received.lock().unwrap().push(Received {
        at: chrono::Utc::now(),
        method,
        uri: uri.to_string(),
        headers,
        body,
        answered: status.as_u16(),
    });
    inner.arrived.notify_waiters();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response()
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
