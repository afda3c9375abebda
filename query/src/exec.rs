//! Query executions and exports, kept as files so that paging is stable and memory is bounded.
//!
//! An execution runs in the background; its rows go to a file as they are produced (NDJSON for
//! query results, CSV for exports), so a result of any size needs no more memory than one batch.
//! A result is kept until its expiry (default 24 h, like a signed download link) and then deleted.
//!
//! What executions may take from the server is bounded: a few run at once per caller and more in
//! all ([`sluice_auth::slots::Slots`]); a caller keeps at most so many (the oldest finished one
//! goes first); result files have a size limit, a disk quota per caller and in all, and leave a
//! reserve of free space on their disk (by default room for a full write-ahead log), so that
//! results never stop ingest. A result that fails or is cancelled is deleted at once, and result
//! files of a server that stopped are deleted when the next one starts (executions live in its
//! memory only).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use datafusion::{
    arrow::record_batch::RecordBatch,
    datasource::{physical_plan::FileScanConfig, source::DataSourceExec},
    execution::TaskContext,
    physical_plan::{ExecutionPlan, execute_stream},
};
use futures::StreamExt;
use serde::Serialize;
use sluice_auth::slots::{Full, Slot, Slots};
use sluice_schemas::Orgs;
use tokio::sync::watch;

use crate::{
    athena::Athena,
    engine::{BytesRead, Engine},
    error::{DiskScope, Error, Forbidden, Limit, Result},
    format::{CsvWriter, batch_objects},
};

/// The state of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Running.
    Running,
    /// Finished; results are available.
    Succeeded,
    /// Failed; see `error`.
    Failed,
    /// Cancelled by its owner.
    Cancelled,
}

/// What an execution writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// JSON rows, paged through the API.
    Rows,
    /// A CSV file, downloaded.
    Csv,
}

/// A column of a result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Arrow type.
    #[serde(rename = "type")]
    pub ty: String,
}

/// A snapshot of an execution's status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Id.
    pub id: String,
    /// State.
    pub state: State,
    /// Output kind.
    pub output: Output,
    /// Rows written so far.
    pub rows: u64,
    /// Bytes of result written so far.
    pub bytes: u64,
    /// Bytes of Parquet read.
    pub bytes_scanned: u64,
    /// Data files scanned.
    pub files_scanned: u64,
    /// Share of the work done, 0 to 1 (an estimate from the bytes scanned; 1 when finished).
    pub progress: f64,
    /// Milliseconds since start (or until the end).
    pub elapsed_ms: u64,
    /// Columns of the result.
    pub columns: Vec<ColumnInfo>,
    /// Error code and message when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// When the result file is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// AWS mode: the Athena query execution id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub athena_query_id: Option<String>,
    /// AWS mode: a presigned URL of the CSV in S3 (the export's download link).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presigned_url: Option<String>,
    /// Whose it is (an opaque owner key; never serialized).
    #[serde(skip)]
    pub owner: String,
}

/// An error of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    /// Stable code: `invalid_sql`, `rejected`, `forbidden`, `limit_exceeded`, `cancelled`,
    /// `internal`.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl From<&Error> for ErrorInfo {
    fn from(e: &Error) -> Self {
        let code = match e {
            Error::Rejected(_) => "rejected",
            Error::Forbidden(_) => "forbidden",
            Error::Sql(_) | Error::AthenaSql { .. } => "invalid_sql",
            Error::BadCursor => "invalid_request",
            Error::Limit(_) => "limit_exceeded",
            Error::Cancelled => "cancelled",
            Error::Busy { .. } => "too_many_queries",
            Error::Location { .. } | Error::Store(_) | Error::Engine(_) | Error::Io { .. } | Error::Aws { .. } => {
                "internal"
            }
        };
        if !e.is_user_error() {
            // The details (paths of the server, say) go to the server's log, not to the caller.
            let id = &new_id()[..12];
            tracing::error!(error = %e, error_id = id, "query failed inside the server");
            let message = format!("the query failed inside the server (error {id}); the server's log has the details");
            return Self { code, message };
        }
        Self { code, message: e.to_string() }
    }
}

