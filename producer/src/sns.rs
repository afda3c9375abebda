//! The SNS producer of AWS mode: publishes records to the logging topic, which delivers them to
//! the Firehose delivery stream.
//!
//! * [`SnsPublisher::publish`] streams NDJSON (what `sluice publish --to sns://ARN` runs);
//!   [`SnsPublisher::publish_records`] sends records a Rust service already has in memory.
//! * Records go in `PublishBatch` calls of at most 10 messages and 256 KiB; a record over
//!   256 KiB is rejected before sending as `record_too_large`, and with a contract set, records
//!   the transform would reject are rejected here with the same reason codes.
//! * Throttling and server errors are retried with exponential backoff by the SDK; entries a
//!   batch reports as failed through no fault of the sender are sent again with backoff.
//! * [`SnsLayer`] is a `tracing` layer that ships a service's own logs as records.

use std::{
    collections::BTreeMap,
    io::BufRead,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_sdk_sns::{
    Client,
    config::retry::RetryConfig,
    types::{BatchResultErrorEntry, PublishBatchRequestEntry},
};
use futures::StreamExt;
use sluice_schemas::{Context, Contract, ReasonCode};

use crate::{
    error::{Error, Result},
    http::{Batch, RejectedLine, Summary, read_batches},
};

/// Most messages in one `PublishBatch`.
pub const MAX_BATCH_MESSAGES: usize = 10;
/// Most bytes of one message, and of all messages of one `PublishBatch` together (256 KiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Settings of an SNS publisher.
#[derive(Debug, Clone)]
pub struct SnsOptions {
    /// The topic's ARN.
    pub topic_arn: String,
    /// Attempts per call while SNS throttles or fails (the SDK's standard retry mode), and
    /// attempts per entry a batch reports as failed by SNS.
    pub max_attempts: u32,
    /// `PublishBatch` calls in flight at once.
    pub concurrency: usize,
    /// When set, records are checked against the record contract before sending, so a record
    /// the transform would reject is reported here, with its line and reason code.
    pub contract: Option<Contract>,
}

impl SnsOptions {
    /// Options for `topic_arn` with defaults: 8 attempts, 8 calls in flight, no contract check.
    pub fn new(topic_arn: impl Into<String>) -> Self {
        Self { topic_arn: topic_arn.into(), max_attempts: 8, concurrency: 8, contract: None }
    }
}

/// Publishes records to an SNS topic.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: Client,
    opts: Arc<SnsOptions>,
}

/// The topic ARN of an `sns://ARN` URL.
pub fn topic_of_url(url: &str) -> Option<&str> {
    url.strip_prefix("sns://")
}

impl SnsPublisher {
    /// A publisher with the process's AWS settings (region, credentials, `AWS_ENDPOINT_URL_SNS`
    /// or `AWS_ENDPOINT_URL`; see `sluice_aws`).
    pub async fn new(opts: SnsOptions) -> Result<Self> {
        if !opts.topic_arn.starts_with("arn:") || opts.topic_arn.split(':').count() != 6 {
            return Err(Error::NotATopicArn { arn: opts.topic_arn });
        }
        let config = sluice_aws::sdk_config().await;
        let sns = aws_sdk_sns::config::Builder::from(config)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(opts.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .build();
        Ok(Self::with_client(Client::from_conf(sns), opts))
    }

    /// A publisher over a client configured by the caller.
    pub fn with_client(client: Client, opts: SnsOptions) -> Self {
        Self { client, opts: Arc::new(opts) }
    }

    /// The topic records go to.
    pub fn topic_arn(&self) -> &str {
        &self.opts.topic_arn
    }

    /// Publishes every line of `input` (NDJSON); `progress` is called after each batch with the
    /// summary so far. Lines are numbered from 1 in rejections.
    pub async fn publish(
        &self,
        input: impl BufRead + Send + 'static,
        mut progress: impl FnMut(&Summary),
    ) -> Result<Summary> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Batch>>(2 * self.opts.concurrency.max(1));
        let reader = tokio::task::spawn_blocking(move || read_batches(input, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES, &tx));
        let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        let sent = batches
            .map(|batch| async move {
                let batch = batch.map_err(Error::input("the records to publish"))?;
                let records: Vec<(u64, &[u8])> =
                    batch.lines.iter().copied().zip(batch.body.split(|b| *b == b'\n')).collect();
                let mut s = self.send_records(&records).await?;
                s.bytes = batch.bytes_read;
                Ok::<_, Error>(s)
            })
            .buffer_unordered(self.opts.concurrency.max(1));
        let mut sent = std::pin::pin!(sent);
        let mut summary = Summary::default();
        while let Some(s) = sent.next().await {
            summary.merge(s?);
            progress(&summary);
        }
        reader.await.map_err(Error::task("reading the input"))?;
        Ok(summary)
    }

