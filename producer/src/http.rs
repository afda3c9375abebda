//! The HTTP producer behind `sluice publish`: streams NDJSON to `POST /v1/logs` in batches,
//! retries on 429/503 (honouring `Retry-After`) and on connection errors with backoff, and
//! summarizes the rejections by reason code.

use std::{
    collections::BTreeMap,
    io::{BufRead, Write},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Settings of a publisher.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:8400`.
    pub url: String,
    /// Most records per request.
    pub batch_records: usize,
    /// Most bytes per request (before compression).
    pub batch_bytes: usize,
    /// Compress requests with gzip.
    pub gzip: bool,
    /// Requests in flight at once. The server commits concurrent requests to its log with one
    /// fsync and transforms them on all its cores, so a few in flight keep it busy.
    pub concurrency: usize,
    /// Attempts per batch while the server answers 429/503 (each waits its `Retry-After`).
    pub max_attempts: u32,
    /// Attempts per batch while the server cannot be reached.
    pub connect_attempts: u32,
    /// A bearer token, when the server requires one.
    pub token: Option<String>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8400".into(),
            batch_records: 1000,
            batch_bytes: 4 << 20,
            gzip: false,
            concurrency: 4,
            max_attempts: 60,
            connect_attempts: 5,
            token: None,
        }
    }
}

/// One rejected record, by its line number in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// 1-based line number in the input.
    pub line: u64,
    /// Reason code.
    pub code: String,
    /// Message.
    pub message: String,
}

/// What a publish did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records sent.
    pub sent: u64,
    /// Records accepted.
    pub accepted: u64,
    /// Rejections by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// The first rejected lines (at most 20).
    pub examples: Vec<RejectedLine>,
    /// Requests retried.
    pub retries: u64,
    /// Input bytes read.
    pub bytes: u64,
}

impl Summary {
    /// Total rejected.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Adds the counts of `other` (examples up to 20 in all).
    pub fn merge(&mut self, other: Summary) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.retries += other.retries;
        self.bytes += other.bytes;
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        let room = 20usize.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    accepted: u64,
    /// The first rejected records.
    errors: Vec<AnswerError>,
    /// Every rejected record by reason code (past the ones listed).
    #[serde(default)]
    error_counts: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
struct AnswerError {
    index: usize,
    code: String,
    message: String,
}

/// A batch read from the input: NDJSON body and the line number of each record.
pub(crate) struct Batch {
    pub(crate) body: Vec<u8>,
    pub(crate) lines: Vec<u64>,
    pub(crate) bytes_read: u64,
}

/// Posts NDJSON to a sluice server.
#[derive(Debug, Clone)]
pub struct Publisher {
    http: reqwest::Client,
    opts: PublishOptions,
}

impl Publisher {
    /// A publisher with these options.
    pub fn new(opts: PublishOptions) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().map_err(Error::HttpClient)?;
        Ok(Self { http, opts })
    }

    /// Publishes every line of `input`; `progress` is called after each batch with the summary so far.
    /// Up to [`PublishOptions::concurrency`] batches are in flight; they are summarized in input
    /// order.
    pub async fn publish(
        &self,
        input: impl BufRead + Send + 'static,
        mut progress: impl FnMut(&Summary),
    ) -> Result<Summary> {
        let concurrency = self.opts.concurrency.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Batch>>(2 * concurrency);
        let (max_records, max_bytes) = (self.opts.batch_records.max(1), self.opts.batch_bytes.max(1));
        let reader = tokio::task::spawn_blocking(move || read_batches(input, max_records, max_bytes, &tx));
        let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        let sent = batches
            .map(|batch| async move {
                let batch = batch.map_err(Error::input("the records to publish"))?;
                let bytes = batch.bytes_read;
                let mut s = if batch.lines.is_empty() { Summary::default() } else { self.send(batch).await? };
                s.bytes = bytes;
                Ok::<_, Error>(s)
            })
            .buffered(concurrency);
        let mut sent = std::pin::pin!(sent);
        let mut summary = Summary::default();
        while let Some(s) = sent.next().await {
            summary.merge(s?);
            progress(&summary);
        }
        reader.await.map_err(Error::task("reading the input"))?;
        Ok(summary)
    }

    /// Sends one batch, retrying while the server is overloaded or unreachable.
    async fn send(&self, batch: Batch) -> Result<Summary> {
        let url = format!("{}/v1/logs", self.opts.url.trim_end_matches('/'));
        let Batch { body: raw, lines, .. } = batch;
        let body = Bytes::from(if self.opts.gzip {
            // Compressed on the blocking pool, so batches in flight compress on every core.
            tokio::task::spawn_blocking(move || {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
                e.write_all(&raw)?;
                e.finish()
            })
            .await
            .map_err(Error::task("compressing a batch"))?
            .map_err(Error::input("a batch to compress"))?
        } else {
            raw
        });
        let mut summary = Summary::default();
        let mut attempt = 0u32;
        let mut backoff = Duration::from_millis(200);
        loop {
            attempt += 1;
            let mut req = self.http.post(&url).header("content-type", "application/x-ndjson").body(body.clone());
            if self.opts.gzip {
                req = req.header("content-encoding", "gzip");
            }
            if let Some(t) = &self.opts.token {
                req = req.bearer_auth(t);
            }
            let wait = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    let text =
                        resp.bytes().await.map_err(|e| Error::Answer { url: url.clone(), reason: e.to_string() })?;
                    let answer: Answer = serde_json::from_slice(&text)
                        .map_err(|e| Error::Answer { url: url.clone(), reason: e.to_string() })?;
                    summary.sent += lines.len() as u64;
                    summary.accepted += answer.accepted;
                    if answer.error_counts.is_empty() {
                        for e in &answer.errors {
                            *summary.rejected.entry(e.code.clone()).or_default() += 1;
                        }
                    }
                    for (code, n) in answer.error_counts {
                        *summary.rejected.entry(code).or_default() += n;
                    }
                    for e in answer.errors {
                        if summary.examples.len() < 20 {
                            let line = lines.get(e.index).copied().unwrap_or_default();
                            summary.examples.push(RejectedLine { line, code: e.code, message: e.message });
                        }
                    }
                    return Ok(summary);
                }
                Ok(resp) if matches!(resp.status().as_u16(), 429 | 503) => {
                    let after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    after.unwrap_or(backoff)
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    let hint = if status == 413 { " (lower --batch-bytes or --batch-records)" } else { "" };
                    return Err(Error::Refused { url, status, hint, body });
                }
                Err(e) => {
                    if attempt >= self.opts.connect_attempts {
                        return Err(Error::Unreachable { url, attempts: attempt, source: e });
                    }
                    backoff
                }
            };
            if attempt >= self.opts.max_attempts {
                return Err(Error::Exhausted { what: url, attempts: attempt, detail: String::new() });
            }
            summary.retries += 1;
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

pub(crate) fn read_batches(
    mut input: impl BufRead,
    max_records: usize,
    max_bytes: usize,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Batch>>,
) {
    let mut line_no = 0u64;
    let mut batch = Batch { body: Vec::new(), lines: Vec::new(), bytes_read: 0 };
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(n) => {
                line_no += 1;
                batch.bytes_read += n as u64;
                let content = line.strip_suffix(b"\n").unwrap_or(&line);
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                if content.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if !batch.lines.is_empty() && batch.body.len() + content.len() + 1 > max_bytes {
                    let full =
                        std::mem::replace(&mut batch, Batch { body: Vec::new(), lines: Vec::new(), bytes_read: 0 });
                    if tx.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
                batch.body.extend_from_slice(content);
                batch.body.push(b'\n');
                batch.lines.push(line_no);
                if batch.lines.len() >= max_records {
                    let full =
                        std::mem::replace(&mut batch, Batch { body: Vec::new(), lines: Vec::new(), bytes_read: 0 });
                    if tx.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tx.blocking_send(Err(e)).ok();
                return;
            }
        }
    }
    tx.blocking_send(Ok(batch)).ok();
}