struct Entry {
    status: watch::Sender<Status>,
    path: PathBuf,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    started: Instant,
    owner: String,
    /// Bytes of the result file counted against the quotas.
    charged: std::sync::atomic::AtomicU64,
}

/// Disk taken by result files, per owner and in all.
#[derive(Debug, Default)]
struct Usage {
    per_owner: HashMap<String, u64>,
    total: u64,
}

/// Limits of executions.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Folder of result files.
    pub dir: PathBuf,
    /// How long results are kept after they finish.
    pub ttl: Duration,
    /// Largest result file, bytes.
    pub max_result_bytes: u64,
    /// Prefix CSV cells that could start a formula.
    pub protect_formulas: bool,
    /// Disk one owner's result files may take, bytes.
    pub quota_per_owner: u64,
    /// Disk all result files may take, bytes.
    pub quota_total: u64,
    /// Free space on the results' disk that results leave alone, bytes.
    pub reserve: u64,
    /// Executions one owner keeps (running or finished).
    pub max_per_owner: usize,
    /// Executions, searches and traces running at once.
    pub max_running: usize,
    /// Executions, searches and traces of one owner running at once.
    pub max_running_per_owner: usize,
}

impl ExecConfig {
    /// The default limits, with result files in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            ttl: Duration::from_secs(86_400),
            max_result_bytes: 16 << 30,
            protect_formulas: true,
            quota_per_owner: 16 << 30,
            quota_total: 64 << 30,
            reserve: 2 << 30,
            max_per_owner: 100,
            max_running: 16,
            max_running_per_owner: 4,
        }
    }
}

/// All executions of a server.
#[derive(Clone)]
pub struct Executions {
    engine: Engine,
    athena: Option<Athena>,
    config: ExecConfig,
    map: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    running: Arc<Slots>,
    usage: Arc<Mutex<Usage>>,
    /// The lock of this server's results folder.
    _lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for Executions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executions").field("dir", &self.config.dir).finish()
    }
}

/// An unguessable id: 122 random bits.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The files the plan's scans may read, with their sizes (a large file may be split into byte
/// ranges across partitions: it counts once).
fn scan_files(plan: &Arc<dyn ExecutionPlan>, files: &mut std::collections::HashMap<object_store::path::Path, u64>) {
    if let Some(cfg) =
        plan.downcast_ref::<DataSourceExec>().and_then(|ds| ds.data_source().downcast_ref::<FileScanConfig>())
    {
        files.extend(
            cfg.file_groups.iter().flat_map(|g| g.iter()).map(|f| (f.object_meta.location.clone(), f.object_meta.size)),
        );
    }
    for c in plan.children() {
        scan_files(c, files);
    }
}