    /// Publishes records held in memory (each one JSON object, no newline needed); rejections
    /// name records by their index from 1.
    pub async fn publish_records<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<Summary> {
        let numbered: Vec<(u64, &[u8])> = records.iter().enumerate().map(|(i, r)| (i as u64 + 1, r.as_ref())).collect();
        let mut summary = Summary::default();
        for chunk in pack(&numbered) {
            summary.merge(self.send_records(chunk).await?);
        }
        Ok(summary)
    }

    /// Checks and sends records that fit one or more `PublishBatch` calls.
    async fn send_records(&self, records: &[(u64, &[u8])]) -> Result<Summary> {
        let mut summary = Summary::default();
        let mut ok: Vec<(u64, &str)> = Vec::with_capacity(records.len());
        for &(line, raw) in records {
            summary.sent += 1;
            match self.check(raw) {
                Ok(text) => ok.push((line, text)),
                Err((code, message)) => reject(&mut summary, line, code, message),
            }
        }
        let owned: Vec<(u64, &[u8])> = ok.iter().map(|(l, t)| (*l, t.as_bytes())).collect();
        for chunk in pack(&owned) {
            let chunk: Vec<(u64, &str)> =
                chunk.iter().map(|(l, b)| (*l, std::str::from_utf8(b).expect("checked UTF-8"))).collect();
            self.send_batch(&chunk, &mut summary).await?;
        }
        Ok(summary)
    }

    /// The message text of a record, or why it cannot be sent.
    fn check<'a>(&self, raw: &'a [u8]) -> std::result::Result<&'a str, (String, String)> {
        if raw.len() > MAX_BATCH_BYTES {
            return Err((
                ReasonCode::RecordTooLarge.as_str().into(),
                format!("the record is {} bytes; an SNS message holds at most {MAX_BATCH_BYTES} bytes", raw.len()),
            ));
        }
        if let Some(contract) = &self.opts.contract {
            let ctx = Context { record_id: String::new(), arrival_micros: chrono::Utc::now().timestamp_micros() };
            if let Err(r) = contract.parse(raw, &ctx) {
                return Err((r.code.as_str().into(), r.message));
            }
        }
        std::str::from_utf8(raw).map_err(|e| (ReasonCode::InvalidJson.as_str().into(), format!("not UTF-8: {e}")))
    }

    /// Sends one batch (≤ 10 messages, ≤ 256 KiB), sending entries that failed through no fault
    /// of the sender again with backoff.
    async fn send_batch(&self, batch: &[(u64, &str)], summary: &mut Summary) -> Result<()> {
        let mut pending: Vec<(u64, &str)> = batch.to_vec();
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.opts.max_attempts.max(1) {
            let entries = pending
                .iter()
                .enumerate()
                .map(|(i, (_, text))| PublishBatchRequestEntry::builder().id(i.to_string()).message(*text).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .expect("an entry with an id and a message is complete");
            let out = self
                .client
                .publish_batch()
                .topic_arn(&self.opts.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::Sns {
                    topic: self.opts.topic_arn.clone(),
                    detail: publish_error(&self.opts.topic_arn, &e),
                })?;
            summary.accepted += out.successful().len() as u64;
            let (retry, rejected) = split_failures(out.failed());
            for f in rejected {
                let Some(&(line, _)) = f.id().parse::<usize>().ok().and_then(|i| pending.get(i)) else { continue };
                reject(summary, line, "publish_rejected".into(), format!("SNS refused the message: {}", describe(f)));
            }
            if retry.is_empty() {
                return Ok(());
            }
            if attempt == self.opts.max_attempts.max(1) {
                let first = describe(retry[0]);
                return Err(Error::Exhausted {
                    what: format!("SNS topic {}", self.opts.topic_arn),
                    attempts: attempt,
                    detail: format!(" for {} messages ({first})", retry.len()),
                });
            }
            pending = retry
                .iter()
                .filter_map(|f| f.id().parse::<usize>().ok().and_then(|i| pending.get(i).copied()))
                .collect();
            summary.retries += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(20));
        }
        Ok(())
    }
}

