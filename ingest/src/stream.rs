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
//!
//! A file is durable once fsynced with its folder. On a local lake on Linux the files are
//! committed in groups instead (`lake::commit_groups`): each is staged unsynced and its task
//! freed for the next file, and one `syncfs(2)` makes every file staged meanwhile durable.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::path::Path;
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, Orgs, RECORD_ID_LEN, ReasonCode, Registry, Rejection, record_id_at};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use sluice_lake::{
    Lake,
    error_record::ErrorRecord,
    write::{StagedFile, commit_groups},
};

use crate::{
    batch::{Batcher, BufferHints, Item, Job, Target},
    body::{Records, Shape},
    error::{Error, Result},
    metrics::Metrics,
    wal::{Entry, LogDir, Recovery, Wal, WalConfig},
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
    /// Files written at once ([`default_concurrent_writes`]).
    pub concurrent_flushes: usize,
}

/// How many files `serve`, `import` and `replay` write at once by default: eight a core, 16 to 64.
/// Files encode on every core while the others wait on fsync or S3. With twice the cores, a
/// 2-core machine sat at 1.7 cores busy during a burst's flush and the 1M-record ingest benchmark
/// took 15% longer than with 16 (no faster at 32 or 64); `import` with one a core at 1.5.
pub fn default_concurrent_writes() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (8 * cores).clamp(16, 64)
}

enum Msg {
    Items {
        first_seq: u64,
        items: Vec<Item>,
    },
    /// The log, once every record it held at start has been sent: from here on delivery trims it.
    Handover {
        wal: Wal<Vec<Item>>,
        next_seq: u64,
    },
    /// Flush the buffers of these organizations (every buffer, the error output's too, for
    /// `Orgs::All`) and answer once they and every file already on its way are in the lake.
    Flush(Orgs, oneshot::Sender<()>),
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
    /// Records rejected (durable in the log, bound for the error output).
    pub rejected: usize,
    /// The first [`LISTED_REJECTIONS`] rejected records: index in the request and why.
    pub listed: Vec<(usize, Rejection)>,
    /// Rejected records by reason code.
    pub by_code: BTreeMap<ReasonCode, usize>,
    /// Every rejected record: index in the request and reason code (for protocols that answer
    /// record by record, like Elasticsearch's `_bulk`).
    pub codes: Vec<(usize, ReasonCode)>,
}

/// Rejected records an answer lists one by one; the rest are counted by reason code.
pub const LISTED_REJECTIONS: usize = 100;
/// Most records transformed and logged in one step of a request.
pub const CHUNK_RECORDS: usize = 8192;
/// Most bytes of records transformed and logged in one step of a request.
pub const CHUNK_BYTES: usize = 8 << 20;
/// How long a request waits between two chunks for buffers or the log to have room.
pub const ROOM_WAIT: Duration = Duration::from_secs(60);

/// The log entries and delivery items of one chunk of a request, and whether more follow.
type Chunk = (Vec<Entry>, Vec<Item>, bool);

