//! The embedded delivery stream: what Firehose does, on one machine.
//!
//! ```text
//! POST /v1/logs ─► Pipeline::ingest ─► transform (same code as the Lambda)
//!                        │
//!                        ▼
//!              Wal::append (group commit, fsync) ──► answer the request
//!                        │ in sequence order
//!                        ▼
//!              delivery task: Batcher per partition ──► Parquet / error files in the lake
//!                        │                                   │ durable
//!                        └──────────── Wal::trim(low watermark) ◄┘
//! ```
//!
//! The low watermark is the smallest sequence number not yet durable in the lake; segments
//! below it are deleted. A crash at any point loses nothing acknowledged: on start, whatever
//! the log still holds is delivered again (at least once; `record_id` identifies duplicates).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use sluice_auth::Orgs;
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, ReasonCode, Rejection, record_id};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use crate::{
    batch::{Batcher, BufferHints, Item, Job, Target},
    error::{Error, Result},
    errors::ErrorRecord,
    lake::Lake,
    metrics::Metrics,
    wal::{Entry, Recovery, Wal, WalConfig},
};

/// Settings of the delivery stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Buffering hints.
    pub hints: BufferHints,
    /// The write-ahead log.
    pub wal: WalConfig,
    /// Bytes buffered in memory (including files being written) above which the oldest buffers are
    /// flushed, and above which the API answers 503.
    pub memory_budget: u64,
    /// Files written at once.
    pub concurrent_flushes: usize,
}

enum Msg {
    Items { first_seq: u64, items: Vec<Item> },
    Flush(oneshot::Sender<()>),
}

/// Why an ingest request cannot be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// The write-ahead log is at its size limit.
    LogFull,
    /// Buffered data is at the memory budget.
    MemoryFull,
    /// The log cannot be written (disk error).
    LogFailed,
}

/// What happened to the records of one request.
#[derive(Debug, Clone, Default)]
pub struct IngestResult {
    /// Records accepted (durable in the log).
    pub accepted: usize,
    /// Rejected records: index in the request and why.
    pub rejected: Vec<(usize, Rejection)>,
}

/// The running pipeline: write-ahead log plus delivery task.
#[derive(Debug, Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    partitioner: Arc<Partitioner>,
    wal: Wal<Vec<Item>>,
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    memory_budget: u64,
    lake: Lake,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn item_size(raw_len: usize) -> u64 {
    raw_len as u64 + 256
}

fn item_for(partitioner: &Partitioner, raw: &[u8], ctx: &Context) -> Option<std::result::Result<Item, Rejection>> {
    match partitioner.transform(raw, ctx) {
        Outcome::Ok(rec) => {
            let rec = *rec;
            Some(Ok(Item::Row { partition: rec.partition, row: Box::new(rec.row), size: item_size(raw.len()) }))
        }
        Outcome::Dropped => None,
        Outcome::ProcessingFailed(r) => Some(Err(r)),
    }
}

/// Rejects a row of an organization the producer may not write.
fn check_org(item: Item, orgs: &Orgs) -> std::result::Result<Item, Rejection> {
    match &item {
        Item::Row { partition, .. } if !orgs.allows(&partition.organization) => Err(Rejection {
            code: ReasonCode::ForbiddenOrganization,
            message: format!(
                "this producer's token may write organizations [{}], not {:?}; send the record with a token of its \
                 organization",
                orgs.describe(),
                partition.organization
            ),
        }),
        _ => Ok(item),
    }
}