/// Splits a batch's failed entries into those to send again (SNS's fault) and those rejected
/// (the sender's fault).
fn split_failures(failed: &[BatchResultErrorEntry]) -> (Vec<&BatchResultErrorEntry>, Vec<&BatchResultErrorEntry>) {
    failed.iter().partition(|f| !f.sender_fault())
}

fn describe(f: &BatchResultErrorEntry) -> String {
    format!("{}: {}", f.code(), f.message().unwrap_or_default())
}

fn publish_error<E: std::error::Error + 'static>(topic: &str, e: &E) -> String {
    sluice_aws::error_text(
        &format!("PublishBatch to {topic}"),
        e,
        "check the topic ARN, the region (AWS_REGION), credentials with sns:Publish \
         (the stack's publisher policy) and AWS_ENDPOINT_URL",
    )
}

fn reject(summary: &mut Summary, line: u64, code: String, message: String) {
    *summary.rejected.entry(code.clone()).or_default() += 1;
    if summary.examples.len() < 20 {
        summary.examples.push(RejectedLine { line, code, message });
    }
}

/// Packs records into runs of at most [`MAX_BATCH_MESSAGES`] records and [`MAX_BATCH_BYTES`]
/// bytes (a record over the byte limit makes a run of its own; [`SnsPublisher`] rejects it).
pub fn pack<T>(records: &[(u64, T)]) -> Vec<&[(u64, T)]>
where
    T: AsRef<[u8]>,
{
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, r)) in records.iter().enumerate() {
        let len = r.as_ref().len();
        if i > start && (i - start == MAX_BATCH_MESSAGES || bytes + len > MAX_BATCH_BYTES) {
            runs.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < records.len() {
        runs.push(&records[start..]);
    }
    runs
}

// --- the tracing layer --------------------------------------------------------------------------

/// The partition fields every record of a service's own logs carries.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    /// `environment` (dev, prod, …).
    pub environment: String,
    /// `organizationID`.
    pub organization: String,
    /// `logType` (a registered log type, e.g. `app`).
    pub log_type: String,
    /// `server`: the service's name.
    pub server: String,
}

/// A `tracing` layer that turns a service's log events into records and ships them to SNS.
///
/// Each event becomes one record: the identity's partition fields and `server`, `time` (now),
/// `type` (the level, lowercase), `action` (the target), `description` (the message), `caller`
/// (file:line), `transactionId` (from a `transaction_id` field), `success` (false for errors)
/// and the other fields in `detail`. Events of the AWS SDK and HTTP stacks are not shipped
/// (they would feed back into themselves). The queue is bounded: when SNS cannot keep up,
/// events are dropped and counted ([`SnsShipper::dropped`]), never blocking the service.
#[derive(Debug, Clone)]
pub struct SnsLayer {
    identity: Arc<ServiceIdentity>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// The background task of an [`SnsLayer`]: call [`SnsShipper::shutdown`] before the service exits
/// to send what is queued.
#[derive(Debug)]
pub struct SnsShipper {
    task: tokio::task::JoinHandle<Summary>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl SnsShipper {
    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records that could not be published (SNS unreachable after every retry).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until every queued record is sent (the layers must have been dropped, e.g. with
    /// the subscriber) and returns what was published.
    pub async fn shutdown(self) -> Summary {
        self.task.await.unwrap_or_default()
    }
}

/// Creates the layer and starts its background task on the current Tokio runtime. `capacity`
/// bounds the records queued in memory.
pub fn sns_layer(publisher: SnsPublisher, identity: ServiceIdentity, capacity: usize) -> (SnsLayer, SnsShipper) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let task_failed = Arc::clone(&failed);
    let task = tokio::spawn(async move {
        let mut total = Summary::default();
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(MAX_BATCH_MESSAGES);
        loop {
            let open = match rx.recv().await {
                Some(r) => {
                    batch.push(r);
                    // Linger briefly so that bursts leave in full batches.
                    let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
                    while batch.len() < 100 {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(r)) => batch.push(r),
                            Ok(None) | Err(_) => break,
                        }
                    }
                    true
                }
                None => false,
            };
            if !batch.is_empty() {
                match publisher.publish_records(&batch).await {
                    Ok(s) => total.merge(s),
                    Err(e) => {
                        task_failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        eprintln!("sluice SNS log shipping: {e}");
                    }
                }
                batch.clear();
            }
            if !open {
                return total;
            }
        }
    });
    let layer = SnsLayer { identity: Arc::new(identity), tx, dropped: Arc::clone(&dropped) };
    (layer, SnsShipper { task, dropped, failed })
}

