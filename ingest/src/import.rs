//! `sluice import`: bulk backfill of NDJSON (optionally `.gz`) and CSV files straight into the lake,
//! through the same transform and layout as live ingest, without a server.
//!
//! A registry of imported files (`_sluice/imports/{sha256}.json`: path, size, content hash, counts)
//! makes importing the same content twice a no-op. File names derive from the content hash and
//! line range, so an import that failed half-way and is run again rewrites the same files.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
    sync::Arc,
};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, record_id_at};

use sluice_lake::{Lake, error_record::ErrorRecord};

use crate::{
    batch::{Batcher, BufferHints, Item},
    error::{Error, Result},
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
pub(crate) struct LakeWriter<'a> {
    pub lake: &'a Lake,
    pub registry: sluice_schemas::Registry,
    pub schema: SchemaRef,
    pub batcher: Batcher,
    pub budget: u64,
    pub prefix: String,
    pub files: u64,
    pub error_files: u64,
}

impl<'a> LakeWriter<'a> {
    pub fn new(lake: &'a Lake, partitioner: &Partitioner, budget: u64, prefix: String) -> Self {
        let registry = partitioner.contract().registry.clone();
        Self {
            lake,
            schema: Arc::new(registry.lake_arrow_schema()),
            registry,
            batcher: Batcher::new(BufferHints { size_bytes: 128 << 20, interval: std::time::Duration::MAX }),
            budget: budget.max(1 << 20),
            prefix,
            files: 0,
            error_files: 0,
        }
    }

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

    async fn write(&mut self, job: crate::batch::Job) -> Result<()> {
        job.write(self.lake, &self.registry, &self.schema, &self.prefix).await?;
        match job.target {
            crate::batch::Target::Data { .. } => self.files += 1,
            crate::batch::Target::Errors { .. } => self.error_files += 1,
        }
        Ok(())
    }

    pub async fn finish(&mut self) -> Result<()> {
        for job in self.batcher.drain() {
            self.write(job).await?;
        }
        Ok(())
    }
}

/// Imports one file. `progress` is called with the number of records read so far.
pub async fn import_file(
    lake: &Lake,
    partitioner: &Partitioner,
    path: &Path,
    memory_budget: u64,
    mut progress: impl FnMut(u64),
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
    let arrival = chrono::Utc::now().timestamp_micros();
    let mut writer = LakeWriter::new(lake, partitioner, memory_budget, format!("import-{}", &sha[..16]));
    let (mut accepted, mut rejected) = (0u64, 0u64);
    // Parse on a blocking thread, in chunks, and write from here.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u64, Item)>>(4);
    let p = path.to_owned();
    let part = partitioner.clone();
    let source = format!("import:{sha}");
    let reader = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(4096);
        let res = for_each_record(&p, |line, raw| {
            let ctx = Context { record_id: record_id_at(&source, line), arrival_micros: arrival };
            let item = match part.transform(raw, &ctx) {
                Outcome::Ok { partition, row } => Item::Row { partition, row, size: raw.len() as u64 + 256 },
                Outcome::Dropped => return Ok(()),
                Outcome::ProcessingFailed(r) => Item::Error(ErrorRecord::from_rejection(raw, arrival, &r)),
            };
            chunk.push((line, item));
            if chunk.len() >= 4096 {
                tx.blocking_send(std::mem::take(&mut chunk)).map_err(|_| Error::Stopped("the import's writer"))?;
            }
            Ok(())
        });
        // On an error the writer sees the channel close, and the error comes from this task.
        if res.is_ok() {
            tx.blocking_send(chunk).ok();
        }
        res
    });
    let mut read = 0u64;
    while let Some(chunk) = rx.recv().await {
        for (line, item) in chunk {
            match &item {
                Item::Row { .. } => accepted += 1,
                Item::Error(_) => rejected += 1,
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
        sha256: sha,
        records,
        accepted,
        rejected,
        files: writer.files,
        imported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let json =
        serde_json::to_vec_pretty(&entry).map_err(|source| Error::Json { what: "import registry".into(), source })?;
    lake.put(&reg_key, Bytes::from(json)).await?;
    Ok(ImportOutcome::Imported(entry))
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_fuzz_inputs_of_the_csv_import() {
        let inputs = sluice_schemas::fuzz::committed_inputs("csv_import");
        assert!(inputs.len() >= 3, "the corpus of fuzz/corpus/csv_import is missing");
        for (path, bytes) in inputs {
            assert!(
                std::panic::catch_unwind(|| super::fuzz_csv(&bytes)).is_ok(),
                "{} breaks the CSV import",
                path.display()
            );
        }
    }
}
