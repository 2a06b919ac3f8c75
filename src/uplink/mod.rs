//! The uplink to the province: the journal forwarded, in `(commune, seq)`
//! order, to a NATS JetStream stream (docs/PROVINCE.md).
//!
//! The same durable-outbox pattern as the time-series sink (`crate::sinks`):
//! the journal itself is the outbox. The task reads the entries after a
//! cursor kept in `meta` ([`CURSOR_KEY`]) on a connection of its own,
//! publishes them (subject, headers and body in [`wire`]), awaits the
//! stream's acknowledgements in order, and moves the cursor only past
//! entries the stream acknowledged. Nothing here is on the ingest path: a
//! province outage of hours only grows the distance between the cursor
//! and the journal's head (shown at `/readyz`, in the metrics and on the
//! screen); the commune keeps working alone.
//!
//! A crash between a publish and the cursor update re-sends at most one
//! batch: each message carries `Nats-Msg-Id = {commune}:{seq}`, so the
//! stream drops the re-send within its duplicate window, and beyond it the
//! province drops it by `(commune, seq)`.
//!
//! Memory is bounded by one batch (`uplink.batch_max` entries and
//! `uplink.batch_max_bytes`).

pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::Uplink;
use crate::ingest::mqtt::Backoff;
use crate::journal::seq::Entry;
use crate::journal::{JournalError, Store};
use crate::state::Shared;

/// `meta` key of the last journal seq the stream acknowledged.
pub const CURSOR_KEY: &str = "uplink_cursor";

/// Why the uplink could not go on (each is retried).
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// Options that cannot be turned into a connection (a file that
    /// cannot be read).
    #[error("uplink configuration: {0}")]
    Config(String),
    /// No NATS server answered.
    #[error("cannot connect to the NATS servers: {0}")]
    Connect(String),
    /// The stream is missing (and may not be created) or could not be
    /// read or created.
    #[error("JetStream stream `{stream}`: {reason}")]
    Stream {
        /// Its name.
        stream: String,
        /// What went wrong.
        reason: String,
    },
    /// A publish was not acknowledged.
    #[error("publish of seq {seq} not acknowledged: {reason}")]
    Publish {
        /// The entry.
        seq: i64,
        /// What went wrong.
        reason: String,
    },
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Whether the uplink is configured (`uplink.url` set).
pub fn enabled(shared: &Shared) -> bool {
    shared.config.uplink.url.is_some()
}

/// The connect options of `[uplink]` (also the province's `[stream]`):
/// credentials, TLS, timeouts, reconnecting forever, and a first
/// connection made in the background (`connect` returns at once; the
/// client keeps trying).
pub async fn connect_options(
    cfg: &Uplink,
    name: &str,
) -> Result<async_nats::ConnectOptions, UplinkError> {
    Ok(base_options(cfg, name).await?.retry_on_initial_connect())
}

/// [`connect_options`] without the background first connection:
/// `connect` tries the servers once and returns why it could not get in
/// (the uplink retries it itself, logging the reason); after it the client
/// reconnects by itself, and its connection events are logged (once per
/// kind).
pub async fn uplink_options(
    cfg: &Uplink,
    name: &str,
) -> Result<async_nats::ConnectOptions, UplinkError> {
    let last = Arc::new(Mutex::new(String::new()));
    Ok(base_options(cfg, name).await?.event_callback(move |event| {
        let last = Arc::clone(&last);
        async move {
            use async_nats::Event;
            match event {
                Event::Connected => last.lock().clear(),
                Event::ServerError(_) | Event::ClientError(_) | Event::Disconnected => {
                    let what = event.to_string();
                    let mut l = last.lock();
                    if *l != what {
                        tracing::warn!(event = %what, "uplink: NATS connection");
                        *l = what;
                    }
                }
                _ => {}
            }
        }
    }))
}

