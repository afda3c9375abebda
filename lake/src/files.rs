//! What a reader of the lake keeps between queries: the listing of its data files, and a summary
//! of each file (the range of its records' `time`, the bloom filters of its transaction ids).
//! A needle lookup (`transaction_id = …`) or a query over a few hours then reads the footer of
//! no file it cannot need, rather than every footer of the lake.
//!
//! ```text
//! FileIndex::list(folder)    the live files under a folder (always current, see below)
//! FileIndex::summaries(files) a Summary a file, read once from its footer and kept
//! Summary::overlaps(lo, hi)   may a record of the file have a time in [lo, hi]?
//! Summary::may_hold(id)       may the file hold transaction `id` (a record's or an event's)?
//! ```
//!
//! **The listing is never stale.** On an object store it is the store's listing, every time. On
//! a local lake each folder's entries are kept with the folder's modification time, and a folder
//! is read again when that time changes: every change to a folder's entries (a file renamed into
//! it, a file deleted by compaction, a new subfolder) sets its modification time. A time that a
//! later change could repeat (the clock's granularity, at most a few milliseconds) is not
//! trusted: a folder modified less than [`SETTLED`] before it was read is read again every
//! time, until its time is older than that.
//!
//! **A summary is of one file, and files never change** once in place (sluice writes each file
//! once under a fresh name), so a summary is valid as long as the file's size is the same. A
//! file without a summary (written before sluice wrote bloom filters, or whose footer could not
//! be read) is never skipped. Summaries take at most [`MAX_SUMMARY_BYTES`]; beyond that they
//! are dropped and read again as needed.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, local::LocalFileSystem, path::Path};
use parquet::{
    basic::{LogicalType, TimeUnit},
    bloom_filter::Sbbf,
    file::{metadata::ParquetMetaData, statistics::Statistics},
};

use crate::{encode::TRANSACTION_ID_COLUMNS, footer::read_footer, live::LiveView};

mod stored;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A folder modified less than this long before it was read is read again at the next listing
/// (its modification time could be repeated by a change right after the read).
pub const SETTLED: Duration = Duration::from_secs(2);

/// Most bytes the summaries of an index take (about 500 bytes a small file).
pub const MAX_SUMMARY_BYTES: usize = 256 << 20;

/// Footers read at once when summaries are missing, from an object store (whose requests wait
/// on the network).
const SUMMARY_READS: usize = 32;

/// Footers read at once, a core, from a local lake: each read is a task of the blocking pool.
/// 32 at once grew it to 127 threads, and a server's peak memory after reading the summaries of
/// 22,487 files from 105 to 144 MiB, to read them in 1.1 s rather than 1.9 s (in the background).
const LOCAL_SUMMARY_READS_PER_CORE: usize = 2;

/// What a reader needs to know of a file to skip it: the range of `time` of its records, and
/// the bloom filters of the columns holding transaction ids.
#[derive(Debug)]
pub struct Summary {
    /// Smallest and largest `time` (microseconds since the epoch), when every row group has
    /// statistics for it.
    time: Option<(i64, i64)>,
    /// Whether every record has a `time` (the footer counts no nulls in any row group).
    time_complete: bool,
    /// A filter a row group and column of [`TRANSACTION_ID_COLUMNS`]; `None` when any of them
    /// has none (the file may hold any id).
    blooms: Option<Vec<Sbbf>>,
    /// The file's size and modification time: the summary is of this file only while they
    /// are the same.
    size: u64,
    modified: DateTime<Utc>,
}

impl Summary {
    /// May a record of the file have a `time` within `[lo, hi]` (either bound open when `None`)?
    pub fn overlaps(&self, lo: Option<i64>, hi: Option<i64>) -> bool {
        let Some((min, max)) = self.time else { return true };
        lo.is_none_or(|lo| max >= lo) && hi.is_none_or(|hi| min <= hi)
    }

    /// The smallest and largest `time` of the file's records (microseconds since the epoch),
    /// when its footer says.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.time
    }

    /// Whether the footer says every record of the file has a `time`.
    pub fn time_complete(&self) -> bool {
        self.time_complete
    }

    /// May the file hold a record or an event of the transaction `id`? (Never a false no.)
    pub fn may_hold(&self, id: &str) -> bool {
        self.blooms.as_ref().is_none_or(|blooms| blooms.iter().any(|b| b.check(id)))
    }

    fn bytes(&self) -> usize {
        size_of::<Self>() + 96 + self.blooms.as_ref().map_or(0, |b| b.iter().map(|f| f.num_blocks() * 32 + 24).sum())
    }

    /// The summary of a file from its footer, reading its bloom filters from `store`.
    pub async fn read(store: &Arc<dyn ObjectStore>, m: &ObjectMeta) -> crate::Result<Self> {
        let meta = read_footer(store, m).await?;
        let blooms = match bloom_ranges(&meta) {
            Some(ranges) => {
                let bytes = store.get_ranges(&m.location, &ranges).await?;
                bytes.iter().map(|b| Sbbf::from_bytes(b)).collect::<Result<Vec<Sbbf>, _>>().ok()
            }
            None => None,
        };
        Ok(Self::of(&meta, blooms, m.size, m.last_modified))
    }

    /// The summary of the file `bytes` (whose modification time on disk is `modified`), as a
    /// writer has it in memory.
    pub fn of_file(bytes: &bytes::Bytes, modified: DateTime<Utc>) -> crate::Result<Self> {
        let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(bytes)?;
        let blooms = bloom_ranges(&meta).and_then(|ranges| {
            ranges
                .into_iter()
                .map(|r| bytes.get(r.start as usize..r.end as usize).and_then(|b| Sbbf::from_bytes(b).ok()))
                .collect::<Option<Vec<Sbbf>>>()
        });
        Ok(Self::of(&meta, blooms, bytes.len() as u64, modified))
    }

    fn of(meta: &ParquetMetaData, blooms: Option<Vec<Sbbf>>, size: u64, modified: DateTime<Utc>) -> Self {
        let (time, time_complete) = time_range(meta).map_or((None, false), |(r, c)| (Some(r), c));
        Self { time, time_complete, blooms, size, modified }
    }

    /// Whether this is the summary of the file `m` (files are never changed in place, so this
    /// is a guard against a file replaced by hand).
    fn is_of(&self, m: &ObjectMeta) -> bool {
        self.size == m.size && self.modified == m.last_modified
    }
}

