//! Compaction of closed hours, and the rule that makes its swap atomic for readers.
//!
//! Ingest writes one file per partition per flush, so a busy lake collects thousands of small
//! files; each costs a listing entry, a footer read and a zstd frame of its own. [`compact`]
//! merges the files of each partition folder whose hour is closed into files of a target size
//! (default 128 MiB). It never merges across folders.
//!
//! **The swap.** An object store cannot replace a set of files at once, so the swap is a rule
//! that every sluice reader applies to what it lists ([`LiveView`]): a merged file is named
//! `compacted-{uuid}.parquet`, and its Parquet key-value metadata `sluice.replaces` holds the
//! names of the files of its folder that it replaces (and what those replaced in turn). A file is
//! part of the lake unless a merged file of its folder names it. The merged file appears in one
//! step (a completed multipart upload on S3, a rename on disk), so a reader sees the old files or
//! the merged one, never both and never neither. The old files are deleted after a grace period
//! that lets queries which listed them before the swap finish reading them.
//!
//! **Crashes.** Before the merged file is complete nothing is visible (its staging file is not a
//! `.parquet` file); after that the lake reads the same whether or not the old files are deleted
//! yet, and the next run deletes what a crash left behind. One compactor runs at a time
//! ([`crate::lock::LakeLock`]: a `flock` on local disk, a lease with conditional writes on S3;
//! a crashed compactor's hold lapses by itself).
//!
//! Readers that list folders themselves (DuckDB, Athena) do not know the rule: between the swap
//! and the deletes they see both. The README says how to schedule compaction around that.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use arrow_array::{RecordBatch, new_null_array};
use arrow_schema::SchemaRef;
use chrono::{DateTime, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, path::Path};
use parquet::{
    arrow::{ArrowSchemaConverter, AsyncArrowWriter, ParquetRecordBatchStreamBuilder, async_writer::AsyncFileWriter},
    file::metadata::KeyValue,
};
use sluice_schemas::{FAR_TIME_MARK, Partition, Registry, is_far_time_file};

mod order;

use crate::{
    Lake,
    encode::{sorted_by_time, writer_options, writer_properties},
    error::{Error, Result},
    files::Summary,
    footer::LakeFile,
    live::{COMPACTED_PREFIX, LiveView, REPLACES_KEY, file_name, folder, is_compacted},
    lock::LakeLock,
};

/// Default size of a merged file.
pub const DEFAULT_TARGET_BYTES: u64 = 128 << 20;

/// Settings of a compaction run.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only hours that ended at least this long ago are compacted.
    pub older_than: Duration,
    /// Size of a merged file: files are merged until their total reaches it.
    pub target_bytes: u64,
    /// How long replaced files stay after the swap, for queries that listed them before it.
    pub grace: Duration,
    /// Report what would be merged without writing or deleting anything.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            older_than: Duration::from_secs(3600),
            target_bytes: DEFAULT_TARGET_BYTES,
            // Longer than a query of `sluice serve` may run (300 s by default), so no query
            // that listed the replaced files is still reading them when they go.
            grace: Duration::from_secs(330),
            dry_run: false,
        }
    }
}

/// What a compaction run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct CompactReport {
    /// Partition folders in the lake.
    pub folders: u64,
    /// Folders whose hour is closed.
    pub closed: u64,
    /// Folders where files were merged.
    pub compacted: u64,
    /// Live data files and their bytes before the run.
    pub files_before: u64,
    /// Bytes of those files.
    pub bytes_before: u64,
    /// Live data files after the run.
    pub files_after: u64,
    /// Bytes of those files.
    pub bytes_after: u64,
    /// Rows rewritten into merged files.
    pub rows: u64,
    /// Replaced files deleted (including those an earlier, interrupted run left).
    pub deleted: u64,
    /// Folders left as they were, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Default)]
pub struct CompactProgress {
    /// Folders looked at so far.
    pub folders_done: u64,
    /// Folders to look at.
    pub folders: u64,
    /// Bytes of input merged so far.
    pub bytes_merged: u64,
    /// What is happening, when it is not merging.
    pub phase: &'static str,
}

/// One partition folder of the lake.
struct Folder {
    path: String,
    closes: DateTime<Utc>,
    files: Vec<ObjectMeta>,
}

