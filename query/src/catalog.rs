//! The lake as SQL tables (DESIGN.md §3): `logs`, one `logs_<type>` per log type, and `events`.
//!
//! `logs` is a table over the files of `{lake}/logs/` with the seven Hive partition columns
//! (`environment`, `organization`, `logtype` as strings; `year`, `month`, `day`, `hour` as
//! integers). Filters on partition columns prune folders before any file is opened. A filter on
//! `time` alone prunes hour partitions too: [`LakeTable`] derives a partition filter from it,
//! widened by 14 hours on each side, so that it stays correct for producers whose
//! `year/month/day/hour` fields are a local hour rather than the UTC one (every UTC offset is
//! within ±14 h). The contract lets those fields choose any hour, so a record can lie further
//! from its hour than that: sluice's writers mark the files holding such records
//! ([`sluice_schemas::FAR_TIME_MARK`]) and a scan keeps marked files whatever their hour.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableProvider},
    common::{
        ColumnStatistics, DFSchema, DataFusionError, Statistics,
        stats::Precision,
        tree_node::{Transformed, TreeNode},
    },
    datasource::{
        TableType,
        file_format::parquet::ParquetFormat,
        listing::{
            ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl, PartitionedFile,
            helpers::{expr_applicable_for_cols, filter_partitioned_file},
        },
        physical_plan::{
            FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
            parquet::{CachedParquetFileReaderFactory, DefaultParquetFileReaderFactory},
        },
        source::DataSourceExec,
        table_schema::TableSchema,
    },
    execution::object_store::ObjectStoreUrl,
    logical_expr::{Expr, Operator, TableProviderFilterPushDown, expr::InList},
    parquet::arrow::async_reader::AsyncFileReader,
    physical_plan::{ExecutionPlan, empty::EmptyExec, metrics::ExecutionPlanMetricsSet},
    scalar::ScalarValue,
};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_lake::files::FileIndex;
use sluice_schemas::{
    HOUR_SLACK_HOURS, Orgs, PARTITION_INDEX, Registry, arrow_schema, is_far_time_file, partition_columns,
    validate_partition_value,
};

use crate::error::{Error, Result};

/// The partition columns and their SQL types.
pub fn partition_fields() -> Vec<(String, DataType)> {
    partition_columns().iter().map(|c| (c.name.clone(), c.ty.arrow())).collect()
}

/// The `logs` table: the lake's files, listed by partition folder, plus pruning of hour partitions
/// by `time`, seeing only the organizations of its scope.
#[derive(Debug)]
pub struct LakeTable {
    inner: ListingTable,
    scope: Orgs,
    store: Arc<dyn ObjectStore>,
    prefix: object_store::path::Path,
    /// The lake's partition index ([`sluice_schemas::PARTITION_INDEX`]).
    index: object_store::path::Path,
    store_url: ObjectStoreUrl,
    file_schema: SchemaRef,
    /// The listing and the files' summaries, kept between queries.
    files: FileIndex,
    /// A transaction every file read must be able to hold (see [`LakeTable::with_needle`]).
    needle: Option<String>,
}

/// Most partition folders a scan enumerates and lists itself; a scan that would touch more
/// leaves the listing to DataFusion (one listing under the longest common prefix).
pub const MAX_PINNED_FOLDERS: usize = 256;