/// Summaries a writer keeps of its files before saving them in the lake.
const WRITTEN_SAVE_AT: usize = 4096;

/// The summaries of the data files a writer (`serve`, `import`, `replay`) puts into a local
/// lake, kept in the lake for readers ([`stored`]) in segments of [`WRITTEN_SAVE_AT`] files and
/// when dropped: a first query after a backfill reads no footer of what the backfill wrote.
#[derive(Debug)]
pub struct Written {
    root: PathBuf,
    pending: Mutex<Vec<stored::Entry>>,
}

impl Written {
    /// For the local lake at `root`.
    pub fn new(root: &std::path::Path) -> Self {
        Self { root: root.to_path_buf(), pending: Mutex::default() }
    }

    /// Notes the file at `rel` (a `/`-separated path under the lake) just written with `bytes`,
    /// its modification time `modified`: a data file's summary is kept.
    pub fn note(&self, rel: &str, bytes: &bytes::Bytes, modified: SystemTime) {
        if !(rel.starts_with("logs/") && rel.ends_with(".parquet")) {
            return;
        }
        if let Ok(summary) = Summary::of_file(bytes, modified.into()) {
            self.keep(rel, summary);
        }
    }

    /// Keeps `summary`, of the data file at `rel` just written.
    pub(crate) fn keep(&self, rel: &str, summary: Summary) {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.push((rel.to_owned(), summary));
            if pending.len() < WRITTEN_SAVE_AT {
                return;
            }
            std::mem::take(&mut *pending)
        };
        self.save(&full);
    }

    fn save(&self, entries: &[stored::Entry]) {
        if entries.is_empty() {
            return;
        }
        if let Err(e) = stored::save(&stored::folder(&self.root), entries.iter().map(|(p, s)| (p.as_str(), s))) {
            tracing::debug!(error = %e, "could not keep the summaries of the files written");
        }
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        self.save(&pending);
    }
}

/// Where the bloom filters of the columns of [`TRANSACTION_ID_COLUMNS`] are in the file of
/// `meta`, a row group and column; `None` if any of them has none.
fn bloom_ranges(meta: &ParquetMetaData) -> Option<Vec<std::ops::Range<u64>>> {
    let schema = meta.file_metadata().schema_descr();
    let columns: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| {
            let column = schema.column(i);
            let path = column.path().parts();
            TRANSACTION_ID_COLUMNS.iter().any(|c| c.iter().copied().eq(path.iter().map(String::as_str)))
        })
        .collect();
    if columns.is_empty() {
        return None;
    }
    let mut ranges = Vec::new();
    for rg in meta.row_groups() {
        for &i in &columns {
            let c = rg.column(i);
            match (c.bloom_filter_offset(), c.bloom_filter_length()) {
                (Some(offset), Some(len)) if offset >= 0 && len > 0 => {
                    ranges.push(offset as u64..offset as u64 + len as u64);
                }
                _ => return None,
            }
        }
    }
    Some(ranges)
}

/// The range of the `time` column over every row group, from the footer's statistics, and
/// whether they count no nulls.
fn time_range(meta: &ParquetMetaData) -> Option<((i64, i64), bool)> {
    let schema = meta.file_metadata().schema_descr();
    let i = (0..schema.num_columns()).find(|&i| schema.column(i).path().parts() == ["time"])?;
    let micros = matches!(
        schema.column(i).logical_type_ref(),
        Some(LogicalType::Timestamp(t)) if t.unit == TimeUnit::MICROS
    );
    if !micros {
        return None;
    }
    let mut range: Option<(i64, i64)> = None;
    let mut complete = true;
    for rg in meta.row_groups() {
        let Some(Statistics::Int64(s)) = rg.column(i).statistics() else { return None };
        complete &= s.null_count_opt() == Some(0);
        let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) else {
            // A row group of no values for `time` (all null) adds nothing.
            if s.null_count_opt() == Some(rg.num_rows() as u64) {
                continue;
            }
            return None;
        };
        range = Some(range.map_or((min, max), |(lo, hi)| (lo.min(min), hi.max(max))));
    }
    Some((range.unwrap_or((i64::MAX, i64::MIN)), complete))
}

/// One folder of a local lake as last read.
#[derive(Debug)]
struct Folder {
    modified: SystemTime,
    /// When it was read.
    read_at: SystemTime,
    files: Vec<ObjectMeta>,
    /// Subfolders: their keys and names.
    folders: Vec<(Path, String)>,
}

impl Folder {
    /// Whether `modified` (the folder's time now) says nothing changed since it was read.
    fn current(&self, modified: SystemTime) -> bool {
        modified == self.modified && self.read_at.duration_since(self.modified).is_ok_and(|d| d >= SETTLED)
    }
}

