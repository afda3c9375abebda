//! `sluice import`: bulk backfill of NDJSON (optionally `.gz`) and CSV files straight into the lake,
//! through the same transform and layout as live ingest, without a server.
//!
//! A registry of imported files (`_sluice/imports/{sha256}.json`: path, size, content hash, counts)
//! makes importing the same content twice a no-op. File names derive from the content hash and
//! line range, so an import that failed half-way and is run again rewrites the same files.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
    sync::Arc,
};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::{ObjectStoreExt, path::Path as Key};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, Orgs, record_id_at};

use sluice_lake::{
    Lake,
    error_record::ErrorRecord,
    write::{StagedFile, commit_groups},
};
use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    batch::{Batcher, BufferHints, Item},
    error::{Error, Result},
    stream::{check_org, default_concurrent_writes},
};

/// The registry entry of one imported file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Imported {
    /// The path it was imported from.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// Records read.
    pub records: u64,
    /// Records accepted.
    pub accepted: u64,
    /// Records rejected (in `errors/`).
    pub rejected: u64,
    /// Data files written.
    pub files: u64,
    /// When, RFC 3339.
    pub imported_at: String,
}

/// What importing one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Imported now.
    Imported(Imported),
    /// The same content was imported before.
    AlreadyImported(Imported),
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(Error::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finalize().iter().map(|b| format!("{b:02x}")).collect(), size))
}

fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let f = File::open(path).map_err(Error::io(path))?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

fn is_csv(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".csv") || name.ends_with(".csv.gz")
}

/// A CSV cell as a JSON value: empty cells are left out; `true`/`false` are booleans; JSON objects
/// and arrays are parsed; integers in `time` and the hour fields are numbers; all else is text.
fn csv_cell(field: &str, cell: &str) -> Option<Value> {
    if cell.is_empty() {
        return None;
    }
    if matches!(cell, "true" | "false") {
        return Some(Value::Bool(cell == "true"));
    }
    if cell.starts_with(['{', '['])
        && let Ok(v) = serde_json::from_str::<Value>(cell)
    {
        return Some(v);
    }
    if matches!(field, "time" | "year" | "month" | "day" | "hour")
        && cell.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = cell.parse::<i64>()
    {
        return Some(Value::from(n));
    }
    Some(Value::String(cell.to_owned()))
}

/// Reads the rows of a CSV file (a header row, then one record a row) as JSON records with
/// their 1-based row number; `path` names the file in errors.
fn for_each_csv_record(input: impl Read, path: &Path, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
    let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let headers: Vec<String> =
        r.headers().map_err(|source| Error::Csv { path: path.to_owned(), source })?.iter().map(str::to_owned).collect();
    let mut rec = csv::StringRecord::new();
    let (mut row, mut n) = (1u64, 0u64);
    let mut buf = Vec::new();
    while r.read_record(&mut rec).map_err(|source| Error::Csv { path: path.to_owned(), source })? {
        row += 1;
        let mut m = Map::new();
        for (h, cell) in headers.iter().zip(rec.iter()) {
            if let Some(v) = csv_cell(h, cell) {
                m.insert(h.clone(), v);
            }
        }
        buf.clear();
        serde_json::to_writer(&mut buf, &m)
            .map_err(|source| Error::Json { what: path.display().to_string(), source })?;
        f(row, &buf)?;
        n += 1;
    }
    Ok(n)
}

/// The fuzz target `csv_import` (`fuzz/`, [`sluice_schemas::fuzz`]): any bytes as a CSV file
/// give records that are JSON objects, with row numbers that grow, each of which the transform
/// accepts or rejects; or an error; never a panic.
pub fn fuzz_csv(data: &[u8]) {
    let p = Partitioner::default();
    let ctx = Context { record_id: record_id_at("fuzz", 0), arrival_micros: 1_700_000_000_000_000 };
    let mut last = 1;
    let _ = for_each_csv_record(data, Path::new("fuzz.csv"), |row, json| {
        assert!(row > last, "row numbers grow");
        last = row;
        let v: Value = serde_json::from_slice(json).expect("a record is JSON");
        assert!(v.is_object(), "a record is an object");
        let _ = p.transform(json, &ctx);
        Ok(())
    });
}