impl LakeTable {
    /// The `logs` table of the lake whose `logs/` folder is at `logs_url` in `store`, seeing the
    /// organizations of `scope` only.
    ///
    /// A scoped table never lists or opens another organization's files: each scan is a union of
    /// scans rooted at `logs/environment=E/organization=O/` for every environment `E` in the
    /// lake and every organization `O` of the scope, and each of them also filters the files it
    /// lists by those two partition values.
    pub fn new(
        logs_url: &str,
        registry: &Registry,
        store: Arc<dyn ObjectStore>,
        files: FileIndex,
        scope: Orgs,
    ) -> Result<Self> {
        let url = ListingTableUrl::parse(logs_url)
            .map_err(|e| Error::Location { url: logs_url.into(), reason: e.to_string() })?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partition_fields());
        let schema = Arc::new(arrow_schema(&registry.lake_columns()));
        let prefix = url.prefix().clone();
        // `…/logs` → `…/_sluice/partitions`.
        let parts: Vec<_> = prefix.parts().collect();
        let root: object_store::path::Path = parts[..parts.len().saturating_sub(1)].iter().cloned().collect();
        let index = PARTITION_INDEX.split('/').fold(root, |p, part| p.join(part));
        let store_url = url.object_store();
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(Arc::clone(&schema));
        Ok(Self {
            inner: ListingTable::try_new(config)?,
            scope,
            store,
            prefix,
            index,
            store_url,
            file_schema: schema,
            files,
            needle: None,
        })
    }

    /// The same table reading only the files that may hold a record or an event of the
    /// transaction `id` (by their bloom filters): the `events` view's filter on an event's
    /// transaction id cannot reach the scan, so a trace says which transaction it looks for.
    pub fn with_needle(self, id: Option<String>) -> Self {
        Self { needle: id, ..self }
    }

    /// The folders a scan lists: the partition levels from `environment` down to the deepest
    /// level that the filters pin (`col = v`, `col IN (…)`, and the scope for `organization`),
    /// each level either pinned or listed with a delimiter. Listing stops one level early when a
    /// level would give more than [`MAX_PINNED_FOLDERS`] folders, except above `organization`
    /// for a scoped table: that never lists another organization's folders.
    async fn scan_roots(&self, filters: &[Expr]) -> datafusion::error::Result<Vec<Vec<String>>> {
        let mut pins = pinned_values(filters);
        if let Orgs::Some(orgs) = &self.scope {
            let allowed: BTreeSet<String> = orgs.iter().map(ToString::to_string).collect();
            let orgs = match pins.remove("organization") {
                Some(p) => p.intersection(&allowed).cloned().collect(),
                None => allowed,
            };
            pins.insert("organization".into(), orgs);
        }
        let fields = partition_fields();
        let depth = fields.iter().rposition(|(name, _)| pins.contains_key(name)).map_or(0, |i| i + 1);
        let scoped_depth = if matches!(self.scope, Orgs::Some(_)) { 2 } else { 0 };
        let mut folders: Vec<Vec<String>> = vec![Vec::new()];
        let mut from = 0;
        // A scoped scan finds its organizations' environments in the partition index, rather
        // than listing every environment of the lake.
        if scoped_depth == 2
            && !pins.contains_key("environment")
            && let Some(orgs) = pins.get("organization")
            && let Some(pairs) = self.indexed_folders(orgs).await?
        {
            folders = pairs;
            from = 2;
        }
        for (level, (name, _)) in fields.iter().enumerate().take(depth).skip(from) {
            let mut next = Vec::new();
            for f in &folders {
                let values: Vec<String> = match pins.get(name) {
                    Some(v) => v.iter().cloned().collect(),
                    None => self.list_values(f, name).await?,
                };
                next.extend(values.into_iter().map(|v| {
                    let mut path = f.clone();
                    path.push(format!("{name}={v}"));
                    path
                }));
            }
            if next.len() > MAX_PINNED_FOLDERS && level >= scoped_depth {
                break;
            }
            folders = next;
        }
        Ok(folders)
    }

    /// The folders `[environment=E, organization=O]` of the organizations `orgs`, from the
    /// lake's partition index; `None` when the lake has no complete index.
    async fn indexed_folders(&self, orgs: &BTreeSet<String>) -> datafusion::error::Result<Option<Vec<Vec<String>>>> {
        let complete = self.index.clone().join("complete");
        match self.store.head(&complete).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut folders = Vec::new();
        for org in orgs {
            let at = self.index.clone().join(format!("organization={org}"));
            let listing = match self.store.list_with_delimiter(Some(&at)).await {
                Ok(l) => l,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            for m in listing.objects {
                if let Some(env) = m.location.filename().and_then(|n| n.strip_prefix("environment="))
                    && validate_partition_value(env).is_ok()
                {
                    folders.push(vec![format!("environment={env}"), format!("organization={org}")]);
                }
            }
        }
        folders.sort();
        Ok(Some(folders))
    }

    /// The key of the folder `logs/{parts…}`.
    fn folder_path(&self, parts: &[String]) -> object_store::path::Path {
        parts.iter().fold(self.prefix.clone(), |p, part| p.join(part.as_str()))
    }

    /// The values of the partition column `name` present under the folder `at`.
    async fn list_values(&self, at: &[String], name: &str) -> datafusion::error::Result<Vec<String>> {
        let listing = match self.store.list_with_delimiter(Some(&self.folder_path(at))).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let key = format!("{name}=");
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename()?.strip_prefix(&key).map(str::to_owned)).collect())
    }

    /// A scan of the files under `folders` (from [`LakeTable::scan_roots`]): listed here, one
    /// listing per folder, each file kept only if its path is a partition path and its partition
    /// values pass every filter on partition columns (those filters are exact: nothing above the
    /// scan applies them again).
    ///
    /// DataFusion's `ListingTable` gives every file a copy of the table's statistics (about
    /// 14 KiB a file for this schema, even with statistics collection off) and keeps them for
    /// the whole scan: on a lake of 27,648 files that was 400 MiB of an export's memory.
    ///
    /// `time`, the range of `time` the filters allow: the hour partitions it allows
    /// ([`hour_key_range`]) drop the files of other hours, except files marked as holding a
    /// record far from their hour ([`sluice_schemas::FAR_TIME_MARK`]); then the files' summaries
    /// drop those whose records' times are all outside it.
    async fn scan_folders(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        time: (Option<i64>, Option<i64>),
        limit: Option<usize>,
        folders: Vec<Vec<String>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let hours = hour_key_range(time.0, time.1);
        let fields = partition_fields();
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        let partition_filters: Vec<Expr> =
            filters.iter().filter(|f| expr_applicable_for_cols(&names, f)).cloned().collect();
        let df_schema = DFSchema::from_unqualified_fields(
            fields.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect(),
            Default::default(),
        )?;
        let listings = futures::stream::iter(folders.into_iter().map(|folder| async move {
            self.files.list(&self.folder_path(&folder)).await.map_err(|e| DataFusionError::External(Box::new(e)))
        }))
        .buffer_unordered(state.config_options().execution.meta_fetch_concurrency.get())
        .try_collect::<Vec<_>>()
        .await?;
        // The files of a folder are next to each other in a listing (sorting them all was 5% of a
        // needle lookup); those the scan keeps are sorted below.
        let listed: Vec<object_store::ObjectMeta> = listings.into_iter().flatten().collect();
        // The files a scan may need, with the index of their folder in `decided`.
        let (mut metas, mut of_folder) = (Vec::new(), Vec::new());
        // The files of a folder share its partition values (they are adjacent once sorted): the
        // values are parsed, and the filters on them evaluated, once a folder.
        let mut decided: Vec<Folder> = Vec::new();
        let mut folder: Option<(String, Option<usize>)> = None;
        for m in listed {
            if m.size == 0 || !m.location.as_ref().ends_with(".parquet") {
                continue;
            }
            let Some((dir, _)) = m.location.as_ref().rsplit_once('/') else { continue };
            if folder.as_ref().is_none_or(|(d, _)| d != dir) {
                let values = m.location.prefix_match(&self.prefix).and_then(|relative| {
                    let parts: Vec<_> = relative.collect();
                    let (_, dirs) = parts.split_last()?;
                    partition_values(dirs.iter().map(|p| p.as_ref()), &fields)
                });
                let index = match values {
                    Some(values) => {
                        let passes = partition_filters.is_empty() || {
                            let mut pf = PartitionedFile::from(m.clone());
                            pf.partition_values = values.clone();
                            filter_partitioned_file(pf, &partition_filters, &df_schema)?.is_some()
                        };
                        let in_hours = hours.is_none_or(|(lo, hi)| {
                            folder_hour_key(&values)
                                .is_none_or(|k| lo.is_none_or(|lo| k >= lo) && hi.is_none_or(|hi| k <= hi))
                        });
                        decided.push(Folder { values, passes, in_hours });
                        Some(decided.len() - 1)
                    }
                    None => None,
                };
                folder = Some((dir.to_owned(), index));
            }
            let Some((_, Some(i))) = folder else { continue };
            let f = &decided[i];
            // A file marked as holding a record far from its hour is kept whatever its hour:
            // the filter on `time` itself decides for it.
            if !f.passes || !(f.in_hours || is_far_time_file(m.location.filename().unwrap_or_default())) {
                continue;
            }
            metas.push(m);
            of_folder.push(i);
        }
        // Files that cannot hold a record the filters ask for, by their summaries: the range of
        // their records' `time`, and the bloom filters of their transaction ids.
        let needles = needle_values(filters, self.needle.as_deref());
        let mut summaries = vec![None; metas.len()];
        if !metas.is_empty() && (!needles.is_empty() || time.0.is_some() || time.1.is_some()) {
            summaries = self.files.summaries(&metas).await;
        }
        let mut files: Vec<(PartitionedFile, Option<i64>)> = metas
            .into_iter()
            .zip(of_folder)
            .zip(summaries)
            .filter(|(_, s)| {
                s.as_ref().is_none_or(|s| {
                    s.overlaps(time.0, time.1) && needles.iter().all(|any| any.iter().any(|id| s.may_hold(id)))
                })
            })
            .map(|((m, i), s)| {
                let mut pf = PartitionedFile::from(m);
                pf.partition_values = decided[i].values.clone();
                let range = s.as_ref().and_then(|s| s.time_range());
                if let (Some(range), Some(s)) = (range, &s) {
                    pf.statistics = time_statistics(&self.file_schema, range, s.time_complete()).map(Arc::new);
                }
                (pf, range.map(|r| r.1))
            })
            .collect();
        // Files of known times newest first: a query for the newest rows (`ORDER BY time DESC
        // LIMIT n`) fills its page from the first files read, and the filter its top-n pushes
        // into the scan then skips, by the statistics above, every file older than its page.
        files.sort_unstable_by(|(a, a_end), (b, b_end)| {
            b_end.cmp(a_end).then_with(|| a.object_meta.location.cmp(&b.object_meta.location))
        });
        let files: Vec<PartitionedFile> = files.into_iter().map(|(pf, _)| pf).collect();
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema().project(p)?),
                None => self.schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let n = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = (0..n.min(files.len())).map(|_| Vec::new()).collect();
        let count = groups.len();
        for (i, f) in files.into_iter().enumerate() {
            groups[i % count].push(f);
        }
        let table_schema = TableSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(
                fields.iter().map(|(n, t)| Arc::new(Field::new(n, t.clone(), false))).collect::<Vec<_>>(),
            )
            .build();
        let format = &self.inner.options().format;
        let config = FileScanConfigBuilder::new(self.store_url.clone(), format.file_source(table_schema))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        let plan = format.create_physical_plan(state, config).await?;
        with_lean_readers(plan, state)
    }
}