async fn base_options(cfg: &Uplink, name: &str) -> Result<async_nats::ConnectOptions, UplinkError> {
    let mut o = async_nats::ConnectOptions::new();
    if let Some(f) = &cfg.creds_file {
        o = o
            .credentials_file(f)
            .await
            .map_err(|e| UplinkError::Config(format!("{}: {e}", f.display())))?;
    }
    if let Some(f) = &cfg.nkey_seed_file {
        let seed = std::fs::read_to_string(f)
            .map_err(|e| UplinkError::Config(format!("{}: {e}", f.display())))?;
        let seed = seed.trim();
        // A user seed (`nk -gen user`, `nsc`): "SU" and 56 more base32
        // characters. Anything else could not sign the server's nonce.
        if !(seed.starts_with("SU") && seed.len() == 58) {
            return Err(UplinkError::Config(format!(
                "{}: not an NKey user seed (a line of 58 characters starting with SU)",
                f.display()
            )));
        }
        o = o.nkey(seed.to_owned());
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(u.clone(), p.expose().to_owned());
    }
    if let Some(t) = &cfg.token {
        o = o.token(t.expose().to_owned());
    }
    let url = cfg.url.as_deref().unwrap_or_default();
    if cfg.tls
        || crate::config::nats_servers(url)
            .iter()
            .any(|u| u.starts_with("tls://"))
    {
        o = o.require_tls(true);
    }
    if let Some(ca) = &cfg.ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    if let (Some(c), Some(k)) = (&cfg.cert_file, &cfg.key_file) {
        o = o.add_client_certificate(c.clone(), k.clone());
    }
    let timeout = Duration::from_millis(cfg.ack_timeout_ms.max(100));
    Ok(o.name(name)
        .connection_timeout(timeout.min(Duration::from_secs(10)))
        .request_timeout(Some(timeout))
        .max_reconnects(None::<usize>))
}

/// A failed connection in words an operator can act on: what kind of
/// failure, the underlying reason, and which settings to check.
pub fn describe_connect_error(e: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind as K;
    let text = e.to_string();
    let hint = match e.kind() {
        // rustls' words for a server that refused our certificate (or
        // wanted one), and for a server certificate we do not trust.
        _ if text.contains("received fatal alert") && text.contains("Certificate") => {
            "the server refused the TLS connection for want of a valid client certificate: set uplink.cert_file and key_file to a certificate signed by a CA the server trusts"
        }
        _ if text.contains("invalid peer certificate") => {
            "the server's TLS certificate is not trusted: set uplink.ca_file to the CA that signed it, and use the name on the certificate in uplink.url"
        }
        K::AuthorizationViolation => {
            "the server refused the login: check uplink.user/password, token, nkey_seed_file or creds_file against the server's accounts"
        }
        K::Authentication => {
            "the NKey seed or the .creds file could not sign the server's challenge: check uplink.nkey_seed_file / creds_file"
        }
        K::Tls => {
            "TLS failed: check the server's certificate against uplink.ca_file, and uplink.cert_file/key_file when the server asks for a client certificate"
        }
        K::Io => {
            "the connection broke: no server listening, or the server closed it (a server that wants TLS or a client certificate: see uplink.tls, ca_file, cert_file/key_file)"
        }
        K::TimedOut => "no answer in time from the servers in uplink.url",
        K::Dns => "a host name in uplink.url could not be resolved",
        K::ServerParse => "uplink.url could not be read",
        K::MaxReconnects => "gave up reconnecting",
    };
    format!("{text} ({hint})")
}

/// The stream the uplink creates when it is missing.
pub fn stream_config(cfg: &Uplink) -> stream::Config {
    stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.*.journal.>", cfg.subject_prefix)],
        storage: stream::StorageType::File,
        num_replicas: cfg.stream_replicas.max(1),
        duplicate_window: Duration::from_secs(cfg.duplicate_window_s.max(1)),
        max_age: max_age(cfg),
        ..Default::default()
    }
}

/// The stream's `max_age` for `cfg` (zero: no limit).
fn max_age(cfg: &Uplink) -> Duration {
    Duration::from_secs(cfg.max_age_days.saturating_mul(86_400))
}

/// Make sure the stream exists: create it when it is missing and
/// `create_stream` allows.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &Uplink,
) -> Result<(), UplinkError> {
    let err = |reason: String| UplinkError::Stream {
        stream: cfg.stream.clone(),
        reason,
    };
    match js.get_stream(&cfg.stream).await {
        Ok(mut s) => {
            // The owner keeps the stream's age limit as configured.
            let mut config = s
                .info()
                .await
                .map_err(|e| err(e.to_string()))?
                .config
                .clone();
            let want = max_age(cfg);
            if cfg.create_stream && config.max_age != want {
                let was = config.max_age;
                config.max_age = want;
                js.update_stream(config)
                    .await
                    .map_err(|e| err(format!("cannot set its max_age: {e}")))?;
                tracing::info!(stream = %cfg.stream, was_days = was.as_secs() / 86_400, days = cfg.max_age_days,
                    "JetStream stream: max_age set as configured");
            }
            Ok(())
        }
        Err(e) => {
            let missing = matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND);
            if !missing {
                return Err(err(e.to_string()));
            }
            if !cfg.create_stream {
                return Err(err(
                    "missing, and uplink.create_stream = false: the province must create it".into(),
                ));
            }
            js.create_stream(stream_config(cfg))
                .await
                .map_err(|e| err(format!("cannot create it: {e}")))?;
            tracing::info!(stream = %cfg.stream, "uplink: JetStream stream created");
            Ok(())
        }
    }
}