/// The listing and summaries of a lake's files, kept between queries (see the module's
/// documentation). Cheap to share: clones share what they keep.
#[derive(Debug, Clone)]
pub struct FileIndex {
    view: LiveView,
    /// The store summaries are read from (the view's own store would count the reads of every
    /// session against the one that first needed them).
    store: Arc<dyn ObjectStore>,
    /// For a local lake: the store's paths as paths on disk.
    local: Option<Arc<LocalFileSystem>>,
    folders: Arc<Mutex<HashMap<Path, Arc<Folder>>>>,
    summaries: Arc<Mutex<Summaries>>,
    /// The listings of a snapshot ([`FileIndex::snapshot`]), by folder.
    snapshot: Option<Arc<tokio::sync::Mutex<Listings>>>,
    /// For a local lake: the summaries it keeps on disk for the next process.
    kept: Option<Arc<Kept>>,
}

/// The summaries a local lake keeps on disk ([`stored`]), as one index uses them.
#[derive(Debug)]
struct Kept {
    /// The lake's root on disk and as a key of the store.
    root: PathBuf,
    key: Path,
    loaded: tokio::sync::OnceCell<()>,
    /// What this index read and has not yet saved, and the segments it knows of.
    unsaved: Mutex<(Vec<Path>, Vec<PathBuf>)>,
}

/// Summaries read and not yet saved beyond which a segment is written (a lookup that reads a
/// few new files does not write a segment of them each time).
const SAVE_AT: usize = 256;

/// Listings by folder.
type Listings = HashMap<Path, Arc<Vec<ObjectMeta>>>;

#[derive(Debug, Default)]
struct Summaries {
    by_file: HashMap<Path, Arc<Summary>>,
    bytes: usize,
}

impl Summaries {
    /// Keeps the summary of the file at `path`, forgetting every other first if it would take
    /// more than [`MAX_SUMMARY_BYTES`].
    fn insert(&mut self, path: Path, summary: Arc<Summary>) {
        let bytes = summary.bytes();
        if self.bytes + bytes > MAX_SUMMARY_BYTES {
            self.by_file.clear();
            self.bytes = 0;
        }
        self.bytes += bytes;
        if let Some(old) = self.by_file.insert(path, summary) {
            self.bytes -= old.bytes();
        }
    }
}