/// The statistics of a file (of `schema`) whose records' `time` spans `range` (and all have
/// one, when `complete`): `time`'s exact bounds and null count, and nothing else (the columns
/// after `time` are left out, as DataFusion's pruning reads a file's statistics by index and
/// takes a missing one as unknown; a copy of every column's was 14 KiB a file). What lets a
/// top-n on `time` skip files.
fn time_statistics(schema: &SchemaRef, (lo, hi): (i64, i64), complete: bool) -> Option<Statistics> {
    let i = schema.index_of("time").ok()?;
    let DataType::Timestamp(TimeUnit::Microsecond, tz) = schema.field(i).data_type() else { return None };
    let value = |v: i64| Precision::Exact(ScalarValue::TimestampMicrosecond(Some(v), tz.clone()));
    let mut columns = vec![ColumnStatistics::new_unknown(); i + 1];
    columns[i] = ColumnStatistics {
        min_value: value(lo),
        max_value: value(hi),
        // The filter of a top-n on `time DESC` keeps rows without a time (NULLS FIRST): a file
        // is skipped only if it is known to have none.
        null_count: if complete { Precision::Exact(0) } else { Precision::Absent },
        ..ColumnStatistics::new_unknown()
    };
    Some(Statistics { num_rows: Precision::Absent, total_byte_size: Precision::Absent, column_statistics: columns })
}