/// The uplink's own connection to the journal, and its cursor.
struct Outbox {
    store: Store,
    commune: String,
    cursor: i64,
}

impl Outbox {
    fn open(shared: &Shared) -> Result<Outbox, JournalError> {
        let c = &shared.config;
        let store = Store::open_with(&c.journal_path(), c.store.sync, 0)?;
        let cursor = store
            .meta(CURSOR_KEY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Outbox {
            store,
            commune: c.commune.id.clone(),
            cursor,
        })
    }

    /// (head, age of the oldest unacknowledged entry in ms).
    fn lag(&self, now_ms: i64) -> Result<(i64, i64), JournalError> {
        let head = self.store.journal_head(&self.commune)?;
        let age = if head > self.cursor {
            self.store
                .journaled_at(&self.commune, self.cursor + 1)?
                .map_or(0, |at| (now_ms - at).max(0))
        } else {
            0
        };
        Ok((head, age))
    }
}

async fn blocking<T: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    f: impl FnOnce(&mut Outbox) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, UplinkError> {
    let outbox = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(&mut outbox.lock()))
        .await
        .map_err(|e| UplinkError::Config(format!("uplink journal task failed: {e}")))?
        .map_err(UplinkError::from)
}

async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Refresh the lag metrics from the journal.
async fn refresh_lag(shared: &Shared, outbox: &Arc<Mutex<Outbox>>) {
    let now = chrono::Utc::now().timestamp_millis();
    match blocking(outbox, move |o| Ok((o.cursor, o.lag(now)?))).await {
        Ok((cursor, (head, age_ms))) => {
            let m = &shared.metrics.uplink;
            m.cursor.set(cursor);
            m.head.set(head);
            m.lag_entries.set((head - cursor).max(0));
            m.lag_seconds.set(age_ms / 1000);
        }
        Err(e) => tracing::warn!(error = %e, "uplink: cannot read the journal's head"),
    }
}