impl Pipeline {
    /// Opens the log in `config.wal.dir`, starts delivery, and re-delivers whatever the log still
    /// holds from before a stop or crash.
    pub async fn start(
        config: StreamConfig,
        lake: Lake,
        partitioner: Partitioner,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Recovery)> {
        let partitioner = Arc::new(partitioner);
        let registry = partitioner.contract().registry.clone();
        let dir = config.wal.dir.clone();
        let id = tokio::task::spawn_blocking(move || crate::wal::log_id(&dir))
            .await
            .map_err(|e| Error::Stopped(e.to_string()))??;
        let (tx, rx) = mpsc::channel::<Msg>(64);
        let (wal_tx, wal_rx) = oneshot::channel();
        // Delivery runs while the log is read, so recovering a large log stays within memory.
        let delivery = Delivery {
            lake: lake.clone(),
            schema: Arc::new(registry.lake_arrow_schema()),
            registry,
            batcher: Batcher::new(config.hints),
            metrics: Arc::clone(&metrics),
            memory_budget: config.memory_budget,
            concurrent: config.concurrent_flushes.max(1),
            pending: VecDeque::new(),
            inflight: HashMap::new(),
            running: JoinSet::new(),
            next_job: 0,
            next_seq: None,
            trimmed: None,
            wal: None,
            prefix: id.clone(),
            waiting_flush: Vec::new(),
        };
        let task = tokio::spawn(delivery.run(rx, wal_rx));
        let (tx_rec, tx_sink) = (tx.clone(), tx.clone());
        let p = Arc::clone(&partitioner);
        let wal_config = config.wal.clone();
        let metrics_rec = Arc::clone(&metrics);
        let sink_id = id.clone();
        let (wal, recovery) = tokio::task::spawn_blocking(move || {
            Wal::open(
                &wal_config,
                |seq, e: Entry| {
                    let ctx =
                        Context { record_id: record_id(&format!("{id}:{seq}")), arrival_micros: e.arrival_micros };
                    let item = match &e.rejection {
                        Some((code, msg)) => Item::Error(ErrorRecord::new(&e.raw, e.arrival_micros, code, msg)),
                        None => match item_for(&p, &e.raw, &ctx) {
                            Some(Ok(item)) => item,
                            // The contract changed since the record was logged (a log type removed):
                            // it goes to the error output rather than being lost.
                            Some(Err(r)) => {
                                metrics_rec.rejected(r.code);
                                Item::Error(ErrorRecord::from_rejection(&e.raw, e.arrival_micros, &r))
                            }
                            None => {
                                Item::Error(ErrorRecord::new(&e.raw, e.arrival_micros, "invalid_json", "empty record"))
                            }
                        },
                    };
                    tx_rec.blocking_send(Msg::Items { first_seq: seq, items: vec![item] }).ok();
                },
                move |first_seq, mut items: Vec<Item>| {
                    for (i, item) in items.iter_mut().enumerate() {
                        if let Item::Row { row, .. } = item {
                            row.record_id = record_id(&format!("{sink_id}:{}", first_seq + i as u64));
                        }
                    }
                    tx_sink.blocking_send(Msg::Items { first_seq, items }).ok();
                },
            )
        })
        .await
        .map_err(|e| Error::Stopped(e.to_string()))??;
        wal_tx.send((wal.clone(), recovery.next_seq)).ok();
        tracing::info!(log = %config.wal.dir.display(), recovered = recovery.entries, "write-ahead log open");
        let inner = Inner {
            partitioner,
            wal,
            tx,
            metrics,
            memory_budget: config.memory_budget,
            lake,
            task: std::sync::Mutex::new(Some(task)),
        };
        Ok((Self { inner: Arc::new(inner) }, recovery))
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.inner.lake
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The partitioner (record contract).
    pub fn partitioner(&self) -> &Arc<Partitioner> {
        &self.inner.partitioner
    }

    /// Whether a request should be refused now, and why.
    pub fn overload(&self) -> Option<Overload> {
        let wal = &self.inner.wal;
        self.inner.metrics.wal_bytes.store(wal.bytes(), Relaxed);
        if wal.has_failed() {
            return Some(Overload::LogFailed);
        }
        if wal.is_full() {
            return Some(Overload::LogFull);
        }
        (self.inner.metrics.buffered_bytes.load(Relaxed) >= self.inner.memory_budget).then_some(Overload::MemoryFull)
    }

    /// Ingests records (`ranges` of `body`): transforms each, logs accepted and rejected records
    /// durably, and returns once they are in the log.
    /// Records naming an organization outside `orgs` are rejected as `forbidden_organization`
    /// (and kept in the error output like every rejected record).
    pub async fn ingest(&self, body: Bytes, ranges: Vec<std::ops::Range<usize>>, orgs: Orgs) -> Result<IngestResult> {
        let arrival = chrono::Utc::now().timestamp_micros();
        let p = Arc::clone(&self.inner.partitioner);
        let (entries, items, result) = tokio::task::spawn_blocking(move || {
            let ctx = Context { record_id: String::new(), arrival_micros: arrival };
            let mut entries = Vec::with_capacity(ranges.len());
            let mut items = Vec::with_capacity(ranges.len());
            let mut result = IngestResult::default();
            for (i, r) in ranges.into_iter().enumerate() {
                let raw = &body[r];
                match item_for(&p, raw, &ctx).map(|r| r.and_then(|item| check_org(item, &orgs))) {
                    Some(Ok(item)) => {
                        entries.push(Entry { arrival_micros: arrival, raw: raw.to_vec(), rejection: None });
                        items.push(item);
                        result.accepted += 1;
                    }
                    Some(Err(rej)) => {
                        entries.push(Entry {
                            arrival_micros: arrival,
                            raw: raw.to_vec(),
                            rejection: Some((rej.code.as_str().to_owned(), rej.message.clone())),
                        });
                        items.push(Item::Error(ErrorRecord::from_rejection(raw, arrival, &rej)));
                        result.rejected.push((i, rej));
                    }
                    None => {}
                }
            }
            (entries, items, result)
        })
        .await
        .map_err(|e| Error::Stopped(e.to_string()))?;
        if !entries.is_empty() {
            self.inner.wal.append(entries, items).await?;
        }
        let m = &self.inner.metrics;
        m.accepted.fetch_add(result.accepted as u64, Relaxed);
        for (_, r) in &result.rejected {
            m.rejected(r.code);
        }
        m.wal_bytes.store(self.inner.wal.bytes(), Relaxed);
        Ok(result)
    }

    /// Flushes every buffer and waits until everything logged so far is in the lake.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.inner.tx.send(Msg::Flush(tx)).await.map_err(|_| Error::Stopped("delivery".into()))?;
        rx.await.map_err(|_| Error::Stopped("delivery".into()))
    }