/// A partition folder of a scan: its partition values, and whether they pass the filters on
/// partition columns and the hours a filter on `time` allows.
struct Folder {
    values: Vec<ScalarValue>,
    passes: bool,
    in_hours: bool,
}

/// The transaction ids a file must be able to hold for a scan to need it: for each conjunct
/// `transaction_id = 'x'` or `transaction_id IN ('x', …)` of the filters, its ids (a file must
/// be able to hold one of them), and the table's needle.
fn needle_values(filters: &[Expr], needle: Option<&str>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = needle.map(|n| vec![n.to_owned()]).into_iter().collect();
    let string = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    let is_tx = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "transaction_id");
    for f in filters {
        for c in split_and(f) {
            let ids = match c {
                Expr::BinaryExpr(b) if b.op == Operator::Eq => match (b.left.as_ref(), b.right.as_ref()) {
                    (c, l) | (l, c) if is_tx(c) => string(l).map(|s| vec![s]),
                    _ => None,
                },
                Expr::InList(InList { expr, list, negated: false }) if is_tx(expr) => {
                    list.iter().map(string).collect::<Option<Vec<String>>>()
                }
                _ => None,
            };
            out.extend(ids);
        }
    }
    out
}

/// The Parquet scan `plan` reading its files through [`LeanReaders`].
fn with_lean_readers(
    plan: Arc<dyn ExecutionPlan>,
    state: &dyn Session,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let Some(config) =
        plan.downcast_ref::<DataSourceExec>().and_then(|ds| ds.data_source().downcast_ref::<FileScanConfig>())
    else {
        return Ok(plan);
    };
    let Some(source) = config.file_source().downcast_ref::<ParquetSource>() else { return Ok(plan) };
    let store = state.runtime_env().object_store(&config.object_store_url)?;
    let cache = &state.runtime_env().cache_manager;
    let readers: Box<dyn ParquetFileReaderFactory> = if cache.get_metadata_cache_limit() > 0 {
        Box::new(CachedParquetFileReaderFactory::new(store, cache.get_file_metadata_cache()))
    } else {
        Box::new(DefaultParquetFileReaderFactory::new(store))
    };
    let source = source.clone().with_parquet_file_reader_factory(Arc::new(LeanReaders(readers)));
    let config = FileScanConfigBuilder::from(config.clone()).with_source(Arc::new(source)).build();
    Ok(DataSourceExec::from_data_source(config))
}