impl Executions {
    /// Executions over `engine`, with result files in `config.dir`.
    pub fn new(engine: Engine, config: ExecConfig) -> Result<Self> {
        let io = |p: &Path, e: std::io::Error| Error::io(p)(e);
        std::fs::create_dir_all(&config.dir).map_err(|e| io(&config.dir, e))?;
        let swept = sweep(&config.dir);
        if swept > 0 {
            tracing::info!(files = swept, dir = %config.dir.display(), "deleted the result files of an earlier server");
        }
        // This server's results go to a folder of its own, locked while it runs: servers that
        // share a results folder (a query-only node beside an ingesting one) never sweep each
        // other's.
        let mine = config.dir.join(format!("server-{}", &new_id()[..12]));
        std::fs::create_dir_all(&mine).map_err(|e| io(&mine, e))?;
        let lock_path = mine.join("lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| io(&lock_path, e))?;
        lock.try_lock().map_err(|e| Error::io(&lock_path)(std::io::Error::other(e.to_string())))?;
        let running = Arc::new(Slots::new(config.max_running, config.max_running_per_owner));
        let config = ExecConfig { dir: mine, ..config };
        let me = Self {
            engine,
            athena: None,
            config,
            map: Arc::default(),
            running,
            usage: Arc::default(),
            _lock: Arc::new(lock),
        };
        let janitor = me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1).min(janitor.config.ttl)).await;
                janitor.expire();
            }
        });
        Ok(me)
    }

    /// Runs queries and exports on Athena instead of the DataFusion engine (AWS mode); search
    /// and trace stay on the engine.
    pub fn with_athena(mut self, athena: Athena) -> Self {
        self.athena = Some(athena);
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Deletes results past their expiry.
    pub fn expire(&self) {
        let now = Utc::now();
        let expired: Vec<Arc<Entry>> = {
            let mut map = self.map.lock().expect("lock");
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, e)| e.status.borrow().expires_at.is_some_and(|t| t <= now))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for e in expired {
            self.delete_result(&e);
        }
    }

    /// Deletes an execution's result file and gives its disk back to its owner.
    fn delete_result(&self, e: &Entry) {
        std::fs::remove_file(&e.path).ok();
        let bytes = e.charged.swap(0, std::sync::atomic::Ordering::Relaxed);
        let mut usage = self.usage.lock().expect("usage lock");
        usage.total -= bytes.min(usage.total);
        if let Some(n) = usage.per_owner.get_mut(&e.owner) {
            *n -= bytes.min(*n);
            if *n == 0 {
                usage.per_owner.remove(&e.owner);
            }
        }
    }

    /// Counts `bytes` more of `e`'s result against the quotas and the disk's reserve; refuses
    /// (and counts nothing) past any of them.
    fn charge(&self, e: &Entry, bytes: u64) -> Result<()> {
        let c = &self.config;
        let mut usage = self.usage.lock().expect("usage lock");
        let owner = usage.per_owner.get(&e.owner).copied().unwrap_or(0);
        let over = if owner + bytes > c.quota_per_owner {
            Some((DiskScope::Caller, c.quota_per_owner))
        } else if usage.total + bytes > c.quota_total {
            Some((DiskScope::Server, c.quota_total))
        } else if sluice_lake::write::free_bytes(&c.dir).is_some_and(|free| free < c.reserve + bytes) {
            Some((DiskScope::Reserve, c.reserve))
        } else {
            None
        };
        if let Some((scope, limit)) = over {
            return Err(Limit::Disk { scope, mib: limit >> 20, ttl_secs: c.ttl.as_secs() }.into());
        }
        usage.total += bytes;
        *usage.per_owner.entry(e.owner.clone()).or_default() += bytes;
        e.charged.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// A place for `owner`'s query, search or trace among those running, held until dropped.
    pub fn admit(&self, owner: &str) -> Result<Slot> {
        self.running.try_take(owner).map_err(|full| match full {
            Full::Caller(limit) => Error::Busy { per_caller: true, limit },
            Full::All(limit) => Error::Busy { per_caller: false, limit },
        })
    }

    /// Makes room for one more execution of `owner`: past [`ExecConfig::max_per_owner`], its
    /// oldest finished execution is forgotten and its result deleted.
    fn make_room(&self, owner: &str) {
        let oldest = {
            let mut map = self.map.lock().expect("lock");
            let mine: Vec<(&String, &Arc<Entry>)> = map.iter().filter(|(_, e)| e.owner == owner).collect();
            if mine.len() < self.config.max_per_owner {
                return;
            }
            let oldest = mine
                .iter()
                .filter(|(_, e)| e.status.borrow().state != State::Running)
                .min_by_key(|(_, e)| e.started)
                .map(|(id, _)| (*id).clone());
            oldest.and_then(|id| map.remove(&id))
        };
        if let Some(e) = oldest {
            self.delete_result(&e);
        }
    }

    /// Whether CSV exports neutralise formula cells unless a request says otherwise.
    pub fn protects_formulas(&self) -> bool {
        self.config.protect_formulas
    }

    /// Plans `sql` over the organizations of `scope` and starts running it for `owner`; errors
    /// of the SQL (syntax, unknown tables or columns, statements that are not queries) are
    /// returned at once. `protect_formulas` overrides the server's default for a CSV export.
    pub async fn start(
        &self,
        sql: &str,
        output: Output,
        owner: &str,
        scope: &Orgs,
        protect_formulas: Option<bool>,
        on_done: Option<Box<dyn FnOnce(Status) + Send>>,
    ) -> Result<Status> {
        let slot = self.admit(owner)?;
        let work = match &self.athena {
            Some(_) if *scope != Orgs::All => {
                return Err(Error::Forbidden(Forbidden::AthenaNeedsOperator));
            }
            Some(athena) => Work::Athena(athena.clone(), athena.start(sql).await?),
            None => {
                let (plan, task) = self.engine.scoped(scope.clone()).for_caller(owner).plan(sql).await?;
                Work::Plan(plan, task)
            }
        };
        let id = new_id();
        let ext = if output == Output::Csv { "csv" } else { "ndjson" };
        let path = self.config.dir.join(format!("{id}.{ext}"));
        let status = Status {
            id: id.clone(),
            state: State::Running,
            output,
            rows: 0,
            bytes: 0,
            bytes_scanned: 0,
            files_scanned: 0,
            progress: 0.0,
            elapsed_ms: 0,
            columns: Vec::new(),
            error: None,
            expires_at: None,
            athena_query_id: match &work {
                Work::Athena(_, q) => Some(q.clone()),
                Work::Plan(..) => None,
            },
            presigned_url: None,
            owner: owner.to_owned(),
        };
        let (tx, _) = watch::channel(status.clone());
        let entry = Arc::new(Entry {
            status: tx,
            path: path.clone(),
            task: Mutex::new(None),
            started: Instant::now(),
            owner: owner.to_owned(),
            charged: std::sync::atomic::AtomicU64::new(0),
        });
        self.make_room(owner);
        self.map.lock().expect("lock").insert(id, Arc::clone(&entry));
        let timeout = self.engine.config().timeout;
        let mut config = self.config.clone();
        config.protect_formulas = protect_formulas.unwrap_or(config.protect_formulas);
        let e2 = Arc::clone(&entry);
        let me = self.clone();
        let handle = tokio::spawn(async move {
            let _running = slot;
            let meter = Meter { executions: &me, entry: &e2 };
            let job = async {
                match work {
                    Work::Plan(plan, task) => run(plan, task, output, &path, &config, &meter).await,
                    Work::Athena(athena, query) => run_athena(&athena, &query, output, &path, &config, &meter).await,
                }
            };
            let result = tokio::time::timeout(timeout, job)
                .await
                .unwrap_or_else(|_| Err(Limit::Time { secs: timeout.as_secs(), planning: false }.into()));
            if result.is_err() {
                // A failed result is never downloaded: its disk goes back now, not at expiry.
                me.delete_result(&e2);
            }
            let ttl = chrono::Duration::from_std(config.ttl).unwrap_or(chrono::Duration::hours(24));
            e2.status.send_modify(|s| {
                s.elapsed_ms = e2.started.elapsed().as_millis() as u64;
                s.expires_at = Some(Utc::now() + ttl);
                match &result {
                    Ok(()) => s.state = State::Succeeded,
                    Err(err) => {
                        s.state = if matches!(err, Error::Cancelled) { State::Cancelled } else { State::Failed };
                        s.error = Some(ErrorInfo::from(err));
                    }
                }
            });
            if let Some(f) = on_done {
                f(e2.status.borrow().clone());
            }
        });
        *entry.task.lock().expect("lock") = Some(handle.abort_handle());
        Ok(status)
    }

    fn entry(&self, id: &str, owner: &str) -> Option<Arc<Entry>> {
        let map = self.map.lock().expect("lock");
        map.get(id).filter(|e| e.status.borrow().owner == owner).cloned()
    }

    /// The status of an execution, if it exists and belongs to `owner`.
    pub fn status(&self, id: &str, owner: &str) -> Option<Status> {
        let e = self.entry(id, owner)?;
        let mut s = e.status.borrow().clone();
        if s.state == State::Running {
            s.elapsed_ms = e.started.elapsed().as_millis() as u64;
        }
        Some(s)
    }

    /// A receiver of status changes.
    pub fn watch(&self, id: &str, owner: &str) -> Option<watch::Receiver<Status>> {
        Some(self.entry(id, owner)?.status.subscribe())
    }

    /// Cancels a running execution. Returns its status.
    pub fn cancel(&self, id: &str, owner: &str) -> Option<Status> {
        let e = self.entry(id, owner)?;
        if e.status.borrow().state == State::Running {
            if let Some(t) = e.task.lock().expect("lock").take() {
                t.abort();
            }
            self.delete_result(&e);
            let ttl = chrono::Duration::from_std(self.config.ttl).unwrap_or(chrono::Duration::hours(24));
            e.status.send_modify(|s| {
                s.state = State::Cancelled;
                s.error = Some(ErrorInfo::from(&Error::Cancelled));
                s.elapsed_ms = e.started.elapsed().as_millis() as u64;
                s.expires_at = Some(Utc::now() + ttl);
            });
        }
        Some(e.status.borrow().clone())
    }

    /// The result file of a finished execution.
    pub fn result_path(&self, id: &str, owner: &str) -> Option<PathBuf> {
        let e = self.entry(id, owner)?;
        (e.status.borrow().state == State::Succeeded).then(|| e.path.clone())
    }

    /// A page of rows from byte `offset` of a finished row result: rows and the next offset.
    pub fn page(
        &self,
        id: &str,
        owner: &str,
        offset: u64,
        page_size: usize,
    ) -> Option<Result<(Vec<serde_json::Value>, Option<u64>)>> {
        let path = self.result_path(id, owner)?;
        Some(read_page(&path, offset, page_size))
    }
}