/// Reads records (raw JSON bytes with their 1-based line or row number) from a file.
fn for_each_record(path: &Path, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
    let mut n = 0u64;
    if is_csv(path) {
        n = for_each_csv_record(open_text(path)?, path, f)?;
    } else {
        let mut input = open_text(path)?;
        let mut line = Vec::new();
        let mut no = 0u64;
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line).map_err(Error::io(path))? == 0 {
                break;
            }
            no += 1;
            let content = line.strip_suffix(b"\n").unwrap_or(&line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            f(no, content)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes rows and error records through a batcher, flushing the oldest buffers when the memory
/// budget is reached. Used by import and replay.
///
/// Files are encoded on every core ([`default_concurrent_writes`] at a time), and on a local lake on
/// Linux committed in groups as `serve` commits them ([`commit_groups`]: staged unsynced, one
/// `syncfs` for every file staged meanwhile, then renamed into place). A file the group commit
/// could not publish is written again the one-by-one way. [`LakeWriter::finish`] returns when
/// every file is durable and in place. The budget is for the rows buffered; the files on their
/// way (being encoded, or waiting for their sync) hold at most half as much again.
pub(crate) struct LakeWriter<'a> {
    pub lake: &'a Lake,
    registry: sluice_schemas::Registry,
    schema: SchemaRef,
    batcher: Batcher,
    budget: u64,
    prefix: String,
    pub files: u64,
    pub error_files: u64,
    running: JoinSet<Result<Written>>,
    parallel: usize,
    /// Bytes of the jobs in `running`.
    in_flight: u64,
    commit: Option<GroupCommit>,
}

/// A file encoded and written (durably, or staged for the group commit).
struct Written {
    key: Key,
    bytes: Bytes,
    staged: Option<StagedFile>,
    /// The job's size estimate, counted in `in_flight` until now.
    job_bytes: u64,
}

/// The group commit of a [`LakeWriter`]: what it sent, kept until answered.
struct GroupCommit {
    device: u64,
    staged: mpsc::UnboundedSender<(u64, StagedFile)>,
    done: mpsc::UnboundedReceiver<Vec<(u64, bool)>>,
    task: tokio::task::JoinHandle<()>,
    waiting: HashMap<u64, (Key, Bytes)>,
    waiting_bytes: u64,
    next_id: u64,
}

impl<'a> LakeWriter<'a> {
    pub fn new(lake: &'a Lake, partitioner: &Partitioner, budget: u64, prefix: String) -> Self {
        let registry = partitioner.contract().registry.clone();
        let commit = lake.local_root().zip(lake.group_commit_device()).map(|(root, device)| {
            let (staged, staged_rx) = mpsc::unbounded_channel();
            let (done_tx, done) = mpsc::unbounded_channel();
            let task = tokio::spawn(commit_groups(root.to_path_buf(), staged_rx, done_tx));
            GroupCommit { device, staged, done, task, waiting: HashMap::new(), waiting_bytes: 0, next_id: 0 }
        });
        Self {
            lake,
            schema: Arc::new(registry.lake_arrow_schema()),
            registry,
            batcher: Batcher::new(BufferHints { size_bytes: 128 << 20, interval: std::time::Duration::MAX }),
            budget: budget.max(1 << 20),
            prefix,
            files: 0,
            error_files: 0,
            running: JoinSet::new(),
            parallel: default_concurrent_writes(),
            in_flight: 0,
            commit,
        }
    }

    /// The same writer writing at most `n` files at once.
    pub fn with_parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// Bytes of the files on their way: being encoded, or waiting for their sync.
    fn on_the_way(&self) -> u64 {
        self.in_flight + self.commit.as_ref().map_or(0, |c| c.waiting_bytes)
    }

    /// Adds an item. Which rows go into which file depends on the input and the budget alone (the
    /// oldest buffer is written when the rows buffered pass the budget), never on how fast files
    /// are written, so an import run again writes the same file names.
    pub async fn add(&mut self, seq: u64, item: Item) -> Result<()> {
        if let Some(job) = self.batcher.add(seq, item) {
            self.write(job).await?;
        }
        while self.batcher.bytes() > self.budget {
            let Some(job) = self.batcher.take_oldest() else { break };
            self.write(job).await?;
        }
        Ok(())
    }

    /// Starts encoding and writing `job` once fewer than [`Self::parallel`] jobs are running and the files
    /// on their way hold at most half the budget.
    async fn write(&mut self, job: crate::batch::Job) -> Result<()> {
        while self.running.len() >= self.parallel || self.on_the_way() > self.budget / 2 {
            if !self.running.is_empty() {
                self.complete_one().await?;
            } else if !self.take_answers(true).await? {
                break;
            }
        }
        match job.target {
            crate::batch::Target::Data { .. } => self.files += 1,
            crate::batch::Target::Errors { .. } => self.error_files += 1,
        }
        self.in_flight += job.bytes;
        let (lake, registry, schema, prefix) =
            (self.lake.clone(), self.registry.clone(), self.schema.clone(), self.prefix.clone());
        let device = self.commit.as_ref().map(|c| c.device);
        self.running.spawn(async move {
            let job_bytes = job.bytes;
            let encoder = lake.clone();
            let (key, bytes) = tokio::task::spawn_blocking(move || job.encode(&encoder, &registry, &schema, &prefix))
                .await
                .map_err(Error::task("encoding a file"))??;
            let staged = match device {
                Some(device) => lake.stage(&key, bytes.clone(), device).await?,
                None => {
                    lake.put(&key, bytes.clone()).await?;
                    None
                }
            };
            Ok(Written { key, bytes, staged, job_bytes })
        });
        Ok(())
    }

    /// Waits for one running job; hands a staged file to the group commit.
    async fn complete_one(&mut self) -> Result<()> {
        let Some(done) = self.running.join_next().await else { return Ok(()) };
        let w = done.map_err(Error::task("writing a file"))??;
        self.in_flight -= w.job_bytes;
        if let (Some(staged), Some(c)) = (w.staged, self.commit.as_mut()) {
            c.next_id += 1;
            c.waiting_bytes += w.bytes.len() as u64;
            c.waiting.insert(c.next_id, (w.key, w.bytes));
            if let Err(mpsc::error::SendError((id, staged))) = c.staged.send((c.next_id, staged)) {
                // The commit task is gone: this file goes in the one-by-one way.
                drop(staged);
                let (key, bytes) = c.waiting.remove(&id).expect("just added");
                c.waiting_bytes -= bytes.len() as u64;
                self.lake.put(&key, bytes).await?;
            }
        }
        self.take_answers(false).await?;
        Ok(())
    }

    /// Takes the group commit's answers: all there are now, or (`wait`) the next one. A file it
    /// could not publish is written the one-by-one way. Whether any answer came.
    async fn take_answers(&mut self, wait: bool) -> Result<bool> {
        let Some(c) = self.commit.as_mut() else { return Ok(false) };
        let mut again = Vec::new();
        let mut any = false;
        loop {
            let answers = if wait && !any {
                match c.done.recv().await {
                    Some(a) => a,
                    None => break,
                }
            } else {
                match c.done.try_recv() {
                    Ok(a) => a,
                    Err(_) => break,
                }
            };
            any = true;
            for (id, published) in answers {
                let Some((key, bytes)) = c.waiting.remove(&id) else { continue };
                c.waiting_bytes -= bytes.len() as u64;
                if !published {
                    again.push((key, bytes));
                }
            }
        }
        for (key, bytes) in again {
            self.lake.put(&key, bytes).await?;
        }
        Ok(any)
    }

    /// Writes what is buffered and returns when every file is durable and in place.
    pub async fn finish(&mut self) -> Result<()> {
        for job in self.batcher.drain() {
            self.write(job).await?;
        }
        while !self.running.is_empty() {
            self.complete_one().await?;
        }
        let Some(mut c) = self.commit.take() else { return Ok(()) };
        drop(c.staged);
        while let Some(answers) = c.done.recv().await {
            for (id, published) in answers {
                let Some((key, bytes)) = c.waiting.remove(&id) else { continue };
                if !published {
                    self.lake.put(&key, bytes).await?;
                }
            }
        }
        c.task.await.map_err(Error::task("the group commit"))?;
        // Whatever the commit task did not answer (it ended early) is written one by one.
        for (_, (key, bytes)) in c.waiting.drain() {
            self.lake.put(&key, bytes).await?;
        }
        Ok(())
    }
}

/// Records read but not yet transformed: their line numbers and raw bytes.
#[derive(Default)]
struct RawChunk {
    lines: Vec<u64>,
    ends: Vec<usize>,
    data: Vec<u8>,
}

impl RawChunk {
    fn push(&mut self, line: u64, raw: &[u8]) {
        self.data.extend_from_slice(raw);
        self.lines.push(line);
        self.ends.push(self.data.len());
    }

    /// 4,096 records or 4 MiB, whichever comes first.
    fn is_full(&self) -> bool {
        self.lines.len() >= 4096 || self.data.len() >= 4 << 20
    }

    /// Each record through the transform: a row with its partition, an error record, or nothing
    /// (dropped).
    fn transform(self, partitioner: &Partitioner, source: &str, arrival: i64, orgs: &Orgs) -> Vec<(u64, Item)> {
        let mut start = 0;
        let mut items = Vec::with_capacity(self.lines.len());
        for (&line, &end) in self.lines.iter().zip(&self.ends) {
            let raw = &self.data[start..end];
            start = end;
            let ctx = Context { record_id: record_id_at(source, line), arrival_micros: arrival };
            let item = match partitioner.transform(raw, &ctx) {
                Outcome::Ok { partition, row } => {
                    match check_org(Item::Row { partition, row, size: raw.len() as u64 + 256 }, orgs) {
                        Ok(item) => item,
                        Err(r) => Item::Error(ErrorRecord::from_rejection(raw, arrival, &r)),
                    }
                }
                Outcome::Dropped => continue,
                Outcome::ProcessingFailed(r) => Item::Error(ErrorRecord::from_rejection(raw, arrival, &r)),
            };
            items.push((line, item));
        }
        items
    }
}

/// Imports one file. `progress` is called with the number of records read so far.
pub async fn import_file(
    lake: &Lake,
    partitioner: &Partitioner,
    path: &Path,
    memory_budget: u64,
    progress: impl FnMut(u64),
) -> Result<ImportOutcome> {
    let p = path.to_owned();
    let (sha, size) =
        tokio::task::spawn_blocking(move || sha256_file(&p)).await.map_err(Error::task("hashing the file"))??;
    let reg_key = lake.key(&format!("_sluice/imports/{sha}.json"));
    match lake.store().get(&reg_key).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            let prev: Imported = serde_json::from_slice(&bytes)
                .map_err(|source| Error::Json { what: format!("import registry {reg_key}"), source })?;
            return Ok(ImportOutcome::AlreadyImported(prev));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let run = ImportRun {
        budget: memory_budget,
        orgs: Orgs::All,
        key: sha.clone(),
        names: format!("import-{}", &sha[..16]),
        in_flight: 2 * std::thread::available_parallelism().map_or(2, usize::from),
        writes: default_concurrent_writes(),
    };
    let entry = run.run(lake, partitioner, path, (&sha, size), progress, |_, _| {}).await?;
    let json =
        serde_json::to_vec_pretty(&entry).map_err(|source| Error::Json { what: "import registry".into(), source })?;
    lake.put(&reg_key, Bytes::from(json)).await?;
    Ok(ImportOutcome::Imported(entry))
}

/// How one import runs: its memory, whose records it may write, and the names of what it makes.
#[derive(Debug, Clone)]
pub struct ImportRun {
    /// Memory for buffered rows, bytes.
    pub budget: u64,
    /// The organizations its records may name (others are `forbidden_organization`).
    pub orgs: Orgs,
    /// What its record ids derive from (the same key and line give the same id).
    pub key: String,
    /// The prefix of its files' names (the same prefix and lines give the same names).
    pub names: String,
    /// Chunks of records (4,096 or 4 MiB each) being transformed at once.
    pub in_flight: usize,
    /// Files encoded and written at once.
    pub writes: usize,
}

impl ImportRun {
    /// Imports the file at `path` (`content`: its hash and size): every record
    /// through the transform into the lake, `progress` told the records read so far and
    /// `on_rejected` each rejected record with its line. Returns what it did; writes no registry.
    pub async fn run(
        self,
        lake: &Lake,
        partitioner: &Partitioner,
        path: &Path,
        (sha, size): (&str, u64),
        mut progress: impl FnMut(u64),
        mut on_rejected: impl FnMut(u64, &ErrorRecord),
    ) -> Result<Imported> {
        let arrival = chrono::Utc::now().timestamp_micros();
        let mut writer = LakeWriter::new(lake, partitioner, self.budget, self.names.clone()).with_parallel(self.writes);
        let (mut accepted, mut rejected) = (0u64, 0u64);
        // Read on a blocking thread in chunks, transform the chunks on every core, and write them
        // from here in the file's order (so the same file gives the same files, whatever the timing).
        let (tx, mut rx) = mpsc::channel::<tokio::task::JoinHandle<Vec<(u64, Item)>>>(self.in_flight);
        let p = path.to_owned();
        let part = Arc::new(partitioner.clone());
        let source: Arc<str> = format!("import:{}", self.key).into();
        let orgs = Arc::new(self.orgs);
        let rt = tokio::runtime::Handle::current();
        let reader = tokio::task::spawn_blocking(move || {
            let mut chunk = RawChunk::default();
            let send = |chunk: RawChunk| {
                let (part, source, orgs) = (Arc::clone(&part), Arc::clone(&source), Arc::clone(&orgs));
                let job = rt.spawn_blocking(move || chunk.transform(&part, &source, arrival, &orgs));
                tx.blocking_send(job).map_err(|_| Error::Stopped("the import's writer"))
            };
            let res = for_each_record(&p, |line, raw| {
                chunk.push(line, raw);
                if chunk.is_full() {
                    send(std::mem::take(&mut chunk))?;
                }
                Ok(())
            });
            // On an error the writer sees the channel close, and the error comes from this task.
            if res.is_ok() {
                send(chunk).ok();
            }
            res
        });
        let mut read = 0u64;
        while let Some(job) = rx.recv().await {
            for (line, item) in job.await.map_err(Error::task("transforming records"))? {
                match &item {
                    Item::Row { .. } => accepted += 1,
                    Item::Error(e) => {
                        rejected += 1;
                        on_rejected(line, e);
                    }
                }
                writer.add(line, item).await?;
                read += 1;
            }
            progress(read);
        }
        let records = reader.await.map_err(Error::task("reading the file"))??;
        writer.finish().await?;
        let entry = Imported {
            path: path.display().to_string(),
            size,
            sha256: sha.to_owned(),
            records,
            accepted,
            rejected,
            files: writer.files,
            imported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::ObjectStore;

    use super::*;

    /// A small budget makes the writer flush early and wait on its running jobs and on the group
    /// commit; every row still lands, in place, durable, and nothing staged is left behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_under_a_small_budget_writes_every_row_in_place() {
        let dir = tempfile::tempdir().expect("tmp");
        let lake = Lake::open(dir.path().join("lake").to_str().expect("utf8")).await.expect("lake");
        assert!(lake.group_commit_device().is_some(), "this test is about the group commit (Linux)");
        let file = dir.path().join("in.ndjson");
        let mut text = String::new();
        for i in 0..6000 {
            let (org, hour) = (i % 30, i % 48);
            text.push_str(&format!(
                "{{\"organizationID\":\"{org}\",\"environment\":\"prod\",\"logType\":\"web\",\
                 \"time\":\"2025-01-0{}T{:02}:00:00Z\",\"detail\":\"{}\"}}\n",
                1 + hour / 24,
                hour % 24,
                "x".repeat(200)
            ));
        }
        text.push_str("{\"organizationID\":\"1\"}\n");
        std::fs::write(&file, text).expect("write");
        let ImportOutcome::Imported(entry) =
            import_file(&lake, &Partitioner::default(), &file, 1 << 20, |_| {}).await.expect("import")
        else {
            panic!("a new file is imported")
        };
        assert_eq!((entry.records, entry.accepted, entry.rejected), (6001, 6000, 1));
        let store = lake.store().clone();
        let listed: Vec<_> = store.list(Some(&lake.key("logs"))).try_collect().await.expect("list");
        assert_eq!(listed.len() as u64, entry.files);
        // (org, hour) repeats every 240 records: 240 partitions of 25 rows each.
        assert!(entry.files > 240, "a 1 MiB budget writes some partitions more than once: {}", entry.files);
        let mut rows = 0;
        for m in &listed {
            rows += sluice_lake::read_footer(&store, m).await.expect("footer").file_metadata().num_rows();
        }
        assert_eq!(rows, 6000);
        let staged = walk(dir.path()).into_iter().filter(|p| p.to_string_lossy().contains('#')).count();
        assert_eq!(staged, 0, "staged files left behind");
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn committed_fuzz_inputs_of_the_csv_import() {
        let inputs = sluice_schemas::fuzz::committed_inputs("csv_import");
        assert!(inputs.len() >= 3, "the corpus of fuzz/corpus/csv_import is missing");
        for (path, bytes) in inputs {
            assert!(std::panic::catch_unwind(|| fuzz_csv(&bytes)).is_ok(), "{} breaks the CSV import", path.display());
        }
    }
}