/// DataFusion's Parquet reader (footers from the shared cache, when it keeps any) without its
/// per-file metrics: every reader registers ~30 metrics labelled with its file name in the
/// scan's metric set, which lives as long as the plan (about 6 KiB a file: 160 MiB over 27,648
/// small files). The bytes read are counted by the session's object store instead (`BytesRead`).
#[derive(Debug)]
struct LeanReaders(Box<dyn ParquetFileReaderFactory>);

impl ParquetFileReaderFactory for LeanReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        _metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        self.0.create_reader(partition_index, file, metadata_size_hint, &ExecutionPlanMetricsSet::new())
    }
}

/// The partition values of a file in the folders `dirs` (below `logs/`): exactly one
/// `name=value` folder for each partition column, in order. `None` for any other path (such
/// files are not part of the table).
fn partition_values<'a>(
    dirs: impl ExactSizeIterator<Item = &'a str>,
    fields: &[(String, DataType)],
) -> Option<Vec<ScalarValue>> {
    if dirs.len() != fields.len() {
        return None;
    }
    dirs.zip(fields)
        .map(|(dir, (name, ty))| {
            let v = dir.strip_prefix(name.as_str())?.strip_prefix('=')?;
            match ty {
                DataType::Utf8 => Some(ScalarValue::Utf8(Some(v.to_owned()))),
                DataType::Int32 => v.parse().ok().map(|n| ScalarValue::Int32(Some(n))),
                DataType::Int64 => v.parse().ok().map(|n| ScalarValue::Int64(Some(n))),
                _ => ScalarValue::try_from_string(v.to_owned(), ty).ok(),
            }
        })
        .collect()
}

