//! A request-counting object store proves that partition filters, and a filter on `time` alone,
//! keep the engine from reading other partitions' files.

use std::{
    fmt,
    ops::Range,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result, local::LocalFileSystem, path::Path,
};
use sluice_query::{Engine, EngineConfig};
use sluice_schemas::Registry;

use crate::sample_lake;

/// Records the path of every read and the prefix of every listing.
#[derive(Debug, Default)]
struct Counting {
    inner: LocalFileSystem,
    reads: Mutex<Vec<String>>,
    lists: Mutex<Vec<String>>,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.reads.lock().expect("lock").push(location.to_string());
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.reads.lock().expect("lock").push(location.to_string());
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.lists.lock().expect("lock").push(prefix.map(ToString::to_string).unwrap_or_default());
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.lists.lock().expect("lock").push(prefix.map(ToString::to_string).unwrap_or_default());
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn engine(store: Arc<Counting>) -> Engine {
    let url = url::Url::from_directory_path(sample_lake().canonicalize().expect("path")).expect("url");
    Engine::with_store(store, url, Registry::builtin(), EngineConfig::default()).expect("engine")
}

fn all_files() -> usize {
    let mut n = 0;
    let mut stack = vec![sample_lake().join("logs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).expect("dir").flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test]
async fn one_organization_one_hour_reads_only_that_partition() {
    let store = Arc::new(Counting::default());
    let e = engine(Arc::clone(&store));
    let b = e
        .query(
            "SELECT count(*) FROM logs WHERE organization = '1001' AND year = 2025 AND month = 1 AND day = 1 AND hour = 7",
            None,
        )
        .await
        .expect("query");
    assert!(b.iter().map(|b| b.num_rows()).sum::<usize>() == 1);
    let reads = store.reads.lock().expect("lock").clone();
    assert!(!reads.is_empty(), "the query read nothing; the test would prove nothing");
    for r in &reads {
        assert!(
            r.contains("/organization=1001/") && r.contains("/year=2025/month=01/day=01/hour=07/"),
            "read outside the partition: {r}"
        );
    }
    for l in store.lists.lock().expect("lock").iter() {
        assert!(!l.contains("organization=") || l.contains("organization=1001"), "listed another organization: {l}");
    }
}

#[tokio::test]
async fn a_time_filter_alone_prunes_hour_partitions() {
    let store = Arc::new(Counting::default());
    let e = engine(Arc::clone(&store));
    e.query(
        "SELECT max(description) FROM logs WHERE time >= TIMESTAMP '2025-01-02T20:00:00Z' AND time < TIMESTAMP '2025-01-02T20:30:00Z'",
        None,
    )
    .await
    .expect("query");
    let reads: std::collections::BTreeSet<String> = store.reads.lock().expect("lock").iter().cloned().collect();
    assert!(!reads.is_empty());
    // The sample spans 2025-01-01T00 to 2025-01-03T00; with 14 h of slack on each side nothing
    // before 2025-01-02T06 may be read.
    for r in &reads {
        let early = r.contains("day=01/") || (0..6).any(|h| r.contains(&format!("day=02/hour={h:02}/")));
        assert!(!early, "read a file outside the time window: {r}");
    }
    assert!(reads.len() < all_files() / 2, "read {} of {} files", reads.len(), all_files());
}

/// The files of every scan in `plan`.
fn scanned_files(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Vec<datafusion::datasource::listing::PartitionedFile> {
    use datafusion::datasource::{physical_plan::FileScanConfig, source::DataSourceExec};
    let own = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|ds| ds.data_source().downcast_ref::<FileScanConfig>())
        .map(|cfg| cfg.file_groups.iter().flat_map(|g| g.iter().cloned()).collect())
        .unwrap_or_default();
    plan.children().into_iter().map(scanned_files).fold(own, |mut all, f| {
        all.extend(f);
        all
    })
}

#[tokio::test]
async fn a_full_scan_lists_every_file_without_per_file_statistics() {
    let store = Arc::new(Counting::default());
    let e = engine(Arc::clone(&store));
    let (plan, task) = e.plan("SELECT * FROM logs").await.expect("plan");
    let files = scanned_files(&plan);
    // A large file may be split into byte ranges across partitions: it then appears once a range.
    let distinct: std::collections::BTreeSet<String> =
        files.iter().map(|f| f.object_meta.location.to_string()).collect();
    assert_eq!(distinct.len(), all_files());
    // A copy of the table's statistics per file is ~14 KiB: 400 MiB over a lake of 27,648 files.
    assert!(files.iter().all(|f| f.statistics.is_none()), "files carry statistics");
    assert!(files.iter().all(|f| f.partition_values.len() == 7), "partition values missing");
    // Every file (or byte range of one) opened registers one set of per-file metrics, kept as long
    // as the plan: DataFusion's reader factory would register a second (~30 metrics a file).
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task).await.expect("run");
    assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
    let mut per_file = 0;
    let mut stack = vec![Arc::clone(&plan)];
    while let Some(p) = stack.pop() {
        per_file += p.metrics().map_or(0, |m| m.iter().filter(|m| m.value().name() == "bytes_scanned").count());
        stack.extend(p.children().into_iter().cloned());
    }
    assert_eq!(per_file, files.len(), "per-file metric sets registered");
}

/// Issue 31, item 10: one tenant's thousands of environment values slowed every other tenant's
/// scoped listing (each scan listed every environment of the lake, then each environment's
/// folder of its organizations). With the partition index a scan scoped to an organization
/// lists that organization's environments only.
#[tokio::test]
async fn a_scoped_scan_lists_only_its_organizations_environments() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("lake");
    let mut ndjson = String::new();
    for env in 0..300 {
        ndjson.push_str(&format!(
            "{{\"organizationID\":\"noisy\",\"environment\":\"env{env}\",\"logType\":\"web\",\"time\":\"2025-01-01T00:00:00Z\"}}\n"
        ));
    }
    for env in ["prod", "dev"] {
        for i in 0..5 {
            ndjson.push_str(&format!(
                "{{\"organizationID\":\"quiet\",\"environment\":\"{env}\",\"logType\":\"web\",\"time\":\"2025-01-01T0{i}:00:00Z\"}}\n"
            ));
        }
    }
    let lake = crate::write_lake(&path, &ndjson).await;
    let url = url::Url::from_directory_path(path.canonicalize().expect("path")).expect("url");
    let count =
        |store: Arc<Counting>| {
            let url = url.clone();
            async move {
                let e = Engine::with_store(store, url, Registry::builtin(), EngineConfig::default()).expect("engine");
                let scope = sluice_schemas::Orgs::Some(std::collections::BTreeSet::from([
                    sluice_schemas::PartitionValue::new("quiet").expect("valid"),
                ]));
                let b = e.scoped(scope).query("SELECT count(*) AS n FROM logs", None).await.expect("query");
                let n = b[0].column(0).as_any().downcast_ref::<arrow_array::Int64Array>().expect("count").value(0);
                assert_eq!(n, 10, "the quiet tenant's rows, all of them");
            }
        };
    // Without a complete index (a lake written by Firehose, say): every environment is listed.
    let store = Arc::new(Counting::default());
    count(Arc::clone(&store)).await;
    assert!(store.lists.lock().expect("lock").len() > 300, "without the index every environment is looked at");
    // With it: the index of one organization, and its two folders.
    lake.complete_index().await.expect("index");
    let store = Arc::new(Counting::default());
    count(Arc::clone(&store)).await;
    let lists = store.lists.lock().expect("lock").clone();
    assert!(lists.len() <= 3, "{} listings: {lists:?}", lists.len());
    assert!(lists.iter().all(|l| !l.contains("noisy") && !l.contains("env1")), "{lists:?}");
}

/// The rows of `sql` on `e`, as text, sorted.
async fn rows(e: &Engine, sql: &str) -> Vec<String> {
    let batches = e.query(sql, None).await.expect("query");
    let mut out: Vec<String> = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string()
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

/// Issue 33, goal 1: a lookup of one transaction reads the files whose bloom filters say they
/// may hold it, not every file of the lake, and finds the same rows as a scan of every file.
#[tokio::test]
async fn a_transaction_lookup_reads_only_the_files_that_may_hold_it() {
    let plain = engine(Arc::new(Counting::default()));
    let ids = rows(
        &plain,
        "SELECT transaction_id FROM logs WHERE transaction_id IS NOT NULL GROUP BY transaction_id \
         ORDER BY count(*) DESC, transaction_id LIMIT 20",
    )
    .await;
    assert_eq!(ids.len(), 20, "the sample has transactions");
    let store = Arc::new(Counting::default());
    let e = engine(Arc::clone(&store));
    for id in &ids {
        let id = id.trim_matches(|c| c == '|' || c == ' ');
        // `transaction_id || ''` is no filter on the column: every file is read.
        let everything =
            rows(&plain, &format!("SELECT record_id, time FROM logs WHERE transaction_id || '' = '{id}'")).await;
        assert!(!everything.is_empty());
        let sql = format!("SELECT record_id, time FROM logs WHERE transaction_id = '{id}'");
        assert_eq!(rows(&e, &sql).await, everything, "{id}");
        let (plan, _) = e.plan(&sql).await.expect("plan");
        let files = scanned_files(&plan).len();
        assert!(files <= everything.len() + 3, "{files} files scanned for {} rows of {id}", everything.len());
        // The events of a trace: the filter on an event's transaction id is below `unnest`, so the
        // trace names its transaction to the engine.
        let events = format!(
            "SELECT record_id, time, action FROM events WHERE transaction_id = '{id}' OR event_transaction_id = '{id}'"
        );
        assert_eq!(rows(&e.tracing(id), &events).await, rows(&plain, &events).await, "{id}");
        let (plan, _) = e.tracing(id).plan(&events).await.expect("plan");
        assert!(scanned_files(&plan).len() <= everything.len() + 3);
    }
    // Once the files' summaries are known, a lookup opens only the files it scans.
    store.reads.lock().expect("lock").clear();
    let id = ids[0].trim_matches(|c| c == '|' || c == ' ');
    rows(&e, &format!("SELECT * FROM logs WHERE transaction_id = '{id}'")).await;
    let read: std::collections::BTreeSet<String> = store.reads.lock().expect("lock").iter().cloned().collect();
    assert!(!read.is_empty() && read.len() <= 8, "read {} files: {read:?}", read.len());
}

/// A filter on `time` reads only the files whose records' times reach into its range (the range
/// of each file's `time` is kept from its footer), and finds what a scan of every file finds.
#[tokio::test]
async fn a_time_range_scans_only_the_files_whose_times_reach_into_it() {
    let plain = engine(Arc::new(Counting::default()));
    let e = engine(Arc::new(Counting::default()));
    let range = "time >= TIMESTAMP '2025-01-02T20:00:00Z' AND time < TIMESTAMP '2025-01-02T20:30:00Z'";
    let sql = format!("SELECT record_id FROM logs WHERE {range}");
    // The same range as no filter on `time` itself (seconds since the epoch): every file is read.
    let everything = rows(
        &plain,
        "SELECT record_id FROM logs WHERE date_part('epoch', time) >= 1735848000 AND date_part('epoch', time) < 1735849800",
    )
    .await;
    assert!(!everything.is_empty());
    assert_eq!(rows(&e, &sql).await, everything);
    let (plan, _) = e.plan(&sql).await.expect("plan");
    let scanned: std::collections::BTreeSet<String> =
        scanned_files(&plan).iter().map(|f| f.object_meta.location.to_string()).collect();
    // Files of the hour 20 (and of nearby hours holding a record of that half hour), not the 29
    // hours the slack for local hours would allow.
    let near = |f: &String| ["day=02/hour=19/", "day=02/hour=20/", "day=02/hour=21/"].iter().any(|h| f.contains(h));
    assert!(!scanned.is_empty() && scanned.iter().all(near), "{scanned:?}");
}

/// Issue 33, goal 2: the newest rows of a range (`ORDER BY time DESC LIMIT n`, the first page of
/// a search) read the newest files first, and the filter the top-n pushes into the scan skips
/// the files older than its page by their `time` statistics, unopened.
#[tokio::test]
async fn the_newest_rows_of_a_range_read_the_newest_files_only() {
    let plain = engine(Arc::new(Counting::default()));
    let store = Arc::new(Counting::default());
    let e = engine(Arc::clone(&store));
    let page =
        |filter: &str| format!("SELECT record_id, time FROM logs WHERE {filter} ORDER BY time DESC, record_id LIMIT 5");
    let sql = page("time >= TIMESTAMP '2000-01-01T00:00:00Z'");
    let expected = rows(&plain, &page("date_part('epoch', time) >= 946684800")).await;
    assert_eq!(expected.len(), 5);
    assert_eq!(rows(&e, &sql).await, expected, "summaries read");
    store.reads.lock().expect("lock").clear();
    assert_eq!(rows(&e, &sql).await, expected);
    let read: std::collections::BTreeSet<String> = store.reads.lock().expect("lock").iter().cloned().collect();
    assert!(read.len() <= all_files() / 10, "read {} of {} files", read.len(), all_files());
}
