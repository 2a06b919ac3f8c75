//! The feed poller: each `[[warnings.feeds]]` is fetched every
//! `interval_secs` with a conditional GET (`If-None-Match` /
//! `If-Modified-Since` from the last full success). The document is an
//! Atom feed, an RSS 2.0 feed (each entry linking to a CAP bulletin, or
//! embedding one) or a single CAP bulletin. Each entry is fetched once: its
//! id is remembered in the store (`warning_feed_entries`) after the
//! pipeline committed its bulletin (valid or an `invalid_cap` dead letter).
//! An outage (connection error, timeout, 5xx) is retried with a doubling
//! backoff up to `max_backoff_secs`; the validators are kept only when
//! every new entry went through, so nothing is skipped by a later 304.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};
use roxmltree::{Document, Node, ParsingOptions};
use rusqlite::{params, OptionalExtension};
use tokio_util::sync::CancellationToken;

use super::cap::CAP_NS;
use super::{feed_topic, Service};
use crate::config::WarningFeed;

const ATOM_NS: &str = "http://www.w3.org/2005/Atom";
/// Largest feed document read.
const MAX_FEED_BYTES: usize = 4 * 1024 * 1024;
/// First wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The request failed (connection, timeout, body).
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The document is larger than the poller reads.
    #[error("{url} is larger than {max} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        max: usize,
    },
    /// Neither Atom, RSS nor CAP.
    #[error("{url} is not an Atom or RSS feed or a CAP 1.2 alert: {why}")]
    NotAFeed {
        /// The URL.
        url: String,
        /// What it is.
        why: String,
    },
    /// The pipeline did not take the bulletin.
    #[error(transparent)]
    Submit(#[from] super::service::SubmitError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] super::service::ReadError),
}

/// One entry of a feed.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Its stable id (Atom `id`, RSS `guid` or `link`, CAP triple).
    id: String,
    /// Where the bulletin is: fetched from a URL, or embedded.
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Link(String),
    Embedded(Vec<u8>),
}

/// Poll `feed` until `cancel`.
pub async fn run(svc: Arc<Service>, feed: WarningFeed, cancel: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(feed.timeout_secs.max(1)))
        .connect_timeout(Duration::from_secs(feed.timeout_secs.clamp(1, 10)))
        .user_agent(concat!("commune-ioc/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(feed = %feed.name, error = %e, "feed poller cannot start its HTTP client");
            return;
        }
    };
    let interval = Duration::from_secs(feed.interval_secs.max(1));
    let max_backoff = Duration::from_secs(feed.max_backoff_secs.max(1));
    let mut backoff = FIRST_BACKOFF.min(max_backoff);
    loop {
        let wait = tokio::select! {
            _ = cancel.cancelled() => return,
            r = poll_once(&svc, &client, &feed) => match r {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(feed = %feed.name, entries = n, "feed entries fetched");
                    }
                    backoff = FIRST_BACKOFF.min(max_backoff);
                    record(&svc, &feed.name, None).await;
                    interval
                }
                Err(e) => {
                    tracing::warn!(feed = %feed.name, error = %e, retry_in_s = backoff.as_secs_f64(),
                        "feed poll failed; retrying");
                    record(&svc, &feed.name, Some(e.to_string())).await;
                    let w = backoff;
                    backoff = (backoff * 2).min(max_backoff);
                    w
                }
            },
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Note the outcome of a poll in `warning_feeds`.
async fn record(svc: &Arc<Service>, feed: &str, error: Option<String>) {
    let (svc, feed) = (Arc::clone(svc), feed.to_owned());
    let now = Utc::now().timestamp_millis();
    let r = tokio::task::spawn_blocking(move || {
        svc.write(|c| {
            c.execute(
                "INSERT INTO warning_feeds (feed, checked_ms, ok_ms, error) VALUES (?1, ?2, CASE WHEN ?3 IS NULL THEN ?2 END, ?3)
                 ON CONFLICT (feed) DO UPDATE SET checked_ms = ?2,
                   ok_ms = CASE WHEN ?3 IS NULL THEN ?2 ELSE ok_ms END, error = ?3",
                params![feed, now, error],
            )
        })
    })
    .await;
    if let Ok(Err(e)) = r {
        tracing::warn!(error = %e, "cannot record the feed poll");
    }
}