/// The values that conjuncts `col = v` and `col IN (v, …)` pin partition columns to, spelled as
/// their folder names spell them (`month=01`).
fn pinned_values(filters: &[Expr]) -> BTreeMap<String, BTreeSet<String>> {
    let mut pins: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pin = |name: &str, values: BTreeSet<String>| match pins.get_mut(name) {
        Some(have) => *have = have.intersection(&values).cloned().collect(),
        None => {
            pins.insert(name.to_owned(), values);
        }
    };
    for f in filters {
        for c in split_and(f) {
            let (name, lits): (&str, Vec<&Expr>) = match c {
                Expr::BinaryExpr(b) if b.op == Operator::Eq => match (b.left.as_ref(), b.right.as_ref()) {
                    (Expr::Column(c), l @ Expr::Literal(..)) | (l @ Expr::Literal(..), Expr::Column(c)) => {
                        (c.name.as_str(), vec![l])
                    }
                    _ => continue,
                },
                Expr::InList(InList { expr, list, negated: false }) => match expr.as_ref() {
                    Expr::Column(c) => (c.name.as_str(), list.iter().collect()),
                    _ => continue,
                },
                _ => continue,
            };
            let Some(values) = lits.iter().map(|l| folder_value(name, l)).collect::<Option<BTreeSet<String>>>() else {
                continue;
            };
            pin(name, values);
        }
    }
    pins
}

/// A literal as the folder name of partition column `name` spells it; `None` when it cannot be
/// one (then the filter does not pin the column, and DataFusion evaluates it).
fn folder_value(name: &str, e: &Expr) -> Option<String> {
    let Expr::Literal(v, _) = e else { return None };
    let width = match name {
        "environment" | "organization" | "logtype" => {
            let (ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s))) = v
            else {
                return None;
            };
            return validate_partition_value(s).is_ok().then(|| s.clone());
        }
        "year" => 4,
        "month" | "day" | "hour" => 2,
        _ => return None,
    };
    let n = match v {
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => i64::from(*n),
        ScalarValue::Int16(Some(n)) => i64::from(*n),
        ScalarValue::Int8(Some(n)) => i64::from(*n),
        ScalarValue::UInt32(Some(n)) => i64::from(*n),
        ScalarValue::UInt16(Some(n)) => i64::from(*n),
        ScalarValue::UInt8(Some(n)) => i64::from(*n),
        _ => return None,
    };
    (0..10i64.pow(width)).contains(&n).then(|| format!("{n:0width$}", width = width as usize))
}

/// `col = v` on the integer partition columns as `col IN (v)`: DataFusion turns equalities on
/// leading partition columns into a listing prefix spelled `month=1`, while the folders are
/// `month=01`, so such a prefix would find no files.
fn unprefixed(filters: &[Expr]) -> datafusion::error::Result<Vec<Expr>> {
    let is_int_partition =
        |e: &Expr| matches!(e, Expr::Column(c) if matches!(c.name.as_str(), "year" | "month" | "day" | "hour"));
    filters
        .iter()
        .map(|f| {
            f.clone()
                .transform_up(|e| {
                    let Expr::BinaryExpr(b) = &e else { return Ok(Transformed::no(e)) };
                    if b.op != Operator::Eq {
                        return Ok(Transformed::no(e));
                    }
                    let (c, l) = match (b.left.as_ref(), b.right.as_ref()) {
                        (c, l @ Expr::Literal(..)) if is_int_partition(c) => (c, l),
                        (l @ Expr::Literal(..), c) if is_int_partition(c) => (c, l),
                        _ => return Ok(Transformed::no(e)),
                    };
                    Ok(Transformed::yes(c.clone().in_list(vec![l.clone()], false)))
                })
                .map(|t| t.data)
        })
        .collect()
}

/// Microseconds since the epoch of a timestamp literal.
fn literal_micros(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(s), _) => s.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(s), _) => Some(*s),
        ScalarValue::TimestampNanosecond(Some(s), _) => Some(s / 1000),
        _ => None,
    }
}

fn is_time(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == "time",
        Expr::Cast(c) => is_time(&c.expr),
        Expr::TryCast(c) => is_time(&c.expr),
        _ => false,
    }
}