/// Targets whose events are never shipped: the stacks the shipping itself runs on.
const UNSHIPPED_TARGETS: [&str; 8] =
    ["aws_", "hyper", "h2", "rustls", "tower", "reqwest", "tokio", "sluice_producer::sns"];

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SnsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if UNSHIPPED_TARGETS.iter().any(|t| meta.target().starts_with(t)) {
            return;
        }
        let mut fields = FieldVisitor::default();
        event.record(&mut fields);
        let id = &self.identity;
        let mut record = serde_json::Map::new();
        record.insert("organizationID".into(), id.organization.clone().into());
        record.insert("environment".into(), id.environment.clone().into());
        record.insert("logType".into(), id.log_type.clone().into());
        record.insert("time".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        record.insert("server".into(), id.server.clone().into());
        record.insert("type".into(), meta.level().as_str().to_ascii_lowercase().into());
        record.insert("action".into(), meta.target().into());
        record.insert("description".into(), fields.message.unwrap_or_default().into());
        if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
            record.insert("caller".into(), format!("{file}:{line}").into());
        }
        if let Some(t) = fields.transaction_id {
            record.insert("transactionId".into(), t.into());
        }
        if *meta.level() == tracing::Level::ERROR {
            record.insert("success".into(), false.into());
        }
        if !fields.detail.is_empty() {
            record.insert("detail".into(), serde_json::Value::Object(fields.detail.into_iter().collect()));
        }
        let Ok(bytes) = serde_json::to_vec(&record) else { return };
        if self.tx.try_send(bytes).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: Option<String>,
    transaction_id: Option<String>,
    detail: BTreeMap<String, serde_json::Value>,
}

impl FieldVisitor {
    fn put(&mut self, field: &tracing::field::Field, value: serde_json::Value) {
        match field.name() {
            "message" => self.message = Some(value.as_str().map_or_else(|| value.to_string(), str::to_owned)),
            "transaction_id" | "transactionId" => {
                self.transaction_id = Some(value.as_str().map_or_else(|| value.to_string(), str::to_owned))
            }
            name => {
                self.detail.insert(name.to_owned(), value);
            }
        }
    }
}

impl tracing::field::Visit for FieldVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_ten_messages_or_256_kib() {
        let small: Vec<(u64, Vec<u8>)> = (0..25).map(|i| (i, vec![b'x'; 100])).collect();
        let runs = pack(&small);
        assert_eq!(runs.iter().map(|r| r.len()).collect::<Vec<_>>(), [10, 10, 5]);

        let big: Vec<(u64, Vec<u8>)> = (0..5).map(|i| (i, vec![b'x'; 100 * 1024])).collect();
        let runs = pack(&big);
        assert_eq!(runs.iter().map(|r| r.len()).collect::<Vec<_>>(), [2, 2, 1]);
        for r in &runs {
            assert!(r.iter().map(|(_, b)| b.len()).sum::<usize>() <= MAX_BATCH_BYTES);
        }

        let huge = vec![(1, vec![b'x'; 10]), (2, vec![b'x'; MAX_BATCH_BYTES + 1]), (3, vec![b'x'; 10])];
        assert_eq!(pack(&huge).iter().map(|r| r.len()).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(pack::<Vec<u8>>(&[]).is_empty());
    }

    #[test]
    fn failed_entries_are_retried_only_when_sns_was_at_fault() {
        let entry = |id: &str, sender: bool| {
            BatchResultErrorEntry::builder()
                .id(id)
                .code(if sender { "InvalidParameter" } else { "InternalError" })
                .sender_fault(sender)
                .build()
                .expect("entry")
        };
        let failed = [entry("0", true), entry("3", false), entry("7", false)];
        let (retry, rejected) = split_failures(&failed);
        assert_eq!(retry.iter().map(|f| f.id()).collect::<Vec<_>>(), ["3", "7"]);
        assert_eq!(rejected.iter().map(|f| f.id()).collect::<Vec<_>>(), ["0"]);
    }
}