async fn read_capped(resp: reqwest::Response, url: &str) -> Result<Vec<u8>, FeedError> {
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_FEED_BYTES)
    {
        return Err(FeedError::TooLarge {
            url: url.into(),
            max: MAX_FEED_BYTES,
        });
    }
    let mut resp = resp;
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| FeedError::Http {
        url: url.into(),
        source,
    })? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_FEED_BYTES {
            return Err(FeedError::TooLarge {
                url: url.into(),
                max: MAX_FEED_BYTES,
            });
        }
    }
    Ok(out)
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    validators: Option<&(Option<String>, Option<String>)>,
) -> Result<Option<(Vec<u8>, Option<String>, Option<String>)>, FeedError> {
    let mut req = client.get(url);
    if let Some((etag, modified)) = validators {
        if let Some(e) = etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        if let Some(m) = modified {
            req = req.header(IF_MODIFIED_SINCE, m);
        }
    }
    let resp = req.send().await.map_err(|source| FeedError::Http {
        url: url.into(),
        source,
    })?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(FeedError::Status {
            url: url.into(),
            status,
        });
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, modified) = (header(ETAG), header(LAST_MODIFIED));
    Ok(Some((read_capped(resp, url).await?, etag, modified)))
}

/// One poll: the entries newly fetched.
pub async fn poll_once(
    svc: &Arc<Service>,
    client: &reqwest::Client,
    feed: &WarningFeed,
) -> Result<usize, FeedError> {
    let name = feed.name.clone();
    let s = Arc::clone(svc);
    let validators = tokio::task::spawn_blocking(move || {
        s.read(|c| {
            c.query_row(
                "SELECT etag, last_modified FROM warning_feeds WHERE feed = ?1",
                [&name],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                },
            )
            .optional()
        })
    })
    .await
    .map_err(|_| super::service::SubmitError::Closed)??;
    let Some((doc, etag, modified)) = get(client, &feed.url, validators.as_ref()).await? else {
        return Ok(0);
    };
    let entries = entries(&doc, &feed.url)?;
    let mut fetched = 0;
    for entry in entries {
        let (s, name, id) = (Arc::clone(svc), feed.name.clone(), entry.id.clone());
        let seen = tokio::task::spawn_blocking(move || {
            s.read(|c| {
                c.query_row(
                    "SELECT 1 FROM warning_feed_entries WHERE feed = ?1 AND entry = ?2",
                    params![name, id],
                    |_| Ok(()),
                )
                .optional()
            })
        })
        .await
        .map_err(|_| super::service::SubmitError::Closed)??;
        if seen.is_some() {
            continue;
        }
        let bytes = match entry.body {
            Body::Embedded(b) => b,
            Body::Link(url) => match get(client, &url, None).await? {
                Some((b, _, _)) => b,
                None => continue,
            },
        };
        svc.submit(feed_topic(&feed.name), bytes).await?;
        let (s, name, id) = (Arc::clone(svc), feed.name.clone(), entry.id);
        let now = Utc::now().timestamp_millis();
        tokio::task::spawn_blocking(move || {
            s.write(|c| {
                c.execute(
                    "INSERT OR IGNORE INTO warning_feed_entries (feed, entry, fetched_ms) VALUES (?1, ?2, ?3)",
                    params![name, id, now],
                )
            })
        })
        .await
        .map_err(|_| super::service::SubmitError::Closed)??;
        fetched += 1;
    }
    // Every entry went through: the validators may spare the next download.
    let (s, name) = (Arc::clone(svc), feed.name.clone());
    tokio::task::spawn_blocking(move || {
        s.write(|c| {
            c.execute(
                "INSERT INTO warning_feeds (feed, etag, last_modified) VALUES (?1, ?2, ?3)
                 ON CONFLICT (feed) DO UPDATE SET etag = ?2, last_modified = ?3",
                params![name, etag, modified],
            )
        })
    })
    .await
    .map_err(|_| super::service::SubmitError::Closed)??;
    Ok(fetched)
}

