//! HTTP to the backend: a small client that carries the admin's token, and
//! `/metrics` scrapes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// One scrape of `/metrics`: every sample by its full series name.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse::<f64>().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    /// Sum over every label set of a metric.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// Each label set of a metric with its value.
    pub fn by_label(&self, name: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter_map(|(k, v)| {
                let (n, labels) = k.split_once('{')?;
                (n == name).then(|| (labels.trim_end_matches('}').to_string(), *v))
            })
            .collect()
    }

    /// This scrape minus an earlier one, per series.
    pub fn minus(&self, base: &Scrape) -> Scrape {
        let samples = self
            .samples
            .iter()
            .map(|(k, v)| (k.clone(), v - base.samples.get(k).copied().unwrap_or(0.0)))
            .collect();
        Scrape { samples }
    }

    pub fn received(&self) -> u64 {
        self.sum("ioc_messages_received_total") as u64
    }

    pub fn committed(&self) -> u64 {
        self.sum("ioc_events_committed_total") as u64
    }

    pub fn dead(&self) -> u64 {
        self.sum("ioc_dead_letters_total") as u64
    }

    pub fn duplicates(&self) -> u64 {
        self.sum("ioc_duplicates_total") as u64
    }

    /// New rows: events plus dead letters (duplicates excluded).
    pub fn new_rows(&self) -> u64 {
        self.committed() + self.dead()
    }

    /// Messages whose commit finished (received is counted before commit).
    pub fn accounted(&self) -> u64 {
        self.committed() + self.dead() + self.duplicates()
    }

    pub fn batches(&self) -> u64 {
        self.sum("ioc_journal_batches_total") as u64
    }

    /// Upper bound (seconds) of the bucket holding quantile `q` of the batch
    /// durations (cumulative `le` buckets).
    pub fn batch_seconds_quantile(&self, q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .by_label("ioc_journal_batch_seconds_bucket")
            .into_iter()
            .filter_map(|(labels, count)| {
                let le = labels.strip_prefix("le=\"")?.trim_end_matches('"');
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
    }
}

pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
    /// The admin's session token (see `start_backend`), sent as a bearer.
    pub token: Option<String>,
}

/// Password of the first admin of the benchmarks' fresh stores.
pub const BENCH_ADMIN_PASSWORD: &str = "bench-admin-password-2026";

impl Http {
    pub fn new(addr: SocketAddr) -> Result<Http> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Http {
            client,
            base: format!("http://{addr}"),
            token: None,
        })
    }

    /// `POST /api/auth/login` as `admin` with the benchmarks' password;
    /// later requests carry the token.
    pub async fn login(&mut self) -> Result<()> {
        self.login_as("admin", BENCH_ADMIN_PASSWORD).await
    }

    /// `POST /api/auth/login`; later requests carry the token.
    pub async fn login_as(&mut self, username: &str, password: &str) -> Result<()> {
        let url = format!("{}/api/auth/login", self.base);
        let resp = self
            .client
            .post(&url)
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST /api/auth/login answered {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("the login answer is not JSON: {body}"))?;
        self.token = Some(
            v["token"]
                .as_str()
                .ok_or_else(|| anyhow!("no token in the login answer: {body}"))?
                .to_string(),
        );
        Ok(())
    }

    /// `POST path` with a JSON body and the token; the answer's JSON.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.post(&url).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: not JSON: {text}"))
    }

    pub async fn get(&self, path: &str) -> Result<(reqwest::StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading the body of GET {url}"))?;
        Ok((status, body))
    }

    pub async fn scrape(&self) -> Result<Scrape> {
        let (status, body) = self.get("/metrics").await?;
        if !status.is_success() {
            bail!("GET /metrics answered {status}: {body}");
        }
        Ok(Scrape::parse(&body))
    }
}