/// Transforms the next chunk of `body`'s records, counting what happened in `result`.
fn take_chunk(
    p: &Partitioner,
    body: &Bytes,
    records: &mut Records,
    index: &mut usize,
    arrival: i64,
    orgs: &Orgs,
    result: &mut IngestResult,
) -> Chunk {
    // The log numbers the records, so their ids are known only once logged: until then, a
    // placeholder of an id's length, which the log's sink overwrites in place.
    let ctx = Context { record_id: "0".repeat(RECORD_ID_LEN), arrival_micros: arrival };
    let mut entries = Vec::new();
    let mut items = Vec::new();
    let mut bytes = 0;
    while entries.len() < CHUNK_RECORDS && bytes < CHUNK_BYTES {
        let Some(r) = records.next(body) else { return (entries, items, false) };
        let i = *index;
        *index += 1;
        bytes += r.len();
        let raw = &body[r.clone()];
        match item_for(p, raw, &ctx).map(|r| r.and_then(|item| check_org(item, orgs))) {
            Some(Ok(item)) => {
                entries.push(Entry { arrival_micros: arrival, raw: body.slice(r), rejection: None });
                items.push(item);
                result.accepted += 1;
            }
            Some(Err(rej)) => {
                entries.push(Entry {
                    arrival_micros: arrival,
                    raw: body.slice(r),
                    rejection: Some((rej.code.as_str().to_owned(), rej.message.clone())),
                });
                items.push(Item::Error(ErrorRecord::from_rejection(raw, arrival, &rej)));
                result.rejected += 1;
                *result.by_code.entry(rej.code).or_default() += 1;
                result.codes.push((i, rej.code));
                if result.listed.len() < LISTED_REJECTIONS {
                    result.listed.push((i, rej));
                }
            }
            None => {}
        }
    }
    (entries, items, true)
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
        Outcome::Ok { partition, row } => Some(Ok(Item::Row { partition, row, size: item_size(raw.len()) })),
        Outcome::Dropped => None,
        Outcome::ProcessingFailed(r) => Some(Err(r)),
    }
}