impl FileIndex {
    /// An index over the lake of `view` (whose store is `store`), listing through the store.
    pub fn new(view: LiveView, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            view,
            store,
            local: None,
            folders: Arc::default(),
            summaries: Arc::default(),
            snapshot: None,
            kept: None,
        }
    }

    /// An index over the local lake at `root` on disk, whose `store` is a [`LocalFileSystem`]
    /// without a prefix: listings read only folders whose modification time changed, and the
    /// summaries read are kept in the lake for the next process.
    pub fn local(view: LiveView, store: Arc<dyn ObjectStore>, root: &std::path::Path) -> crate::Result<Self> {
        let kept = Kept {
            root: root.to_path_buf(),
            key: Path::from_absolute_path(root)
                .map_err(|e| crate::Error::LakeUrl { url: root.display().to_string(), reason: e.to_string() })?,
            loaded: tokio::sync::OnceCell::new(),
            unsaved: Mutex::default(),
        };
        Ok(Self { local: Some(Arc::new(LocalFileSystem::new())), kept: Some(Arc::new(kept)), ..Self::new(view, store) })
    }

    /// The same index listing each folder once: the queries of one request (a trace's records
    /// and events) see the lake as one listing saw it, made when the first of them asked.
    pub fn snapshot(&self) -> Self {
        Self { snapshot: Some(Arc::default()), ..self.clone() }
    }

    /// The live files under the folder `at` (every level below it), as the view lists them. The
    /// files of a folder are next to each other, in no particular order otherwise.
    pub async fn list(&self, at: &Path) -> crate::Result<Vec<ObjectMeta>> {
        let Some(snapshot) = &self.snapshot else { return self.list_now(at).await };
        // Held while listing: a second query of the snapshot waits for the first's listing.
        let mut listed = snapshot.lock().await;
        if let Some(files) = listed.get(at) {
            return Ok(files.as_ref().clone());
        }
        let files = self.list_now(at).await?;
        listed.insert(at.clone(), Arc::new(files.clone()));
        Ok(files)
    }

    async fn list_now(&self, at: &Path) -> crate::Result<Vec<ObjectMeta>> {
        let Some(fs) = &self.local else {
            return match self.view.list(Some(at)).try_collect().await {
                Ok(files) => Ok(files),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(e.into()),
            };
        };
        let (fs, folders, summaries, at) =
            (Arc::clone(fs), Arc::clone(&self.folders), Arc::clone(&self.summaries), at.clone());
        let files = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&fs, &folders, &summaries, &at, &mut out).map(|()| out)
        })
        .await
        .map_err(crate::Error::task("listing the lake"))??;
        self.view.live(files).await
    }

    /// The summaries of `files` (in their order), read from the footers of those not yet known;
    /// `None` for a file whose footer could not be read.
    pub async fn summaries(&self, files: &[ObjectMeta]) -> Vec<Option<Arc<Summary>>> {
        if let Some(kept) = &self.kept {
            kept.loaded.get_or_init(|| self.load(kept)).await;
        }
        let known: Vec<Option<Arc<Summary>>> = {
            let s = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
            files.iter().map(|m| s.by_file.get(&m.location).filter(|x| x.is_of(m)).cloned()).collect()
        };
        let missing: Vec<usize> = (0..files.len()).filter(|&i| known[i].is_none()).collect();
        if missing.is_empty() {
            return known;
        }
        let read: Vec<(usize, Option<Arc<Summary>>)> = futures::stream::iter(missing.into_iter().map(|i| async move {
            match Summary::read(&self.store, &files[i]).await {
                Ok(s) => (i, Some(Arc::new(s))),
                Err(e) => {
                    tracing::debug!(file = %files[i].location, error = %e, "no summary");
                    (i, None)
                }
            }
        }))
        .buffer_unordered(match self.local {
            Some(_) => std::thread::available_parallelism().map_or(2, |n| n.get()) * LOCAL_SUMMARY_READS_PER_CORE,
            None => SUMMARY_READS,
        })
        .collect()
        .await;
        let mut known = known;
        let mut fresh = Vec::with_capacity(read.len());
        {
            let mut s = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, summary) in read {
                if let Some(summary) = &summary {
                    s.insert(files[i].location.clone(), Arc::clone(summary));
                    fresh.push(files[i].location.clone());
                }
                known[i] = summary;
            }
        }
        if let Some(kept) = &self.kept {
            self.keep(kept, fresh).await;
        }
        known
    }

    /// Loads the summaries the lake keeps (merging its segments when there are many).
    async fn load(&self, kept: &Arc<Kept>) {
        let k = Arc::clone(kept);
        let loaded = tokio::task::spawn_blocking(move || {
            let dir = stored::folder(&k.root);
            let (entries, segments) = stored::load(&dir);
            if segments.len() > stored::MAX_SEGMENTS {
                match stored::merge(&k.root, &dir, &entries, &segments) {
                    Ok(merged) => return (entries, vec![merged]),
                    Err(e) => tracing::debug!(error = %e, "could not merge the lake's summaries"),
                }
            }
            (entries, segments)
        })
        .await;
        let Ok((entries, segments)) = loaded else { return };
        kept.unsaved.lock().unwrap_or_else(PoisonError::into_inner).1 = segments;
        let mut s = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
        for (rel, summary) in entries {
            if s.bytes + summary.bytes() > MAX_SUMMARY_BYTES {
                break;
            }
            if let Ok(key) = Path::parse(format!("{}/{rel}", kept.key)) {
                s.insert(key, Arc::new(summary));
            }
        }
    }

    /// Keeps the summaries just read (of the files `read`) in the lake, once there are
    /// [`SAVE_AT`] of them; writes everything known instead, and deletes the segments it knew,
    /// once it knows of more than [`stored::MAX_SEGMENTS`].
    async fn keep(&self, kept: &Arc<Kept>, read: Vec<Path>) {
        let (paths, old) = {
            let mut unsaved = kept.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
            unsaved.0.extend(read);
            if unsaved.0.len() < SAVE_AT {
                return;
            }
            let old = if unsaved.1.len() >= stored::MAX_SEGMENTS { std::mem::take(&mut unsaved.1) } else { Vec::new() };
            (std::mem::take(&mut unsaved.0), old)
        };
        let prefix = format!("{}/", kept.key);
        let entries: Vec<(String, Arc<Summary>)> = {
            let s = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
            let of = |p: &Path, x: &Arc<Summary>| Some((p.as_ref().strip_prefix(&prefix)?.to_owned(), Arc::clone(x)));
            if old.is_empty() {
                paths.iter().filter_map(|p| of(p, s.by_file.get(p)?)).collect()
            } else {
                s.by_file.iter().filter_map(|(p, x)| of(p, x)).collect()
            }
        };
        let dir = stored::folder(&kept.root);
        let saved = tokio::task::spawn_blocking(move || {
            let segment = stored::save(&dir, entries.iter().map(|(p, s)| (p.as_str(), s.as_ref())))?;
            stored::remove(&old)?;
            Ok::<_, std::io::Error>(segment)
        })
        .await;
        match saved {
            Ok(Ok(segment)) => kept.unsaved.lock().unwrap_or_else(PoisonError::into_inner).1.push(segment),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not keep summaries in the lake"),
            Err(e) => tracing::debug!(error = %e, "could not keep summaries in the lake"),
        }
    }

    /// Reads the summary of every file of the lake under `at` not yet known (a server does this
    /// once it has started, so that its first lookups are as fast as the next).
    pub async fn warm(&self, at: &Path) -> crate::Result<usize> {
        let files: Vec<ObjectMeta> =
            self.list(at).await?.into_iter().filter(|m| m.location.as_ref().ends_with(".parquet")).collect();
        let mut read = 0;
        for chunk in files.chunks(4096) {
            read += self.summaries(chunk).await.iter().flatten().count();
        }
        Ok(read)
    }
}