fn read_page(path: &Path, offset: u64, page_size: usize) -> Result<(Vec<serde_json::Value>, Option<u64>)> {
    let io = |e: std::io::Error| Error::io(path)(e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if offset > len {
        return Err(Error::BadCursor);
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut r = BufReader::new(f);
    let mut rows = Vec::with_capacity(page_size);
    let mut pos = offset;
    let mut line = String::new();
    while rows.len() < page_size {
        line.clear();
        let n = r.read_line(&mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        rows.push(
            serde_json::from_str(&line)
                .map_err(|e| Error::io(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
        );
    }
    Ok((rows, (pos < len).then_some(pos)))
}

/// Counts an execution's result bytes against its limits as they are written.
struct Meter<'a> {
    executions: &'a Executions,
    entry: &'a Entry,
}

impl Meter<'_> {
    /// The result file now holds `bytes`: refused past the largest result, the quotas or the
    /// disk's reserve.
    fn account(&self, bytes: u64) -> Result<()> {
        let max = self.executions.config.max_result_bytes;
        if bytes > max {
            return Err(Limit::ResultSize { bytes: max }.into());
        }
        let charged = self.entry.charged.load(std::sync::atomic::Ordering::Relaxed);
        if bytes > charged { self.executions.charge(self.entry, bytes - charged) } else { Ok(()) }
    }
}

async fn run(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    output: Output,
    path: &Path,
    config: &ExecConfig,
    meter: &Meter<'_>,
) -> Result<()> {
    let entry = meter.entry;
    let scanned = Scanned::new(&plan, &task);
    let columns: Vec<ColumnInfo> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| ColumnInfo { name: f.name().clone(), ty: f.data_type().to_string() })
        .collect();
    entry.status.send_modify(|s| s.columns = columns);
    let mut stream = execute_stream(Arc::clone(&plan), task)?;
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    let mut csv = (output == Output::Csv)
        .then(|| CsvWriter::csv(BufWriter::new(file.try_clone().expect("dup")), config.protect_formulas));
    let mut json = (output == Output::Rows).then(|| BufWriter::new(file));
    let mut header = false;
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut last_report = std::time::Instant::now();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(w) = csv.as_mut() {
            w.write(&batch).map_err(Error::io(path))?;
            header = true;
            rows = w.rows;
            bytes = w.bytes;
        }
        if let Some(w) = json.as_mut() {
            write_json_rows(w, &batch, &mut rows, &mut bytes).map_err(Error::io(path))?;
        }
        meter.account(bytes)?;
        // A status update wakes every watcher of the execution: a few a second are enough.
        if last_report.elapsed() < REPORT_EVERY {
            continue;
        }
        last_report = std::time::Instant::now();
        report(entry, &scanned, rows, bytes, |read| {
            // Parquet bytes read of all the bytes the scan may read: an estimate that stays
            // below 1 until the end (projection and pruning read less than everything).
            if scanned.total == 0 { 0.0 } else { (read as f64 / scanned.total as f64).min(0.99) }
        });
    }
    if let Some(mut w) = csv {
        if !header {
            let schema = plan.schema();
            w.write_header(schema.fields().iter().map(|f| f.name().as_str())).map_err(Error::io(path))?;
            bytes = w.bytes;
        }
        w.finish().map_err(Error::io(path))?;
    }
    if let Some(mut w) = json {
        w.flush().map_err(Error::io(path))?;
    }
    report(entry, &scanned, rows, bytes, |_| 1.0);
    Ok(())
}

/// Appends a batch to a result file as one JSON object a line.
fn write_json_rows(w: &mut impl Write, batch: &RecordBatch, rows: &mut u64, bytes: &mut u64) -> std::io::Result<()> {
    for v in batch_objects(batch) {
        let mut line = serde_json::to_vec(&v)?;
        line.push(b'\n');
        *bytes += line.len() as u64;
        w.write_all(&line)?;
        *rows += 1;
    }
    Ok(())
}

/// What an execution runs.
enum Work {
    Plan(Arc<dyn ExecutionPlan>, Arc<TaskContext>),
    Athena(Athena, String),
}

/// Waits for an Athena query. Rows are read from its result CSV into the result file; a CSV
/// export hands out a presigned URL: of Athena's own file when formula protection is off,
/// otherwise of a protected copy the server writes to `exports/` beside Athena's results.
async fn run_athena(
    athena: &Athena,
    query: &str,
    output: Output,
    path: &Path,
    config: &ExecConfig,
    meter: &Meter<'_>,
) -> Result<()> {
    let entry = meter.entry;
    let _stop = athena.stop_on_drop(query);
    let finished = athena
        .wait(query, |scanned| {
            entry.status.send_modify(|s| s.bytes_scanned = scanned);
        })
        .await?;
    entry.status.send_modify(|s| {
        s.columns = finished.columns.iter().map(|(n, t)| ColumnInfo { name: n.clone(), ty: t.clone() }).collect();
        s.bytes_scanned = finished.bytes_scanned;
    });
    let expires_in = config.ttl;
    if output == Output::Csv && !config.protect_formulas {
        let url = athena.presigned_url(&finished, expires_in).await?;
        entry.status.send_modify(|s| {
            s.presigned_url = Some(url);
            s.progress = 1.0;
        });
        return Ok(());
    }
    let mut stream = athena.result_batches(&finished).await?;
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    if output == Output::Csv {
        let mut w = CsvWriter::csv(BufWriter::new(file), true);
        while let Some(batch) = stream.next().await {
            w.write(&batch?).map_err(Error::io(path))?;
            (rows, bytes) = (w.rows, w.bytes);
            meter.account(bytes)?;
            entry.status.send_modify(|s| (s.rows, s.bytes) = (rows, bytes));
        }
        if w.rows == 0 {
            w.write_header(finished.columns.iter().map(|(n, _)| n.as_str())).map_err(Error::io(path))?;
        }
        w.finish().map_err(Error::io(path))?;
        let url = athena.upload_export(&finished, path, expires_in).await?;
        std::fs::remove_file(path).ok();
        entry.status.send_modify(|s| {
            s.presigned_url = Some(url);
            s.bytes = bytes;
            s.progress = 1.0;
        });
        return Ok(());
    }
    let mut w = BufWriter::new(file);
    while let Some(batch) = stream.next().await {
        write_json_rows(&mut w, &batch?, &mut rows, &mut bytes).map_err(Error::io(path))?;
        meter.account(bytes)?;
        entry.status.send_modify(|s| (s.rows, s.bytes) = (rows, bytes));
    }
    w.flush().map_err(Error::io(path))?;
    entry.status.send_modify(|s| {
        (s.rows, s.bytes) = (rows, bytes);
        s.progress = 1.0;
    });
    Ok(())
}

/// Deletes what servers that stopped left in the results folder `dir`: the folders of servers
/// whose lock is free (`server-…/lock`; a running server holds its own), and result files of
/// earlier versions, which wrote straight into `dir` (32 hex digits, `.csv` or `.ndjson`).
/// Returns how many result files went.
fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut swept = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("server-") && e.file_type().is_ok_and(|t| t.is_dir()) {
            let free = std::fs::File::open(e.path().join("lock")).is_ok_and(|f| f.try_lock().is_ok());
            if free {
                swept += std::fs::read_dir(e.path()).map_or(0, |d| d.count().saturating_sub(1));
                std::fs::remove_dir_all(e.path()).ok();
            }
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else { continue };
        if stem.len() == 32
            && stem.bytes().all(|b| b.is_ascii_hexdigit())
            && matches!(ext, "csv" | "ndjson")
            && std::fs::remove_file(e.path()).is_ok()
        {
            swept += 1;
        }
    }
    swept
}