/// Lower and upper bounds on `time` (microseconds) that the filters imply.
pub fn time_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
    let mut visit = |e: &Expr| {
        let Expr::BinaryExpr(b) = e else { return };
        let (op, v) = if is_time(&b.left) {
            (b.op, literal_micros(&b.right))
        } else if is_time(&b.right) {
            let flipped = match b.op {
                Operator::Lt => Operator::Gt,
                Operator::LtEq => Operator::GtEq,
                Operator::Gt => Operator::Lt,
                Operator::GtEq => Operator::LtEq,
                o => o,
            };
            (flipped, literal_micros(&b.left))
        } else {
            return;
        };
        let Some(v) = v else { return };
        match op {
            Operator::Gt | Operator::GtEq => lo = Some(lo.map_or(v, |l| l.max(v))),
            Operator::Lt | Operator::LtEq => hi = Some(hi.map_or(v, |h| h.min(v))),
            Operator::Eq => {
                lo = Some(lo.map_or(v, |l| l.max(v)));
                hi = Some(hi.map_or(v, |h| h.min(v)));
            }
            _ => {}
        }
    };
    for f in filters {
        for c in split_and(f) {
            visit(c);
        }
    }
    (lo, hi)
}

fn split_and(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            let mut v = split_and(&b.left);
            v.extend(split_and(&b.right));
            v
        }
        other => vec![other],
    }
}

/// `year*1000000 + month*10000 + day*100 + hour` of an instant, as an integer.
fn hour_key(micros: i64) -> Option<i64> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)?;
    Some(
        i64::from(t.year()) * 1_000_000
            + i64::from(t.month()) * 10_000
            + i64::from(t.day()) * 100
            + i64::from(t.hour()),
    )
}

/// The hour partitions a range of `time` allows, as a range of [`hour_key`]s (inclusive),
/// widened by [`HOUR_SLACK_HOURS`] on each side.
pub fn hour_key_range(lo: Option<i64>, hi: Option<i64>) -> Option<(Option<i64>, Option<i64>)> {
    let slack = HOUR_SLACK_HOURS * 3_600_000_000;
    let lo = lo.and_then(|l| hour_key(l.saturating_sub(slack)));
    let hi = hi.and_then(|h| hour_key(h.saturating_add(slack)));
    (lo.is_some() || hi.is_some()).then_some((lo, hi))
}

/// The [`hour_key`] of a folder's partition values (`year`, `month`, `day`, `hour` are the last
/// four).
fn folder_hour_key(values: &[ScalarValue]) -> Option<i64> {
    let int = |v: &ScalarValue| match v {
        ScalarValue::Int64(Some(n)) => Some(*n),
        ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
        _ => None,
    };
    let [.., y, m, d, h] = values else { return None };
    Some(int(y)? * 1_000_000 + int(m)? * 10_000 + int(d)? * 100 + int(h)?)
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let filters = unprefixed(filters)?;
        let (lo, hi) = time_bounds(&filters);
        let folders = self.scan_roots(&filters).await?;
        self.scan_folders(state, projection, &filters, (lo, hi), limit, folders).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// The SQL of the `logs_<type>` view: common columns, that type's extras, partition columns.
pub fn logtype_view_sql(registry: &Registry, logtype: &str) -> Option<String> {
    let cols = registry.logtype_columns(logtype)?;
    let mut names: Vec<String> = cols.iter().map(|c| format!("\"{}\"", c.name)).collect();
    names.extend(partition_columns().iter().map(|c| format!("\"{}\"", c.name)));
    Some(format!("SELECT {} FROM logs WHERE logtype = '{logtype}'", names.join(", ")))
}

/// The SQL of the `events` view: one row per element of `logs.events`, with the parent's
/// partition columns, `record_id` and `transaction_id`; the event's own transaction id is
/// `event_transaction_id`.
pub fn events_view_sql() -> String {
    let parts = "environment, organization, logtype, year, month, day, hour";
    format!(
        "SELECT {parts}, record_id, transaction_id, \
         e['time'] AS time, e['action'] AS action, e['description'] AS description, e['detail'] AS detail, \
         e['caller'] AS caller, e['server'] AS server, e['success'] AS success, e['type'] AS type, \
         e['transaction_id'] AS event_transaction_id, e['attributes'] AS attributes \
         FROM (SELECT {parts}, record_id, transaction_id, unnest(events) AS e FROM logs WHERE events IS NOT NULL)"
    )
}