/// The entries of a feed document (oldest first when the feed lists the
/// newest first, as feeds do), or the document itself when it is a CAP
/// alert.
fn entries(doc: &[u8], base: &str) -> Result<Vec<Entry>, FeedError> {
    let not = |why: String| FeedError::NotAFeed {
        url: base.into(),
        why,
    };
    let text = std::str::from_utf8(doc).map_err(|_| not("not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parsed = Document::parse_with_options(
        text,
        ParsingOptions {
            allow_dtd: false,
            nodes_limit: 1_000_000,
        },
    )
    .map_err(|e| not(e.to_string()))?;
    let root = parsed.root_element();
    let base_url = Url::parse(base).ok();
    let resolve = |href: &str| -> String {
        match base_url.as_ref().and_then(|b| b.join(href).ok()) {
            Some(u) => u.to_string(),
            None => href.to_owned(),
        }
    };
    let embedded = |n: Node<'_, '_>| -> Option<Vec<u8>> {
        n.descendants()
            .find(|d| d.has_tag_name((CAP_NS, "alert")))
            .map(|a| text[a.range()].as_bytes().to_vec())
    };
    let child_text = |n: Node<'_, '_>, ns: Option<&str>, name: &str| -> Option<String> {
        n.children()
            .find(|c| c.tag_name().name() == name && c.tag_name().namespace() == ns)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let mut out = Vec::new();
    match (root.tag_name().namespace(), root.tag_name().name()) {
        (Some(CAP_NS), "alert") => {
            let id = child_text(root, Some(CAP_NS), "identifier").unwrap_or_default();
            let sender = child_text(root, Some(CAP_NS), "sender").unwrap_or_default();
            let sent = child_text(root, Some(CAP_NS), "sent").unwrap_or_default();
            out.push(Entry {
                id: super::cap::warning_id(&sender, &id, &sent),
                body: Body::Embedded(doc.to_vec()),
            });
        }
        (Some(ATOM_NS), "feed") => {
            for e in root
                .children()
                .filter(|c| c.has_tag_name((ATOM_NS, "entry")))
            {
                let links: Vec<Node<'_, '_>> = e
                    .children()
                    .filter(|c| c.has_tag_name((ATOM_NS, "link")))
                    .filter(|l| {
                        matches!(
                            l.attribute("rel"),
                            None | Some("alternate") | Some("enclosure") | Some("related")
                        )
                    })
                    .collect();
                let cap_link = links
                    .iter()
                    .find(|l| l.attribute("type").is_some_and(|t| t.contains("cap")))
                    .or(links.first())
                    .and_then(|l| l.attribute("href"));
                let body = match embedded(e) {
                    Some(b) => Body::Embedded(b),
                    None => match cap_link {
                        Some(h) => Body::Link(resolve(h)),
                        None => continue,
                    },
                };
                let id = child_text(e, Some(ATOM_NS), "id").unwrap_or_else(|| match &body {
                    Body::Link(l) => l.clone(),
                    Body::Embedded(b) => hex::encode(&blake3::hash(b).as_bytes()[..16]),
                });
                out.push(Entry { id, body });
            }
            out.reverse();
        }
        (None, "rss") => {
            let items = root
                .children()
                .filter(|c| c.has_tag_name("channel"))
                .flat_map(|c| c.children().filter(|i| i.has_tag_name("item")));
            for i in items {
                let link = i
                    .children()
                    .find(|c| c.has_tag_name("enclosure"))
                    .and_then(|c| c.attribute("url"))
                    .map(str::to_owned)
                    .or_else(|| child_text(i, None, "link"));
                let body = match embedded(i) {
                    Some(b) => Body::Embedded(b),
                    None => match &link {
                        Some(h) => Body::Link(resolve(h)),
                        None => continue,
                    },
                };
                let id = child_text(i, None, "guid")
                    .or(link)
                    .unwrap_or_else(|| match &body {
                        Body::Link(l) => l.clone(),
                        Body::Embedded(b) => hex::encode(&blake3::hash(b).as_bytes()[..16]),
                    });
                out.push(Entry { id, body });
            }
            out.reverse();
        }
        (ns, name) => {
            return Err(not(format!(
                "the root is <{name}> in {}",
                ns.unwrap_or("no namespace")
            )))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom_rss_and_single_documents() {
        let atom = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>
<entry><id>urn:e2</id><link rel="alternate" type="application/cap+xml" href="/cap/2.xml"/></entry>
<entry><id>urn:e1</id><link href="https://example.vn/cap/1.xml"/></entry>
<entry><id>urn:e0</id><content type="text/xml"><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>A</identifier></alert></content></entry>
</feed>"#;
        let e = entries(atom.as_bytes(), "http://127.0.0.1:9/feed.xml").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].id, "urn:e0");
        assert!(matches!(&e[0].body, Body::Embedded(b) if b.starts_with(b"<alert")));
        assert_eq!(e[1].body, Body::Link("https://example.vn/cap/1.xml".into()));
        assert_eq!(e[2].body, Body::Link("http://127.0.0.1:9/cap/2.xml".into()));
        let rss = r#"<rss version="2.0"><channel><title>x</title>
<item><guid>g1</guid><link>http://h/1.xml</link></item>
<item><link>http://h/2.xml</link></item></channel></rss>"#;
        let e = entries(rss.as_bytes(), "http://h/rss").unwrap();
        assert_eq!(e[0].id, "http://h/2.xml");
        assert_eq!(e[1].id, "g1");
        let cap = std::fs::read(format!(
            "{}/tests/fixtures/cap/vn-frost.xml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let e = entries(&cap, "http://h/one.xml").unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].id.contains("SM-0001"));
        assert!(entries(b"<html/>", "http://h/").is_err());
    }
}