/// How often a running execution's status (rows, bytes, progress) is brought up to date.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What a running execution may read and has read so far: its scans' files and their bytes,
/// the bytes its session has read.
struct Scanned {
    files: u64,
    total: u64,
    read: Option<Arc<BytesRead>>,
}

impl Scanned {
    fn new(plan: &Arc<dyn ExecutionPlan>, task: &TaskContext) -> Self {
        let mut files = std::collections::HashMap::new();
        scan_files(plan, &mut files);
        Self {
            files: files.len() as u64,
            total: files.values().sum(),
            read: task.session_config().get_extension::<BytesRead>(),
        }
    }

    fn bytes(&self) -> u64 {
        self.read.as_ref().map_or(0, |r| r.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Publishes rows and bytes written, the bytes and files scanned, and the progress computed
/// from the bytes scanned.
fn report(entry: &Entry, scanned: &Scanned, rows: u64, bytes: u64, progress: impl Fn(u64) -> f64) {
    let read = scanned.bytes();
    entry.status.send_modify(|s| {
        s.rows = rows;
        s.bytes = bytes;
        s.bytes_scanned = read;
        s.files_scanned = scanned.files;
        s.progress = progress(read);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 31, item 10: a query whose file compaction deleted showed the tenant the server's
    /// absolute lake path. What fails inside the server is told with an id; the details go to
    /// the server's log.
    #[test]
    fn internal_errors_keep_their_details_in_the_servers_log() {
        let e = Error::Engine(Box::new(datafusion::error::DataFusionError::External(
            "Object at location /srv/sluice/lake/logs/environment=p/x.parquet not found".into(),
        )));
        let info = ErrorInfo::from(&e);
        assert_eq!(info.code, "internal");
        assert!(!info.message.contains("/srv/sluice"), "{}", info.message);
        assert!(info.message.contains("(error ") && info.message.contains("server's log"), "{}", info.message);
        let user = ErrorInfo::from(&Error::Sql(Box::new(datafusion::error::DataFusionError::Plan(
            "column x not found".into(),
        ))));
        assert_eq!((user.code, user.message.as_str()), ("invalid_sql", "Error during planning: column x not found"));
    }

    #[test]
    fn a_stopped_servers_results_are_swept_and_a_running_ones_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let dead = dir.path().join("server-dead");
        std::fs::create_dir(&dead).expect("dir");
        std::fs::write(dead.join("lock"), b"").expect("lock");
        std::fs::write(dead.join(format!("{}.csv", "a".repeat(32))), b"x").expect("result");
        let alive = dir.path().join("server-alive");
        std::fs::create_dir(&alive).expect("dir");
        let held = std::fs::File::create(alive.join("lock")).expect("lock");
        held.try_lock().expect("held by a running server");
        std::fs::write(dir.path().join(format!("{}.ndjson", "b".repeat(32))), b"x").expect("an older version's");
        std::fs::write(dir.path().join("notes.txt"), b"not ours").expect("a user's file");
        assert_eq!(sweep(dir.path()), 2);
        assert!(!dead.exists() && alive.exists() && dir.path().join("notes.txt").exists());
    }
}