/// Merges the small files of closed hours (see the module documentation).
pub async fn compact(
    lake: &Lake,
    registry: &Registry,
    opts: &CompactOptions,
    mut progress: impl FnMut(&CompactProgress),
) -> Result<CompactReport> {
    let lock = if opts.dry_run { None } else { Some(LakeLock::acquire(lake, "compact").await?) };
    let result = match &lock {
        Some(l) => tokio::select! {
            r = run(lake, registry, opts, &mut progress) => r,
            () = l.lost() => Err(Error::LeaseLost),
        },
        None => run(lake, registry, opts, &mut progress).await,
    };
    if let Some(lock) = lock {
        lock.release().await?;
    }
    result
}

async fn run(
    lake: &Lake,
    registry: &Registry,
    opts: &CompactOptions,
    progress: &mut impl FnMut(&CompactProgress),
) -> Result<CompactReport> {
    let mut report = CompactReport::default();
    let mut state = CompactProgress { phase: "listing the lake", ..Default::default() };
    progress(&state);
    let logs = lake.key("logs");
    let logs_prefix = format!("{logs}/");
    let view = LiveView::new(Arc::clone(lake.store()));
    let all: Vec<ObjectMeta> = lake.store().list(Some(&logs)).try_collect().await?;
    let mut folders: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for m in all.into_iter().filter(|m| m.location.as_ref().ends_with(".parquet")) {
        folders.entry(folder(&m.location).to_owned()).or_default().push(m);
    }
    report.folders = folders.len() as u64;
    let now = Utc::now();
    let older_than = chrono::Duration::from_std(opts.older_than).unwrap_or(chrono::TimeDelta::MAX);
    let mut closed = Vec::new();
    let mut garbage: Vec<Path> = Vec::new();
    for (path, files) in folders {
        let live = view.live(files.clone()).await?;
        let live_names: BTreeSet<&str> = live.iter().map(|m| file_name(&m.location)).collect();
        garbage
            .extend(files.iter().filter(|m| !live_names.contains(file_name(&m.location))).map(|m| m.location.clone()));
        report.files_before += live.len() as u64;
        report.bytes_before += live.iter().map(|m| m.size).sum::<u64>();
        let Some(partition) = path.strip_prefix(&logs_prefix).and_then(Partition::parse_path) else {
            report.skipped.push((path, "not a partition folder".into()));
            continue;
        };
        let closes = hour_start(&partition) + chrono::Duration::hours(1);
        if closes.checked_add_signed(older_than).is_none_or(|t| t > now) {
            continue;
        }
        closed.push(Folder { path, closes, files: live });
    }
    report.closed = closed.len() as u64;
    report.files_after = report.files_before;
    report.bytes_after = report.bytes_before;
    state.folders = closed.len() as u64;
    state.phase = "merging";
    progress(&state);

    let schema: SchemaRef = Arc::new(registry.lake_arrow_schema());
    let mut replaced: Vec<Path> = Vec::new();
    for f in closed {
        let bins = bins(&f.files, opts.target_bytes);
        if !bins.is_empty() {
            report.compacted += 1;
        }
        for bin in bins {
            let in_bytes: u64 = bin.iter().map(|m| m.size).sum();
            if opts.dry_run {
                report.files_after -= bin.len() as u64 - 1;
                state.bytes_merged += in_bytes;
                continue;
            }
            match merge(lake, &view, &schema, &f.path, &bin).await {
                Ok(merged) => {
                    report.rows += merged.rows;
                    report.files_after -= bin.len() as u64 - 1;
                    report.bytes_after = report.bytes_after - in_bytes + merged.bytes;
                    replaced.extend(bin.iter().map(|m| m.location.clone()));
                }
                Err(e) => {
                    tracing::warn!(folder = %f.path, closes = %f.closes, error = %e, "folder left as it was");
                    report.skipped.push((f.path.clone(), e.to_string()));
                }
            }
            state.bytes_merged += in_bytes;
            progress(&state);
        }
        state.folders_done += 1;
        progress(&state);
    }
    if opts.dry_run {
        report.deleted = garbage.len() as u64;
        return Ok(report);
    }
    if !replaced.is_empty() && !opts.grace.is_zero() {
        state.phase = "waiting for queries that listed the old files";
        progress(&state);
        tokio::time::sleep(opts.grace).await;
    }
    replaced.extend(garbage);
    state.phase = "deleting replaced files";
    progress(&state);
    let n = replaced.len() as u64;
    let deleted: Vec<Path> = lake
        .store()
        .delete_stream(futures::stream::iter(replaced.into_iter().map(Ok)).boxed())
        .filter_map(|r| async move {
            match r {
                Ok(p) => Some(Ok(p)),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .try_collect()
        .await?;
    report.deleted = deleted.len() as u64;
    tracing::debug!(asked = n, deleted = report.deleted, "replaced files deleted");
    Ok(report)
}

fn hour_start(p: &Partition) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(i32::from(p.year), u32::from(p.month), u32::from(p.day), u32::from(p.hour), 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Groups a folder's live files, in name order, into runs whose total size stays within
/// `target`; only runs of two or more files are worth merging.
fn bins(files: &[ObjectMeta], target: u64) -> Vec<Vec<ObjectMeta>> {
    let mut sorted: Vec<&ObjectMeta> = files.iter().collect();
    sorted.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Vec::new();
    let mut bin: Vec<ObjectMeta> = Vec::new();
    let mut bytes = 0;
    for m in sorted {
        if !bin.is_empty() && bytes + m.size > target {
            out.push(std::mem::take(&mut bin));
            bytes = 0;
        }
        bytes += m.size;
        bin.push(m.clone());
    }
    out.push(bin);
    out.retain(|b| b.len() >= 2);
    out
}

struct Merged {
    rows: u64,
    bytes: u64,
}

/// Merges `bin` (files of the folder `folder`) into one new file and returns what it holds.
/// Nothing is visible until the new file is complete; the old files are not touched.
async fn merge(lake: &Lake, view: &LiveView, schema: &SchemaRef, folder: &str, bin: &[ObjectMeta]) -> Result<Merged> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for m in bin {
        names.insert(file_name(&m.location).to_owned());
        if is_compacted(&m.location) {
            names.extend(view.replaced_by(m).await?.iter().cloned());
        }
    }
    let replaces = serde_json::to_string(&names).map_err(|source| Error::Json { what: REPLACES_KEY.into(), source })?;
    let mut expected = 0u64;
    let mut sources = Vec::with_capacity(bin.len());
    for m in bin {
        let builder = ParquetRecordBatchStreamBuilder::new(LakeFile::new(lake.store(), m)).await?;
        expected += builder.metadata().file_metadata().num_rows() as u64;
        sources.push((m, builder));
    }
    let rows = usize::try_from(expected).unwrap_or(usize::MAX);
    // A merged file holds a record far from its hour when one of its files did.
    let far = if bin.iter().any(|m| is_far_time_file(file_name(&m.location))) { FAR_TIME_MARK } else { "" };
    let key = Path::from(format!("{folder}/{COMPACTED_PREFIX}{}{far}.parquet", uuid::Uuid::new_v4()));
    let store = Arc::clone(lake.store());
    // The rows of every file, in order of `time` (see `order`).
    let mut inputs: Vec<order::Sorted> = Vec::with_capacity(sources.len());
    let mut kept = 0;
    for (m, builder) in sources {
        let file_schema = Arc::clone(builder.schema());
        for f in file_schema.fields() {
            if schema.field_with_name(f.name()).is_err() {
                return Err(Error::Column {
                    file: m.location.to_string(),
                    column: f.name().clone(),
                    reason: "is not in the lake schema (was a log type removed?)".into(),
                });
            }
        }
        let sorted = sorted_by_time(builder.metadata());
        let (lake_schema, location) = (Arc::clone(schema), m.location.clone());
        let batches = builder
            .with_batch_size(if sorted { order::BATCH_ROWS } else { 8192 })
            .build()?
            .map(move |b| align(&b?, &lake_schema, &location));
        inputs.push(if sorted {
            batches.boxed()
        } else {
            let whole: Vec<RecordBatch> = batches.try_collect().await?;
            order::sort(schema, &whole, &mut kept)?
        });
    }
    let mut merged = order::Merge::new(Arc::clone(schema), inputs).await?;
    // On local disk the merged file is written beside its place (a `#` name, which listings
    // and `*.parquet` globs skip), made durable, then renamed into place: a crash never leaves
    // a torn merged file standing in for the files it replaces. On S3 a multipart upload
    // appears whole when completed.
    let staged = lake.local_root().map(|root| {
        let file = root.join(key.as_ref());
        let mut staged = file.clone().into_os_string();
        staged.push(format!("#compact-{}", uuid::Uuid::new_v4().simple()));
        (file, std::path::PathBuf::from(staged))
    });
    let sink = match &staged {
        Some((_, staged)) => Sink::Local(tokio::fs::File::create(staged).await.map_err(Error::io(staged))?),
        None => Sink::Store(object_store::buffered::BufWriter::new(Arc::clone(&store), key.clone())),
    };
    let mut sink = Some(sink);
    let parquet = ArrowSchemaConverter::new().convert(schema)?;
    // The writer is made for the first batch: its settings (which columns get a dictionary)
    // follow the data.
    let mut new_writer = |sample: &RecordBatch| {
        let props = writer_properties(sample, rows)
            .into_builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(REPLACES_KEY.to_owned(), replaces.clone())]))
            .build();
        let sink: Box<dyn AsyncFileWriter> = match sink.take().expect("one writer a merge") {
            Sink::Local(f) => Box::new(f),
            Sink::Store(w) => Box::new(w),
        };
        AsyncArrowWriter::try_new_with_options(sink, Arc::clone(schema), writer_options(props, parquet.clone(), true))
    };
    let mut writer = None;
    let mut written = 0u64;
    while let Some(batch) = merged.next().await? {
        written += batch.num_rows() as u64;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(new_writer(&batch)?),
        };
        w.write(&batch).await?;
    }
    let writer = match writer {
        Some(w) => w,
        None => new_writer(&RecordBatch::new_empty(Arc::clone(schema)))?,
    };
    let meta = writer.close().await?;
    let rows = meta.file_metadata().num_rows() as u64;
    if rows != expected || written != expected {
        // The merged file must not stand in for the old ones: take it away again.
        match &staged {
            Some((_, staged)) => tokio::fs::remove_file(staged).await.map_err(Error::io(staged))?,
            None => store.delete(&key).await?,
        }
        return Err(Error::RowCount { files: bin.len(), read: written, written: rows, expected });
    }
    if let Some((file, staged)) = staged {
        tokio::task::spawn_blocking(move || publish_staged(&staged, &file))
            .await
            .map_err(Error::task("publishing a merged file"))??;
    }
    let meta = store.head(&key).await?;
    // Its summary is kept for readers, like those of the files ingest writes.
    if let Some(written) = lake.written()
        && let Ok(summary) = Summary::read(&store, &meta).await
    {
        written.keep(key.as_ref(), summary);
    }
    Ok(Merged { rows, bytes: meta.size })
}