/// Appends the files under the folder `at` of a local lake to `out`, reading only the folders
/// whose modification time changed since they were last read (see the module's documentation).
/// The folders two levels down are walked on every core.
fn walk(
    fs: &LocalFileSystem,
    folders: &Mutex<HashMap<Path, Arc<Folder>>>,
    summaries: &Mutex<Summaries>,
    at: &Path,
    out: &mut Vec<ObjectMeta>,
) -> crate::Result<()> {
    let on_disk: PathBuf = fs.path_to_filesystem(at)?;
    let root = match disk::Dir::open(&on_disk) {
        Ok(dir) => dir,
        Err(e) if gone(&e) => {
            folders.lock().unwrap_or_else(PoisonError::into_inner).remove(at);
            return Ok(());
        }
        Err(source) => return Err(crate::Error::Io { path: on_disk, source }),
    };
    let walk = Walk { folders, summaries, root: (at, &on_disk) };
    // The folders of the first two levels are read here; those below them are split between
    // threads, each opening its folders by path.
    let mut subtrees: Vec<(PathBuf, Path)> = Vec::new();
    for (key, name) in &walk.visit(&root, at, out)?.folders {
        let Some(dir) = walk.open(key, || root.child(name))? else { continue };
        for (sub, sub_name) in &walk.visit(&dir, key, out)?.folders {
            subtrees.push((on_disk.join(name).join(sub_name), sub.clone()));
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(subtrees.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<crate::Result<Vec<ObjectMeta>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((path, key)) = subtrees.get(i) else { return Ok(mine) };
                        if let Some(dir) = walk.open(key, || disk::Dir::open(path))? {
                            walk.folder(&dir, key, &mut mine)?;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    for part in parts {
        out.extend(part?);
    }
    Ok(())
}

/// Whether an error opening a folder says it is not there (any more).
fn gone(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
}

/// One walk of a local lake's folders.
struct Walk<'a> {
    folders: &'a Mutex<HashMap<Path, Arc<Folder>>>,
    summaries: &'a Mutex<Summaries>,
    /// The folder the walk started at, in the store and on disk (for errors).
    root: (&'a Path, &'a std::path::Path),
}

impl Walk<'_> {
    fn error(&self, at: &Path, source: std::io::Error) -> crate::Error {
        let (root, on_disk) = self.root;
        let below: Vec<String> =
            at.prefix_match(root).map(|parts| parts.map(|p| p.as_ref().to_owned()).collect()).unwrap_or_default();
        crate::Error::Io { path: below.iter().fold(on_disk.to_path_buf(), |p, part| p.join(part)), source }
    }

    /// Appends the files of the folder `dir` (at `at`) and of every folder below it to `out`
    /// (holding a folder open a level, not more).
    fn folder(&self, dir: &disk::Dir, at: &Path, out: &mut Vec<ObjectMeta>) -> crate::Result<()> {
        let folder = self.visit(dir, at, out)?;
        for (sub, name) in &folder.folders {
            if let Some(child) = self.open(sub, || dir.child(name))? {
                self.folder(&child, sub, out)?;
            }
        }
        Ok(())
    }

    /// The folder `at` the walk found, opened by `open`; `None` (and forgotten) when it is gone.
    fn open(&self, at: &Path, open: impl FnOnce() -> std::io::Result<disk::Dir>) -> crate::Result<Option<disk::Dir>> {
        match open() {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if gone(&e) => {
                self.forget(at);
                Ok(None)
            }
            Err(e) => Err(self.error(at, e)),
        }
    }

    /// Appends the files of the folder `dir` (at `at`) to `out`, reading it if it changed.
    fn visit(&self, dir: &disk::Dir, at: &Path, out: &mut Vec<ObjectMeta>) -> crate::Result<Arc<Folder>> {
        let modified = dir.modified().map_err(|e| self.error(at, e))?;
        let known = self.folders.lock().unwrap_or_else(PoisonError::into_inner).get(at).cloned();
        let folder = match known {
            Some(f) if f.current(modified) => f,
            known => self.read(dir, at, modified, known)?,
        };
        out.extend(folder.files.iter().cloned());
        Ok(folder)
    }

    /// Reads the folder `dir` (at `at`), forgetting what is gone from it since `known`.
    fn read(
        &self,
        dir: &disk::Dir,
        at: &Path,
        modified: SystemTime,
        known: Option<Arc<Folder>>,
    ) -> crate::Result<Arc<Folder>> {
        let read_at = SystemTime::now();
        let mut files = Vec::new();
        let mut subfolders = Vec::new();
        for (name, entry) in dir.entries().map_err(|e| self.error(at, e))? {
            // Names the object store would not list: hidden files and staged uploads.
            if name.starts_with('.') || name.contains('#') {
                continue;
            }
            match entry {
                disk::Entry::Folder => subfolders.push((at.clone().join(name.as_str()), name)),
                disk::Entry::File { size, modified } => files.push(ObjectMeta {
                    location: at.clone().join(name.as_str()),
                    last_modified: modified.into(),
                    size,
                    e_tag: None,
                    version: None,
                }),
            }
        }
        files.sort_unstable_by(|a, b| a.location.cmp(&b.location));
        subfolders.sort_unstable();
        // What is gone from the folder is forgotten: the summaries of files compaction deleted,
        // and folders deleted with all they held.
        if let Some(old) = known {
            let sub: HashSet<&Path> = subfolders.iter().map(|(p, _)| p).collect();
            for (gone, _) in old.folders.iter().filter(|(p, _)| !sub.contains(p)) {
                self.forget(gone);
            }
            let now: HashSet<&Path> = files.iter().map(|m| &m.location).collect();
            let mut s = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
            for gone in old.files.iter().filter(|m| !now.contains(&m.location)) {
                if let Some(x) = s.by_file.remove(&gone.location) {
                    s.bytes -= x.bytes();
                }
            }
        }
        let folder = Arc::new(Folder { modified, read_at, files, folders: subfolders });
        self.folders.lock().unwrap_or_else(PoisonError::into_inner).insert(at.clone(), Arc::clone(&folder));
        Ok(folder)
    }

    /// Forgets the folder `at` and every folder below it.
    fn forget(&self, at: &Path) {
        self.folders.lock().unwrap_or_else(PoisonError::into_inner).retain(|p, _| p.prefix_match(at).is_none());
    }
}

/// Folders on disk, opened relative to their parent (a folder of the lake is 11 levels deep: a
/// lookup of the whole path for each was most of a listing's time).
#[cfg(target_os = "linux")]
mod disk {
    use std::{
        io,
        os::fd::OwnedFd,
        time::{Duration, SystemTime, UNIX_EPOCH},
    };

    use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

    const FOLDER: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC).union(OFlags::NOFOLLOW);

    /// An open folder.
    pub struct Dir(OwnedFd);

    /// What a folder holds under a name.
    pub enum Entry {
        Folder,
        File { size: u64, modified: SystemTime },
    }

    fn time(st: &Stat) -> SystemTime {
        let (secs, nanos): (i64, u32) = (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0));
        match u64::try_from(secs) {
            Ok(s) => UNIX_EPOCH + Duration::new(s, nanos),
            Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into()),
        }
    }

    impl Dir {
        pub fn open(path: &std::path::Path) -> io::Result<Self> {
            Ok(Self(rustix::fs::open(path, FOLDER, Mode::empty())?))
        }

        pub fn child(&self, name: &str) -> io::Result<Self> {
            Ok(Self(rustix::fs::openat(&self.0, name, FOLDER, Mode::empty())?))
        }

        pub fn modified(&self) -> io::Result<SystemTime> {
            Ok(time(&rustix::fs::fstat(&self.0)?))
        }

        pub fn entries(&self) -> io::Result<Vec<(String, Entry)>> {
            let mut out = Vec::new();
            for e in rustix::fs::Dir::read_from(&self.0)? {
                let e = e?;
                let Ok(name) = e.file_name().to_str() else { continue };
                if name == "." || name == ".." {
                    continue;
                }
                let kind = e.file_type();
                if kind == FileType::Directory {
                    out.push((name.to_owned(), Entry::Folder));
                    continue;
                }
                if !matches!(kind, FileType::RegularFile | FileType::Unknown) {
                    continue;
                }
                let st = match rustix::fs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => out.push((name.to_owned(), Entry::Folder)),
                    FileType::RegularFile => {
                        out.push((
                            name.to_owned(),
                            Entry::File { size: st.st_size.try_into().unwrap_or(0), modified: time(&st) },
                        ));
                    }
                    _ => {}
                }
            }
            Ok(out)
        }
    }
}