    /// Flushes everything and stops the delivery task.
    pub async fn shutdown(self) -> Result<()> {
        self.flush().await?;
        let task = self.inner.task.lock().expect("task lock").take();
        drop(self);
        if let Some(t) = task {
            t.abort();
            t.await.ok();
        }
        Ok(())
    }
}

struct Delivery {
    lake: Lake,
    registry: sluice_schemas::Registry,
    schema: SchemaRef,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    memory_budget: u64,
    concurrent: usize,
    /// Jobs waiting for a writer, by job id.
    pending: VecDeque<(u64, Job)>,
    /// Jobs being written: job id → (smallest sequence number, bytes).
    inflight: HashMap<u64, (u64, u64)>,
    running: JoinSet<u64>,
    next_job: u64,
    /// The sequence number after the last item received.
    next_seq: Option<u64>,
    trimmed: Option<u64>,
    wal: Option<Wal<Vec<Item>>>,
    /// File name prefix: the log id.
    prefix: String,
    waiting_flush: Vec<oneshot::Sender<()>>,
}

impl Delivery {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, wal_rx: oneshot::Receiver<(Wal<Vec<Item>>, u64)>) {
        let mut wal_rx = Some(wal_rx);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Items { first_seq, items }) => self.add(first_seq, items),
                    Some(Msg::Flush(done)) => {
                        for job in self.batcher.drain() {
                            self.enqueue(job);
                        }
                        self.waiting_flush.push(done);
                    }
                    None => break,
                },
                Some(res) = self.running.join_next(), if !self.running.is_empty() => {
                    if let Ok(id) = res {
                        self.inflight.remove(&id);
                    }
                    self.trim().await;
                }
                w = async { wal_rx.as_mut().expect("guarded by the condition").await }, if wal_rx.is_some() => {
                    wal_rx = None;
                    if let Ok((wal, next)) = w {
                        self.next_seq = Some(self.next_seq.map_or(next, |n| n.max(next)));
                        self.wal = Some(wal);
                        self.trim().await;
                    }
                }
                _ = tick.tick() => {
                    for job in self.batcher.due(Instant::now()) {
                        self.enqueue(job);
                    }
                }
            }
            self.relieve();
            self.start_jobs();
            self.metrics.buffered_bytes.store(self.held_bytes(), Relaxed);
            let idle = self.pending.is_empty() && self.inflight.is_empty() && self.batcher.is_empty();
            if idle && self.wal.is_some() && !self.waiting_flush.is_empty() {
                for w in self.waiting_flush.drain(..) {
                    w.send(()).ok();
                }
            }
        }
    }

    fn held_bytes(&self) -> u64 {
        self.batcher.bytes()
            + self.pending.iter().map(|(_, j)| j.bytes).sum::<u64>()
            + self.inflight.values().map(|(_, b)| b).sum::<u64>()
    }

    fn add(&mut self, first_seq: u64, items: Vec<Item>) {
        let n = items.len() as u64;
        for (i, item) in items.into_iter().enumerate() {
            if let Some(job) = self.batcher.add(first_seq + i as u64, item) {
                self.enqueue(job);
            }
        }
        self.next_seq = Some(self.next_seq.map_or(first_seq + n, |s| s.max(first_seq + n)));
    }

    fn enqueue(&mut self, job: Job) {
        let id = self.next_job;
        self.next_job += 1;
        self.pending.push_back((id, job));
    }

    /// Under memory pressure, flush the buffers holding the oldest records first. With the log
    /// over half full, flush the buffers that keep its closed segments alive.
    fn relieve(&mut self) {
        while self.held_bytes() > self.memory_budget * 3 / 4 {
            match self.batcher.take_oldest() {
                Some(job) => self.enqueue(job),
                None => break,
            }
        }
        if let Some(wal) = &self.wal
            && wal.usage() > 0.5
        {
            let active = wal.active_first_seq();
            while self.batcher.min_seq().is_some_and(|s| s < active) {
                match self.batcher.take_oldest() {
                    Some(job) => self.enqueue(job),
                    None => break,
                }
            }
        }
    }

    fn start_jobs(&mut self) {
        while self.inflight.len() < self.concurrent {
            let Some((id, job)) = self.pending.pop_front() else { break };
            self.inflight.insert(id, (job.min_seq, job.bytes));
            let lake = self.lake.clone();
            let registry = self.registry.clone();
            let schema = self.schema.clone();
            let prefix = self.prefix.clone();
            let metrics = Arc::clone(&self.metrics);
            self.running.spawn(async move {
                let mut backoff = Duration::from_millis(100);
                loop {
                    let started = Instant::now();
                    match job.write(&lake, &registry, &schema, &prefix).await {
                        Ok((key, bytes)) => {
                            metrics.flush_latency(started.elapsed().as_secs_f64());
                            match job.target {
                                Target::Data { .. } => {
                                    metrics.files_written.fetch_add(1, Relaxed);
                                    metrics.bytes_written.fetch_add(bytes, Relaxed);
                                    metrics.rows_written.fetch_add(job.len() as u64, Relaxed);
                                }
                                Target::Errors { .. } => {
                                    metrics.error_files_written.fetch_add(1, Relaxed);
                                }
                            }
                            tracing::debug!(%key, rows = job.len(), bytes, "file written");
                            return id;
                        }
                        Err(e) => {
                            // The records stay in the log until this succeeds; the log filling up
                            // turns into 503s at the API, never into loss.
                            metrics.flush_retries.fetch_add(1, Relaxed);
                            tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "writing to the lake failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            });
        }
    }

    /// The smallest sequence number not yet durable in the lake.
    fn watermark(&self) -> Option<u64> {
        let mut w = self.next_seq?;
        if let Some(s) = self.batcher.min_seq() {
            w = w.min(s);
        }
        for (_, j) in &self.pending {
            w = w.min(j.min_seq);
        }
        for (s, _) in self.inflight.values() {
            w = w.min(*s);
        }
        Some(w)
    }

    async fn trim(&mut self) {
        let (Some(w), Some(wal)) = (self.watermark(), self.wal.clone()) else { return };
        if self.trimmed.is_some_and(|t| w <= t) {
            return;
        }
        let bytes = wal.clone();
        match tokio::task::spawn_blocking(move || wal.trim(w)).await {
            Ok(Ok(())) => self.trimmed = Some(w),
            Ok(Err(e)) => tracing::error!(error = %e, "trimming the write-ahead log failed"),
            Err(e) => tracing::error!(error = %e, "trimming the write-ahead log failed"),
        }
        self.metrics.wal_bytes.store(bytes.bytes(), Relaxed);
    }
}