/// Forward the journal until `cancel`. Connects (retrying with backoff),
/// checks or creates the stream, then forwards batch after batch; every
/// failure is logged once per kind, counted, and retried from the cursor.
pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let cfg = shared.config.uplink.clone();
    let m = &shared.metrics.uplink;
    let outbox = loop {
        match Outbox::open(&shared) {
            Ok(o) => break Arc::new(Mutex::new(o)),
            Err(e) => {
                tracing::error!(error = %e, "uplink: cannot open the journal; retrying in 5 s");
                if !pause(&cancel, Duration::from_secs(5)).await {
                    return;
                }
            }
        }
    };
    refresh_lag(&shared, &outbox).await;
    let url = cfg.url.clone().unwrap_or_default();
    let name = format!("commune-ioc-{}", shared.config.commune.id);
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms.max(1)),
        Duration::from_millis(cfg.backoff_max_ms.max(1)),
    );
    let mut last_error: Option<String> = None;
    let note = |e: &UplinkError, last_error: &mut Option<String>| {
        m.errors.inc();
        m.up.set(0);
        let reason = e.to_string();
        if last_error.as_deref() != Some(reason.as_str()) {
            tracing::warn!(error = %e, "uplink to the province interrupted; entries wait in the journal and are re-sent from the cursor");
            *last_error = Some(reason);
        }
    };
    // The first connection is made here, retried with backoff, so that
    // its failure (refused login, TLS) is logged with its reason; after it
    // the client reconnects by itself, forever.
    let client = loop {
        let opts = match uplink_options(&cfg, &name).await {
            Ok(o) => o,
            Err(e) => {
                note(&e, &mut last_error);
                if !pause(&cancel, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        let connect = tokio::select! {
            r = opts.connect(crate::config::nats_servers(&url)) => r,
            _ = cancel.cancelled() => return,
        };
        match connect {
            Ok(c) => break c,
            Err(e) => {
                note(
                    &UplinkError::Connect(describe_connect_error(&e)),
                    &mut last_error,
                );
                refresh_lag(&shared, &outbox).await;
                if !pause(&cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    };
    let timeout = Duration::from_millis(cfg.ack_timeout_ms.max(100));
    let js = jetstream::ContextBuilder::new()
        .timeout(timeout)
        .ack_timeout(timeout)
        .build(client.clone());
    tracing::info!(servers = %url, stream = %cfg.stream, "uplink to the province started");
    let poll = Duration::from_millis(cfg.poll_ms.max(1));
    let mut stream_ok = false;
    while !cancel.is_cancelled() {
        if !stream_ok {
            match tokio::select! {
                r = ensure_stream(&js, &cfg) => r,
                _ = cancel.cancelled() => break,
            } {
                Ok(()) => stream_ok = true,
                Err(e) => {
                    note(&e, &mut last_error);
                    refresh_lag(&shared, &outbox).await;
                    if !pause(&cancel, backoff.next_delay()).await {
                        break;
                    }
                    continue;
                }
            }
        }
        // A batch cut short by shutdown leaves the cursor where the
        // acknowledgements got to; the rest is re-sent on the next start.
        let result = tokio::select! {
            r = forward_batch(&shared, &cfg, &client, &js, &outbox) => r,
            _ = cancel.cancelled() => break,
        };
        match result {
            Ok(0) => {
                m.up.set(1);
                refresh_lag(&shared, &outbox).await;
                if !pause(&cancel, poll).await {
                    break;
                }
            }
            Ok(_) => {
                m.up.set(1);
                backoff.reset();
                if last_error.take().is_some() {
                    tracing::info!("uplink to the province acknowledged again; catching up");
                }
                refresh_lag(&shared, &outbox).await;
            }
            Err(e) => {
                // A missing stream (deleted, or a new cluster) is checked
                // again; anything else is retried on the same client, which
                // reconnects by itself.
                if matches!(&e, UplinkError::Publish { reason, .. } if reason.contains("no stream"))
                {
                    stream_ok = false;
                }
                note(&e, &mut last_error);
                refresh_lag(&shared, &outbox).await;
                if !pause(&cancel, backoff.next_delay()).await {
                    break;
                }
            }
        }
    }
    // Whatever was acknowledged is already behind the cursor; unsent
    // entries go on the next start.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!("uplink to the province stopped");
}

/// Publish the next batch after the cursor and await its acknowledgements
/// in order; the cursor moves past the acknowledged prefix (persisted
/// before returning). The number acknowledged.
async fn forward_batch(
    shared: &Shared,
    cfg: &Uplink,
    client: &async_nats::Client,
    js: &jetstream::Context,
    outbox: &Arc<Mutex<Outbox>>,
) -> Result<usize, UplinkError> {
    let (limit, max_bytes) = (cfg.batch_max.max(1), cfg.batch_max_bytes.max(1024));
    let (commune, entries): (String, Vec<Entry>) = blocking(outbox, move |o| {
        Ok((
            o.commune.clone(),
            o.store
                .entries_after(&o.commune, o.cursor, limit, max_bytes)?,
        ))
    })
    .await?;
    if entries.is_empty() {
        return Ok(0);
    }
    // Leave room for the headers under the server's payload limit (1 MiB,
    // the server's default, until the server said).
    let limit = match client.server_info().max_payload {
        0 => 1024 * 1024,
        n => n,
    };
    let max_payload = limit.saturating_sub(1024).max(1024);
    let mut pending = Vec::with_capacity(entries.len());
    let mut failure = None;
    for entry in &entries {
        let subject = wire::subject(&cfg.subject_prefix, &commune, &entry.kind);
        let msg = jetstream::message::PublishMessage::build()
            .payload(wire::body(&commune, entry, max_payload).into())
            .headers(wire::headers(&commune, entry));
        match js.send_publish(subject, msg).await {
            Ok(ack) => pending.push((entry.seq, ack)),
            Err(e) => {
                failure = Some(UplinkError::Publish {
                    seq: entry.seq,
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    let m = &shared.metrics.uplink;
    let mut acked_to = None;
    let mut acked = 0usize;
    for (seq, ack) in pending {
        match ack.await {
            Ok(a) if a.stream != cfg.stream => {
                // Another stream took the subject: not the province's copy.
                failure = Some(UplinkError::Stream {
                    stream: cfg.stream.clone(),
                    reason: format!(
                        "seq {seq} was stored by stream `{}`, whose subjects overlap; fix the streams at the province",
                        a.stream
                    ),
                });
                break;
            }
            Ok(a) => {
                if a.duplicate {
                    m.duplicates.inc();
                }
                m.forwarded.inc();
                acked_to = Some(seq);
                acked += 1;
            }
            Err(e) => {
                failure = Some(UplinkError::Publish {
                    seq,
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    if let Some(to) = acked_to {
        blocking(outbox, move |o| {
            o.store.set_meta(CURSOR_KEY, &to.to_string())?;
            o.cursor = to;
            Ok(())
        })
        .await?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(acked),
    }
}