/// Rejects a row of an organization the producer may not write.
pub(crate) fn check_org(item: Item, orgs: &Orgs) -> std::result::Result<Item, Rejection> {
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

/// What writing a file needs besides the job.
#[derive(Debug)]
struct Writer {
    lake: Lake,
    registry: Registry,
    schema: SchemaRef,
    /// File name prefix: the log id.
    prefix: String,
    /// The filesystem of a local lake whose files are committed in groups (`lake::commit_groups`).
    group_commit: Option<u64>,
}

/// An encoded file, and what the metrics count once it is durable.
struct Written {
    key: Path,
    bytes: Bytes,
    rows: u64,
    data: bool,
    started: Instant,
}

impl Written {
    fn count(&self, metrics: &Metrics) {
        let n = self.bytes.len() as u64;
        metrics.flush_latency(self.started.elapsed().as_secs_f64());
        if self.data {
            metrics.files_written.fetch_add(1, Relaxed);
            metrics.bytes_written.fetch_add(n, Relaxed);
            metrics.rows_written.fetch_add(self.rows, Relaxed);
        } else {
            metrics.error_files_written.fetch_add(1, Relaxed);
        }
        tracing::debug!(key = %self.key, rows = self.rows, bytes = n, "file written");
    }
}

/// What a job's task returns: its id, and the file it staged for the group commit, if it did not
/// write it durably itself.
type JobEnd = (u64, Option<(StagedFile, Written)>);

impl Writer {
    /// Encodes `job` on the blocking pool (so files encode on every core while others are being
    /// written, and the job's rows are freed there too), retrying while it fails.
    async fn encode(self: &Arc<Self>, mut job: Job, metrics: &Metrics) -> (Path, Bytes) {
        let mut backoff = Backoff::new();
        loop {
            let w = Arc::clone(self);
            let done =
                tokio::task::spawn_blocking(move || match job.encode(&w.lake, &w.registry, &w.schema, &w.prefix) {
                    Ok(file) => Ok(file),
                    Err(e) => Err(Box::new((job, e))),
                })
                .await;
            let e;
            (job, e) = match done {
                Ok(Ok(file)) => return file,
                Ok(Err(failed)) => *failed,
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            };
            backoff.wait(metrics, "encoding a file", &e).await;
        }
    }

    /// Writes a file to the lake, retrying while it fails: staged for the group commit when
    /// `stage` and the lake commits in groups, otherwise durably.
    async fn write(&self, w: &Written, stage: bool, metrics: &Metrics) -> Option<StagedFile> {
        let mut backoff = Backoff::new();
        loop {
            let written = match self.group_commit.filter(|_| stage) {
                Some(device) => self.lake.stage(&w.key, w.bytes.clone(), device).await,
                None => self.lake.put(&w.key, w.bytes.clone()).await.map(|()| None),
            };
            match written {
                Ok(staged) => return staged,
                Err(e) => backoff.wait(metrics, "writing to the lake", &e).await,
            }
        }
    }
}

/// The wait before retrying a file: 100 ms, doubling up to 5 s. The records stay in the log until
/// the file is written; the log filling up turns into 503s at the API, never into loss.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    async fn wait(&mut self, metrics: &Metrics, what: &str, error: &(dyn std::error::Error + Sync)) {
        metrics.flush_retries.fetch_add(1, Relaxed);
        tracing::error!(%error, retry_in_ms = self.0.as_millis() as u64, "{what} failed; retrying");
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
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
        metrics.memory_budget.store(config.memory_budget, Relaxed);
        metrics.wal_max_bytes.store(config.wal.max_bytes, Relaxed);
        let dir = config.wal.dir.clone();
        let log =
            tokio::task::spawn_blocking(move || LogDir::lock(&dir)).await.map_err(Error::task("locking the log"))??;
        let id = log.id().to_owned();
        let (tx, rx) = mpsc::channel::<Msg>(64);
        let (commit_tx, commit_rx) = mpsc::unbounded_channel();
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        let group_commit = lake.group_commit_device();
        if let (Some(_), Some(root)) = (group_commit, lake.local_root()) {
            tokio::spawn(commit_groups(root.to_path_buf(), commit_rx, committed_tx));
        }
        // Delivery runs while the log is read, so recovering a large log stays within memory.
        let delivery = Delivery {
            writer: Arc::new(Writer {
                lake: lake.clone(),
                schema: Arc::new(registry.lake_arrow_schema()),
                registry,
                prefix: id.clone(),
                group_commit,
            }),
            batcher: Batcher::new(config.hints),
            metrics: Arc::clone(&metrics),
            memory_budget: config.memory_budget,
            concurrent: config.concurrent_flushes.max(1),
            pending: VecDeque::new(),
            inflight: HashMap::new(),
            committing: HashMap::new(),
            commit: commit_tx,
            committed: committed_rx,
            job_bytes: 0,
            log_relief: None,
            job_seqs: BTreeMap::new(),
            running: JoinSet::new(),
            next_job: 0,
            next_seq: None,
            trimmed: None,
            wal: None,
            waiting_flush: Vec::new(),
            outstanding: BTreeSet::new(),
        };
        let task = tokio::spawn(delivery.run(rx));
        let (tx_rec, tx_sink) = (tx.clone(), tx.clone());
        let p = Arc::clone(&partitioner);
        let wal_config = config.wal.clone();
        let metrics_rec = Arc::clone(&metrics);
        let sink_id = id.clone();
        let (wal, recovery) = tokio::task::spawn_blocking(move || {
            Wal::open(
                log,
                &wal_config,
                |seq, e: Entry| {
                    let ctx = Context { record_id: record_id_at(&id, seq), arrival_micros: e.arrival_micros };
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
                            row.set_record_id(&record_id_at(&sink_id, first_seq + i as u64));
                        }
                    }
                    tx_sink.blocking_send(Msg::Items { first_seq, items }).ok();
                },
            )
        })
        .await
        .map_err(Error::task("opening the log"))??;
        // Through the same channel as the recovered records, after the last of them: delivery
        // trims the log only once every recovered record is in its buffers.
        tx.send(Msg::Handover { wal: wal.clone(), next_seq: recovery.next_seq })
            .await
            .map_err(|_| Error::Stopped("delivery"))?;
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

    /// Ingests the records of `body` (of shape `shape`): transforms each, logs accepted and
    /// rejected records durably, and returns once they are in the log. Records naming an
    /// organization outside `orgs` are rejected as `forbidden_organization` (and kept in the
    /// error output like every rejected record).
    ///
    /// The records are taken a chunk at a time (at most [`CHUNK_RECORDS`] records or
    /// [`CHUNK_BYTES`] bytes), each transformed and logged before the next is read, so a
    /// request's memory is its body and one chunk whatever it holds (16 MB of two-byte lines is
    /// eight million records). Between chunks a request waits while buffers are at the memory
    /// budget or the log is full; if that lasts [`ROOM_WAIT`], it fails, saying how many of its
    /// records were taken.
    pub async fn ingest(&self, body: Bytes, shape: Shape, orgs: Orgs) -> Result<IngestResult> {
        let arrival = chrono::Utc::now().timestamp_micros();
        let orgs = Arc::new(orgs);
        let mut records = Records::new(shape);
        let mut result = IngestResult::default();
        let mut index = 0usize;
        loop {
            if index > 0 {
                self.wait_for_room(index).await?;
            }
            let (p, body, orgs) = (Arc::clone(&self.inner.partitioner), body.clone(), Arc::clone(&orgs));
            let chunk = tokio::task::spawn_blocking(move || {
                let chunk = take_chunk(&p, &body, &mut records, &mut index, arrival, &orgs, &mut result);
                (chunk, records, index, result)
            })
            .await
            .map_err(Error::task("transforming records"))?;
            let (entries, items, more);
            ((entries, items, more), records, index, result) = chunk;
            if !entries.is_empty() {
                self.inner.wal.append(entries, items).await?;
            }
            if !more {
                break;
            }
        }
        let m = &self.inner.metrics;
        m.accepted.fetch_add(result.accepted as u64, Relaxed);
        for (code, n) in &result.by_code {
            m.rejected_n(*code, *n as u64);
        }
        m.wal_bytes.store(self.inner.wal.bytes(), Relaxed);
        Ok(result)
    }

    /// Waits, between two chunks of a request that has taken `taken` records, until buffers and
    /// the log have room.
    async fn wait_for_room(&self, taken: usize) -> Result<()> {
        let deadline = Instant::now() + ROOM_WAIT;
        loop {
            match self.overload() {
                None => return Ok(()),
                Some(o) if o == Overload::LogFailed || Instant::now() >= deadline => {
                    return Err(Error::Partial { taken, reason: format!("{o:?}") });
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Flushes every buffer and waits until everything logged so far is in the lake.
    pub async fn flush(&self) -> Result<()> {
        self.flush_orgs(Orgs::All).await
    }

    /// Flushes the buffers of the organizations of `scope` and waits until their records
    /// logged so far are in the lake. A producer's flush never writes other tenants' buffers
    /// (each flush turns every open buffer it takes into a file); the error output, shared by
    /// every tenant, is flushed with `Orgs::All` and by age.
    pub async fn flush_orgs(&self, scope: Orgs) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.inner.tx.send(Msg::Flush(scope, tx)).await.map_err(|_| Error::Stopped("delivery"))?;
        rx.await.map_err(|_| Error::Stopped("delivery"))
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
    writer: Arc<Writer>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    memory_budget: u64,
    concurrent: usize,
    /// Jobs waiting for a writer, by job id.
    pending: VecDeque<(u64, Job)>,
    /// Jobs being written: job id → (smallest sequence number, bytes).
    inflight: HashMap<u64, (u64, u64)>,
    /// Jobs whose files wait for the group commit: job id → (smallest sequence number, bytes,
    /// the file). They no longer take one of the `concurrent` places.
    committing: HashMap<u64, (u64, u64, Written)>,
    /// To the group commit, and its answers.
    commit: mpsc::UnboundedSender<(u64, StagedFile)>,
    committed: mpsc::UnboundedReceiver<Vec<(u64, bool)>>,
    /// Bytes of the pending, in-flight and committing jobs (a committing job's encoded file is
    /// held until it is durable, to be written again if the commit fails).
    job_bytes: u64,
    /// The watermark the last relief of the log flushed up to.
    log_relief: Option<u64>,
    /// Smallest sequence numbers of the pending, in-flight and committing jobs (with counts), for the
    /// watermark without a scan of thousands of jobs.
    job_seqs: BTreeMap<u64, usize>,
    running: JoinSet<JobEnd>,
    next_job: u64,
    /// The sequence number after the last item received.
    next_seq: Option<u64>,
    trimmed: Option<u64>,
    wal: Option<Wal<Vec<Item>>>,
    /// Flushes waiting: each is answered once no job numbered below its mark is outstanding.
    waiting_flush: Vec<(u64, oneshot::Sender<()>)>,
    /// Jobs not yet durable in the lake (pending, in flight or committing).
    outstanding: BTreeSet<u64>,
}

impl Delivery {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Items { first_seq, items }) => self.add(first_seq, items),
                    Some(Msg::Handover { wal, next_seq }) => {
                        self.next_seq = Some(self.next_seq.map_or(next_seq, |n| n.max(next_seq)));
                        self.wal = Some(wal);
                        self.trim().await;
                    }
                    Some(Msg::Flush(scope, done)) => {
                        let jobs = match &scope {
                            Orgs::All => self.batcher.drain(),
                            Orgs::Some(_) => self.batcher.drain_where(|p| scope.allows(&p.organization)),
                        };
                        for job in jobs {
                            self.enqueue(job);
                        }
                        self.waiting_flush.push((self.next_job, done));
                    }
                    None => break,
                },
                Some(res) = self.running.join_next(), if !self.running.is_empty() => {
                    if let Ok((id, staged)) = res {
                        self.written(id, staged);
                    }
                    self.trim().await;
                }
                answers = self.committed.recv(), if !self.committing.is_empty() => {
                    // Without the group commit (it ended), every file waiting is written again.
                    let answers = answers.unwrap_or_else(|| self.committing.keys().map(|&id| (id, false)).collect());
                    for (id, durable) in answers {
                        self.answered(id, durable);
                    }
                    self.trim().await;
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
            if self.wal.is_some() && !self.waiting_flush.is_empty() {
                let first = self.outstanding.first().copied();
                let (done, waiting): (Vec<_>, Vec<_>) =
                    self.waiting_flush.drain(..).partition(|(mark, _)| first.is_none_or(|f| f >= *mark));
                self.waiting_flush = waiting;
                for (_, w) in done {
                    w.send(()).ok();
                }
            }
        }
    }

    fn held_bytes(&self) -> u64 {
        self.batcher.bytes() + self.job_bytes
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
        self.job_bytes += job.bytes;
        self.outstanding.insert(id);
        *self.job_seqs.entry(job.min_seq).or_default() += 1;
        self.pending.push_back((id, job));
    }

    /// A job's task ended: its file is durable, or staged for the group commit.
    fn written(&mut self, id: u64, staged: Option<(StagedFile, Written)>) {
        let Some((seq, bytes)) = self.inflight.remove(&id) else { return };
        match staged {
            None => self.job_done(id, seq, bytes),
            Some((file, w)) => {
                self.committing.insert(id, (seq, bytes, w));
                if self.commit.send((id, file)).is_err() {
                    self.answered(id, false);
                }
            }
        }
    }

    /// The group commit answered for a job's file: durable, or to be written again one by one.
    fn answered(&mut self, id: u64, durable: bool) {
        let Some((seq, bytes, w)) = self.committing.remove(&id) else { return };
        if durable {
            w.count(&self.metrics);
            self.job_done(id, seq, bytes);
            return;
        }
        self.inflight.insert(id, (seq, bytes));
        let (writer, metrics) = (Arc::clone(&self.writer), Arc::clone(&self.metrics));
        self.running.spawn(async move {
            writer.write(&w, false, &metrics).await;
            w.count(&metrics);
            (id, None)
        });
    }

    fn job_done(&mut self, id: u64, min_seq: u64, bytes: u64) {
        self.outstanding.remove(&id);
        self.job_bytes -= bytes;
        if let Some(n) = self.job_seqs.get_mut(&min_seq) {
            *n -= 1;
            if *n == 0 {
                self.job_seqs.remove(&min_seq);
            }
        }
    }

    /// Under memory pressure, flush the buffers holding the oldest records first. With the log
    /// over half full, flush the buffers that keep its closed segments alive.
    ///
    /// Open buffers get half the memory budget; files waiting for or being written get the rest
    /// (above it the API answers 503). Pressure is judged on the open buffers alone: counting
    /// the files already on their way out would flush ever younger buffers while the writers
    /// catch up, down to files of one row each with thousands of partitions open. For the same
    /// reason the log is relieved once per watermark: until the buffers flushed for it are in
    /// the lake, the log stays full without any open buffer being to blame.
    fn relieve(&mut self) {
        while self.batcher.bytes() > self.memory_budget / 2 {
            match self.batcher.take_oldest() {
                Some(job) => self.enqueue(job),
                None => break,
            }
        }
        let relieving = self.log_relief.is_some_and(|until| self.trimmed.is_none_or(|t| t < until));
        if let Some(wal) = &self.wal
            && !relieving
            && wal.usage() > 0.5
        {
            let active = wal.active_first_seq();
            self.log_relief = Some(active);
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
            let writer = Arc::clone(&self.writer);
            let metrics = Arc::clone(&self.metrics);
            self.running.spawn(async move {
                let started = Instant::now();
                let (rows, data) = (job.len() as u64, matches!(job.target, Target::Data { .. }));
                let (key, bytes) = writer.encode(job, &metrics).await;
                let w = Written { key, bytes, rows, data, started };
                match writer.write(&w, true, &metrics).await {
                    Some(staged) => (id, Some((staged, w))),
                    None => {
                        w.count(&metrics);
                        (id, None)
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
        if let Some(&s) = self.job_seqs.keys().next() {
            w = w.min(s);
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

#[cfg(test)]
mod tests {
    use std::fmt;

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
        PutOptions, PutPayload, PutResult, RenameOptions, memory::InMemory, path::Path,
    };

    use super::*;
    use crate::{batch::BufferHints, wal::WalConfig};

    /// A store whose writes take `delay`: a lake slower than the records coming in.
    #[derive(Debug)]
    struct Slow {
        inner: InMemory,
        delay: Duration,
    }

    impl fmt::Display for Slow {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Slow({})", self.inner)
        }
    }

    #[async_trait]
    impl ObjectStore for Slow {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            tokio::time::sleep(self.delay).await;
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
            self.inner.rename_opts(from, to, options).await
        }
    }

    /// A stream over a lake whose writes never finish, with the given log folder.
    fn stuck(wal: &std::path::Path) -> (StreamConfig, Lake) {
        let store = Arc::new(Slow { inner: InMemory::new(), delay: Duration::from_secs(3600) });
        let config = StreamConfig {
            hints: BufferHints { size_bytes: 1 << 20, interval: Duration::from_secs(900) },
            wal: WalConfig { dir: wal.to_owned(), segment_bytes: 1 << 20, max_bytes: 256 << 20 },
            memory_budget: 256 << 20,
            concurrent_flushes: 2,
        };
        (config, Lake::with_store(store, "", "memory:///"))
    }

    /// Issue 31, item 10 (from reading the code): after a crash the log was handed to delivery
    /// on a channel of its own, which could overtake the recovered records still queued on the
    /// other; delivery then trimmed the log past records not yet in any buffer. The handover
    /// now follows the last recovered record on the same channel: with nothing written to the
    /// lake, nothing is trimmed.
    #[test]
    fn recovery_trims_nothing_that_is_not_in_the_lake() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("wal");
        {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let (config, lake) = stuck(&wal);
                let (p, _) =
                    Pipeline::start(config, lake, Partitioner::default(), Arc::new(Metrics::default())).await.expect("start");
                for chunk in 0..20 {
                    let body: String = (0..250)
                        .map(|i| {
                            format!(
                                "{{\"organizationID\":\"o{}\",\"environment\":\"e\",\"logType\":\"web\",\"time\":\"2025-01-01T{:02}:00:00Z\"}}\n",
                                (chunk * 250 + i) % 7,
                                i % 24
                            )
                        })
                        .collect();
                    let r = p.ingest(Bytes::from(body), Shape::Ndjson, Orgs::All).await.expect("ingest");
                    assert_eq!(r.accepted, 250);
                }
            });
            // The crash: every task of the process is gone at once, the writes to the lake
            // never finished.
            drop(rt);
        }
        for _ in 0..5 {
            // The log's writer thread ends on its own once the crashed process's handles are
            // gone, and lets go of the folder.
            let deadline = Instant::now() + Duration::from_secs(10);
            while LogDir::lock(&wal).is_err() {
                assert!(Instant::now() < deadline, "the log folder stayed locked");
                std::thread::sleep(Duration::from_millis(10));
            }
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let (config, lake) = stuck(&wal);
                let (p, rec) = Pipeline::start(config, lake, Partitioner::default(), Arc::new(Metrics::default()))
                    .await
                    .expect("start");
                assert_eq!(rec.entries, 5000, "every record is still in the log");
                tokio::time::sleep(Duration::from_millis(300)).await;
                let checkpoint = std::fs::read_to_string(wal.join("checkpoint")).unwrap_or_default();
                assert!(
                    checkpoint.is_empty() || checkpoint == "0",
                    "the log was trimmed to {checkpoint} with nothing in the lake"
                );
                drop(p);
            });
            drop(rt);
        }
    }

    /// Thousands of partitions open at once and a lake slower than the input: buffers flushed
    /// for memory must keep about budget / 2 / partitions bytes each. Counting the files already
    /// queued for writing as memory to relieve flushed ever younger buffers: files of one row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_pressure_with_many_partitions_keeps_files_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Slow { inner: InMemory::new(), delay: Duration::from_millis(5) });
        let lake = Lake::with_store(store.clone(), "", "memory:///");
        let budget = 2 << 20;
        let config = StreamConfig {
            hints: BufferHints { size_bytes: 1 << 20, interval: Duration::from_secs(900) },
            wal: WalConfig { dir: dir.path().join("wal"), segment_bytes: 16 << 20, max_bytes: 256 << 20 },
            memory_budget: budget,
            concurrent_flushes: 2,
        };
        let (pipeline, _) =
            Pipeline::start(config, lake, Partitioner::default(), Arc::new(Metrics::default())).await.expect("start");
        // 200 partitions (hours), records spread over them in turn, 100 records a request.
        let (partitions, records) = (200, 8_000);
        let mut sent = 0;
        while sent < records {
            while pipeline.overload().is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut body = Vec::new();
            for i in sent..sent + 100 {
                let (day, hour) = (1 + (i % partitions) / 24, (i % partitions) % 24);
                body.extend_from_slice(
                    format!(
                        r#"{{"organizationID":"7","environment":"prod","logType":"web","time":"2025-01-{day:02}T{hour:02}:30:00Z","server":"s","action":"a","description":"{}"}}"#,
                        "x".repeat(200)
                    )
                    .as_bytes(),
                );
                body.push(b'\n');
            }
            let r = pipeline.ingest(Bytes::from(body), Shape::Ndjson, Orgs::All).await.expect("ingest");
            assert_eq!(r.accepted, 100, "{:?}", r.listed);
            sent += 100;
        }
        pipeline.flush().await.expect("flush");
        let m = pipeline.metrics();
        let (files, rows) = (m.files_written.load(Relaxed), m.rows_written.load(Relaxed));
        assert_eq!(rows, records as u64);
        // Open buffers hold budget / 2 = 1 MiB ≈ 1,900 records of ~550 bytes: ≈ 9 a partition.
        let per_file = rows as f64 / files as f64;
        assert!(per_file >= 5.0, "{files} files for {rows} rows: {per_file:.1} rows a file");
        pipeline.shutdown().await.expect("shutdown");
    }
}