/// Where a merged file is written.
enum Sink {
    /// Its staged file on local disk.
    Local(tokio::fs::File),
    /// A multipart upload.
    Store(object_store::buffered::BufWriter),
}

/// Makes a staged merged file durable, renames it to `file` and makes the rename durable.
fn publish_staged(staged: &std::path::Path, file: &std::path::Path) -> Result<()> {
    std::fs::File::open(staged).and_then(|f| f.sync_all()).map_err(Error::io(staged))?;
    std::fs::rename(staged, file).map_err(Error::io(file))?;
    let dir = file.parent().unwrap_or(file);
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir))
}

/// A batch of a data file in the columns of the lake schema: a column the file lacks (it was
/// written before the column existed) is all nulls.
fn align(batch: &RecordBatch, schema: &SchemaRef, file: &Path) -> Result<RecordBatch> {
    let have = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match have.column_with_name(f.name()) {
            Some((i, h)) if h.data_type() == f.data_type() => Ok(Arc::clone(batch.column(i))),
            Some((_, h)) => Err(Error::Column {
                file: file.to_string(),
                column: f.name().clone(),
                reason: format!("is {} there but {} in the lake schema", h.data_type(), f.data_type()),
            }),
            None if f.is_nullable() => Ok(new_null_array(f.data_type(), batch.num_rows())),
            None => Err(Error::Column {
                file: file.to_string(),
                column: f.name().clone(),
                reason: "is required but missing".into(),
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, size: u64) -> ObjectMeta {
        ObjectMeta { location: Path::from(name), last_modified: Utc::now(), size, e_tag: None, version: None }
    }

    #[test]
    fn bins_stay_within_the_target_and_skip_lone_files() {
        let files = [meta("d/a", 40), meta("d/b", 40), meta("d/c", 40), meta("d/big", 500), meta("d/e", 10)];
        let names = |b: &Vec<ObjectMeta>| b.iter().map(|m| file_name(&m.location).to_owned()).collect::<Vec<_>>();
        let out: Vec<Vec<String>> = bins(&files, 100).iter().map(names).collect();
        // Name order: a, b, big, c, e → [a, b] (80), [big] alone, [c, e] (50).
        assert_eq!(out, vec![vec!["a", "b"], vec!["c", "e"]]);
        assert!(bins(&[meta("d/a", 10)], 100).is_empty());
    }
}