/// Folders on disk, by path.
#[cfg(not(target_os = "linux"))]
mod disk {
    use std::{io, path::PathBuf, time::SystemTime};

    pub struct Dir(PathBuf);

    pub enum Entry {
        Folder,
        File { size: u64, modified: SystemTime },
    }

    impl Dir {
        pub fn open(path: &std::path::Path) -> io::Result<Self> {
            if std::fs::symlink_metadata(path)?.is_dir() {
                Ok(Self(path.to_path_buf()))
            } else {
                Err(io::ErrorKind::NotADirectory.into())
            }
        }

        pub fn child(&self, name: &str) -> io::Result<Self> {
            Self::open(&self.0.join(name))
        }

        pub fn modified(&self) -> io::Result<SystemTime> {
            std::fs::metadata(&self.0)?.modified()
        }

        pub fn entries(&self) -> io::Result<Vec<(String, Entry)>> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(&self.0)? {
                let e = e?;
                let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
                let m = match std::fs::symlink_metadata(e.path()) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if m.is_dir() {
                    out.push((name, Entry::Folder));
                } else if m.is_file() {
                    out.push((name, Entry::File { size: m.len(), modified: m.modified()? }));
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use object_store::{ObjectStoreExt, PutPayload, memory::InMemory};
    use sluice_schemas::{Context, Contract, PackedRow, record_id_at};

    use super::*;
    use crate::encode::encode_parquet;

    /// Rows of transactions `tx-{i}` (record and event), at seconds 10..10+n past 2025-01-01T00:00Z.
    fn rows(contract: &Contract, n: usize) -> Vec<PackedRow> {
        (0..n)
            .map(|i| {
                let line = format!(
                    r#"{{"organizationID":"o","environment":"prod","logType":"web","time":"2025-01-01T00:00:{:02}Z","transactionId":"tx-{i}","events":[{{"action":"a","transactionId":"ev-{i}"}}]}}"#,
                    10 + i
                );
                let ctx = Context { record_id: record_id_at("test", i as u64), arrival_micros: 1_735_700_000_000_000 };
                PackedRow::new(contract.parse_borrowed(line.as_bytes(), &ctx).expect("valid").row)
            })
            .collect()
    }

    async fn summary_of(bytes: Vec<u8>) -> Summary {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("f.parquet");
        let size = bytes.len() as u64;
        store.put(&path, PutPayload::from(bytes)).await.expect("put");
        let meta = ObjectMeta { location: path, last_modified: chrono::Utc::now(), size, e_tag: None, version: None };
        Summary::read(&store, &meta).await.expect("summary")
    }

    #[tokio::test]
    async fn a_summary_holds_every_id_of_its_file_and_few_others() {
        let contract = Contract::default();
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        let s = summary_of(encode_parquet(&contract.registry, &schema, &rows(&contract, 40)).expect("encode")).await;
        for i in 0..40 {
            assert!(s.may_hold(&format!("tx-{i}")) && s.may_hold(&format!("ev-{i}")), "{i}");
        }
        let false_positives = (0..10_000).filter(|i| s.may_hold(&format!("other-{i}"))).count();
        assert!(false_positives < 60, "{false_positives} of 10,000 absent ids may be held");
        let t0 = 1_735_689_600_000_000i64;
        assert_eq!(s.time, Some((t0 + 10_000_000, t0 + 49_000_000)));
        assert!(s.time_complete);
        assert!(s.overlaps(Some(t0 + 49_000_000), None) && !s.overlaps(Some(t0 + 49_000_001), None));
        assert!(s.overlaps(None, Some(t0 + 10_000_000)) && !s.overlaps(None, Some(t0 + 9_999_999)));
    }

    #[tokio::test]
    async fn a_file_without_bloom_filters_may_hold_any_id() {
        let contract = Contract::default();
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        let batch = crate::encode::rows_to_batch(&contract.registry, &schema, &rows(&contract, 5)).expect("batch");
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let s = summary_of(buf).await;
        assert!(s.may_hold("anything at all"));
        assert!(s.time.is_some());
    }

    #[tokio::test]
    async fn summaries_read_once_are_kept_in_the_lake_for_the_next_process() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().canonicalize().expect("path");
        let contract = Contract::default();
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        let folder = root.join("logs/a=1");
        std::fs::create_dir_all(&folder).expect("mkdir");
        for k in 0..SAVE_AT {
            let bytes = encode_parquet(&contract.registry, &schema, &rows(&contract, k % 20 + 1)).expect("encode");
            std::fs::write(folder.join(format!("f{k:03}.parquet")), bytes).expect("write");
        }
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let index = || FileIndex::local(LiveView::new(Arc::clone(&store)), Arc::clone(&store), &root).expect("index");
        let at = Path::from_absolute_path(root.join("logs")).expect("path");
        let first = index();
        let files = first.list(&at).await.expect("list");
        assert_eq!(files.len(), SAVE_AT);
        assert!(first.summaries(&files).await.iter().all(Option::is_some));
        // Every file is destroyed, keeping its size and time: a new index knows the summaries
        // without reading a footer.
        let on_disk = |m: &ObjectMeta| std::path::PathBuf::from(format!("/{}", m.location));
        for m in &files {
            let t = std::fs::metadata(on_disk(m)).and_then(|x| x.modified()).expect("time");
            std::fs::write(on_disk(m), vec![0u8; m.size as usize]).expect("write");
            File::options().write(true).open(on_disk(m)).expect("open").set_modified(t).expect("set time");
        }
        let kept = index().summaries(&files).await;
        for (k, s) in kept.iter().enumerate() {
            let s = s.as_ref().unwrap_or_else(|| panic!("no summary kept for file {k}"));
            assert!(s.may_hold(&format!("tx-{}", k % 20)), "{k}");
        }
        // A file whose time moved is not the file summarized: it is read again (and this one
        // has no footer any more).
        let later = SystemTime::now() + Duration::from_secs(5);
        File::options().write(true).open(on_disk(&files[0])).expect("open").set_modified(later).expect("set time");
        let moved = index().list(&at).await.expect("list");
        let again = index().summaries(&moved).await;
        assert!(again[0].is_none() && again[1..].iter().all(Option::is_some));
        // A segment not whole (a torn write) is ignored.
        for e in std::fs::read_dir(stored::folder(&root)).expect("segments").flatten() {
            let bytes = std::fs::read(e.path()).expect("read");
            std::fs::write(e.path(), &bytes[..bytes.len() - 1]).expect("write");
        }
        assert!(index().summaries(&moved).await.iter().all(Option::is_none));
    }

    /// A local lake in `dir`, and its root on disk.
    async fn local_lake(dir: &tempfile::TempDir) -> (crate::Lake, std::path::PathBuf) {
        let lake = crate::Lake::open(dir.path().to_str().expect("utf8")).await.expect("lake");
        let root = lake.local_root().expect("local").to_path_buf();
        (lake, root)
    }

    /// A data file of the rows of transactions `tx-0` … `tx-{n-1}`.
    fn data_file(contract: &Contract, n: usize) -> bytes::Bytes {
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        encode_parquet(&contract.registry, &schema, &rows(contract, n)).expect("encode").into()
    }

    /// The data files of the local lake at `root`, each with the summary the lake keeps of it.
    async fn kept_summaries(root: &std::path::Path) -> Vec<(ObjectMeta, Summary)> {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let index = FileIndex::local(LiveView::new(Arc::clone(&store)), Arc::clone(&store), root).expect("index");
        let files = index.list(&Path::from_absolute_path(root.join("logs")).expect("path")).await.expect("list");
        let (mut kept, _) = stored::load(&stored::folder(root));
        files
            .into_iter()
            .map(|m| {
                let i = kept.iter().position(|(p, _)| m.location.as_ref().ends_with(p.as_str())).expect("kept");
                (m, kept.swap_remove(i).1)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_writer_keeps_the_summaries_of_the_files_it_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let (lake, root) = local_lake(&dir).await;
        let contract = Contract::default();
        let device = lake.group_commit_device().expect("a group commit on Linux");
        for k in 1..=3 {
            let key = lake.key(&format!("logs/a=1/f{k}.parquet"));
            if k == 3 {
                // Staged for a group commit, then renamed into place as the commit does.
                let staged = lake.stage(&key, data_file(&contract, k), device).await.expect("stage").expect("staged");
                std::fs::rename(staged.staged_path(), root.join(key.as_ref())).expect("rename");
            } else {
                lake.put(&key, data_file(&contract, k)).await.expect("put");
            }
        }
        drop(lake);
        let kept = kept_summaries(&root).await;
        assert_eq!(kept.len(), 3);
        for (m, s) in &kept {
            assert!(s.is_of(m), "{}: the summary is of the file in place", m.location);
            assert!(s.may_hold("tx-0") && s.time_complete);
        }
    }

    #[tokio::test]
    async fn compaction_keeps_the_summaries_of_the_files_it_merges_into() {
        let dir = tempfile::tempdir().expect("tmp");
        let (lake, root) = local_lake(&dir).await;
        let contract = Contract::default();
        let hour = "logs/environment=prod/organization=o/logtype=web/year=2025/month=01/day=01/hour=00";
        for k in 1..=2 {
            lake.put(&lake.key(&format!("{hour}/f{k}.parquet")), data_file(&contract, k)).await.expect("put");
        }
        let opts =
            crate::compact::CompactOptions { older_than: Duration::ZERO, grace: Duration::ZERO, ..Default::default() };
        crate::compact::compact(&lake, &contract.registry, &opts, |_| {}).await.expect("compact");
        drop(lake);
        let kept = kept_summaries(&root).await;
        assert_eq!(kept.len(), 1, "one merged file");
        assert!(kept[0].1.is_of(&kept[0].0) && kept[0].1.may_hold("tx-1"));
    }

    #[test]
    fn many_segments_merge_into_one_of_the_files_still_there() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let there = root.join("logs/x.parquet");
        std::fs::create_dir_all(there.parent().expect("parent")).expect("mkdir");
        std::fs::write(&there, b"0123456789").expect("write");
        let modified: DateTime<Utc> = std::fs::metadata(&there).and_then(|m| m.modified()).expect("time").into();
        let summary = |size| Summary { time: Some((1, 2)), time_complete: true, blooms: None, size, modified };
        let segments = stored::folder(root);
        stored::save(&segments, [("logs/x.parquet", &summary(10))]).expect("save");
        for i in 0..stored::MAX_SEGMENTS {
            let gone = format!("logs/gone-{i}.parquet");
            stored::save(&segments, [(gone.as_str(), &summary(10)), ("logs/x.parquet", &summary(11))]).expect("save");
        }
        // What a save killed before its rename leaves: swept once old, not while it may be written.
        let (unfinished, fresh) = (segments.join(".dead.tmp"), segments.join(".alive.tmp"));
        std::fs::write(&unfinished, b"half").expect("write");
        std::fs::write(&fresh, b"half").expect("write");
        File::options()
            .write(true)
            .open(&unfinished)
            .expect("open")
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .expect("set time");
        let (entries, read) = stored::load(&segments);
        assert_eq!((entries.len(), read.len()), (1 + 2 * stored::MAX_SEGMENTS, 1 + stored::MAX_SEGMENTS));
        stored::merge(root, &segments, &entries, &read).expect("merge");
        assert!(!unfinished.exists() && fresh.exists());
        let (entries, read) = stored::load(&segments);
        assert_eq!(read.len(), 1);
        assert_eq!(entries.len(), 1);
        let (path, kept) = &entries[0];
        assert_eq!((path.as_str(), kept.size, kept.time), ("logs/x.parquet", 10, Some((1, 2))));
    }

    fn touch(path: &std::path::Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b"PAR1").expect("write");
    }

    /// Sets the modification time of the folder `dir` to an hour ago.
    fn age(dir: &std::path::Path) -> SystemTime {
        let t = SystemTime::now() - Duration::from_secs(3600);
        File::open(dir).expect("open").set_modified(t).expect("set time");
        t
    }

    #[tokio::test]
    async fn a_local_listing_sees_every_change_and_reads_only_changed_folders() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().canonicalize().expect("path");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let index = FileIndex::local(LiveView::new(Arc::clone(&store)), store, &root).expect("index");
        let at = Path::from_absolute_path(root.join("logs")).expect("path");
        let names = |files: Vec<ObjectMeta>| -> Vec<String> {
            let mut names: Vec<String> = files
                .iter()
                .map(|m| m.location.as_ref().rsplit_once("/logs/").expect("under logs").1.to_owned())
                .collect();
            names.sort();
            names
        };
        let list = || async { names(index.list(&at).await.expect("list")) };
        assert!(list().await.is_empty(), "no folder yet");
        let hour = root.join("logs/a=1/b=1");
        touch(&hour.join("x.parquet"));
        touch(&hour.join("y.parquet#3"));
        assert_eq!(list().await, ["a=1/b=1/x.parquet"]);
        // Changes right after a read, within the same tick of the clock: seen.
        touch(&hour.join("y.parquet"));
        assert_eq!(list().await, ["a=1/b=1/x.parquet", "a=1/b=1/y.parquet"]);
        std::fs::remove_file(hour.join("x.parquet")).expect("rm");
        touch(&root.join("logs/a=2/b=1/z.parquet"));
        assert_eq!(list().await, ["a=1/b=1/y.parquet", "a=2/b=1/z.parquet"]);
        std::fs::remove_dir_all(root.join("logs/a=2")).expect("rm");
        assert_eq!(list().await, ["a=1/b=1/y.parquet"]);
        // A folder whose time is settled is not read again while its time stays the same: a
        // file slipped in with the time put back is not seen (a change always moves the time).
        let settled = age(&hour);
        assert_eq!(list().await, ["a=1/b=1/y.parquet"]);
        touch(&hour.join("w.parquet"));
        File::open(&hour).expect("open").set_modified(settled).expect("set time");
        assert_eq!(list().await, ["a=1/b=1/y.parquet"], "a settled folder was read again");
        // … and any change moves it.
        touch(&hour.join("v.parquet"));
        assert_eq!(list().await, ["a=1/b=1/v.parquet", "a=1/b=1/w.parquet", "a=1/b=1/y.parquet"]);
    }
}
