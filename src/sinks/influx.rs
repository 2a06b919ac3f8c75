//! The [`TsdbSink`] over the `influxdb2` crate: `POST {url}/api/v2/write`
//! with gzip and timeouts, which InfluxDB 2.x, InfluxDB 3 and
//! VictoriaMetrics all accept.
//!
//! The crate's `write_line_protocol` sends the body uncompressed (its gzip
//! path exists only for `write`, which takes a stream of
//! `WriteDataPoint`s), and it sets no timeout (reqwest 0.11 has none by
//! default). So the body, already encoded by [`super::line`], goes through
//! `write_with_precision` as one pre-encoded chunk, and the client is built
//! from a reqwest 0.11 `ClientBuilder` with a request and a connect timeout.
//! The crate's Flux query path is not used (its 0.5.2 release panics on an
//! empty `_value`, influxdb2 #75).

use std::time::Duration;

use influxdb2::api::write::TimestampPrecision;
use influxdb2::models::WriteDataPoint;

use super::{check_url, SinkError, TsdbSink};
use crate::config::{Influx, Precision};

/// Writes line protocol to `/api/v2/write`.
#[derive(Debug, Clone)]
pub struct InfluxSink {
    client: influxdb2::Client,
    bucket: String,
    precision: TimestampPrecision,
    target: String,
}

/// A pre-encoded body handed to the crate as one "data point".
struct Encoded(String);

impl WriteDataPoint for Encoded {
    fn write_data_point_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(self.0.as_bytes())
    }
}

impl InfluxSink {
    /// A sink for the `[influx]` config; an error when `url` is missing or
    /// not an http(s) URL without a path (the crate would panic on it).
    pub fn new(cfg: &Influx) -> Result<InfluxSink, SinkError> {
        let url = cfg
            .url
            .as_deref()
            .ok_or_else(|| SinkError::Config("influx.url is not set".into()))?;
        check_url(url).map_err(SinkError::Config)?;
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let http = reqwest011::ClientBuilder::new()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(50));
        let client = influxdb2::ClientBuilder::with_builder(
            http,
            url,
            cfg.org.clone(),
            cfg.token.clone().unwrap_or_default(),
        )
        .gzip(true)
        .build()
        .map_err(|e| SinkError::Config(e.to_string()))?;
        Ok(InfluxSink {
            client,
            bucket: cfg.bucket.clone(),
            precision: match cfg.precision {
                Precision::Ms => TimestampPrecision::Milliseconds,
                Precision::Us => TimestampPrecision::Microseconds,
                Precision::Ns => TimestampPrecision::Nanoseconds,
            },
            target: format!("{url} bucket {}", cfg.bucket),
        })
    }
}

fn map_error(e: influxdb2::RequestError) -> Result<(), SinkError> {
    Err(match e {
        influxdb2::RequestError::Http { status, text } => {
            let body: String = text.chars().take(300).collect();
            match status.as_u16() {
                // The crate wants exactly 204; any other success is one too.
                s if (200..300).contains(&s) => return Ok(()),
                413 => SinkError::TooLarge,
                s @ (400 | 422) => SinkError::Rejected { status: s, body },
                s => SinkError::Refused { status: s, body },
            }
        }
        influxdb2::RequestError::ReqwestProcessing { source } => {
            SinkError::Transport(if source.is_timeout() {
                format!("timed out: {source}")
            } else {
                source.to_string()
            })
        }
        other => SinkError::Transport(other.to_string()),
    })
}

impl TsdbSink for InfluxSink {
    async fn write(&self, body: String) -> Result<(), SinkError> {
        let body = futures_util::stream::iter([Encoded(body)]);
        match self
            .client
            .write_with_precision(&self.bucket, body, self.precision)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => map_error(e),
        }
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}
