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

use arrow_schema::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableProvider},
    common::{
        DFSchema,
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
            parquet::CachedParquetFileReaderFactory,
        },
        source::DataSourceExec,
        table_schema::TableSchema,
    },
    execution::object_store::ObjectStoreUrl,
    logical_expr::{Expr, Operator, TableProviderFilterPushDown, col, expr::InList, lit},
    parquet::arrow::async_reader::AsyncFileReader,
    physical_plan::{ExecutionPlan, empty::EmptyExec, metrics::ExecutionPlanMetricsSet},
    scalar::ScalarValue,
};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
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
    pub fn new(logs_url: &str, registry: &Registry, store: Arc<dyn ObjectStore>, scope: Orgs) -> Result<Self> {
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
        Ok(Self { inner: ListingTable::try_new(config)?, scope, store, prefix, index, store_url, file_schema: schema })
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
    /// `hours`, the hour partitions a filter on `time` allows ([`hour_partition_filter`]),
    /// drops the files of other hours, except files marked as holding a record far from their
    /// hour ([`sluice_schemas::FAR_TIME_MARK`]): the filter on `time` itself decides for those.
    async fn scan_folders(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        hours: Option<&Expr>,
        limit: Option<usize>,
        folders: Vec<Vec<String>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let fields = partition_fields();
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        let partition_filters: Vec<Expr> =
            filters.iter().filter(|f| expr_applicable_for_cols(&names, f)).cloned().collect();
        let df_schema = DFSchema::from_unqualified_fields(
            fields.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect(),
            Default::default(),
        )?;
        let listings = futures::stream::iter(folders.into_iter().map(|folder| async move {
            match self.store.list(Some(&self.folder_path(&folder))).try_collect::<Vec<_>>().await {
                Ok(files) => Ok(files),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(datafusion::error::DataFusionError::from(e)),
            }
        }))
        .buffer_unordered(state.config_options().execution.meta_fetch_concurrency.get())
        .try_collect::<Vec<_>>()
        .await?;
        let mut metas: Vec<object_store::ObjectMeta> = listings.into_iter().flatten().collect();
        metas.sort_unstable_by(|a, b| a.location.cmp(&b.location));
        let mut files = Vec::new();
        let mut folder: Option<(String, Option<Vec<ScalarValue>>)> = None;
        for m in metas {
            if m.size == 0 || !m.location.as_ref().ends_with(".parquet") {
                continue;
            }
            // Files of one folder are adjacent (sorted): parse a folder's values once.
            let Some((dir, _)) = m.location.as_ref().rsplit_once('/') else { continue };
            if folder.as_ref().is_none_or(|(d, _)| d != dir) {
                let values = m.location.prefix_match(&self.prefix).and_then(|relative| {
                    let parts: Vec<_> = relative.collect();
                    let (_, dirs) = parts.split_last()?;
                    partition_values(dirs.iter().map(|p| p.as_ref()), &fields)
                });
                folder = Some((dir.to_owned(), values));
            }
            let Some((_, Some(values))) = &folder else { continue };
            let far = is_far_time_file(m.location.filename().unwrap_or_default());
            let mut pf = PartitionedFile::from(m);
            pf.partition_values = values.clone();
            let Some(pf) = filter_partitioned_file(pf, &partition_filters, &df_schema)? else { continue };
            let pf = match hours {
                Some(h) if !far => filter_partitioned_file(pf, std::slice::from_ref(h), &df_schema)?,
                _ => Some(pf),
            };
            files.extend(pf);
        }
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
    let footers = state.runtime_env().cache_manager.get_file_metadata_cache();
    let source = source
        .clone()
        .with_parquet_file_reader_factory(Arc::new(LeanReaders(CachedParquetFileReaderFactory::new(store, footers))));
    let config = FileScanConfigBuilder::from(config.clone()).with_source(Arc::new(source)).build();
    Ok(DataSourceExec::from_data_source(config))
}

/// DataFusion's Parquet reader factory (footers from the shared cache) without its per-file
/// metrics: every reader registers ~30 metrics labelled with its file name in the scan's metric
/// set, which lives as long as the plan (about 6 KiB a file: 160 MiB over 27,648 small files).
/// The bytes read are counted by the session's object store instead (`BytesRead`).
#[derive(Debug)]
struct LeanReaders(CachedParquetFileReaderFactory);

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
            ScalarValue::try_from_string(v.to_owned(), ty).ok()
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

/// A filter on the hour partition columns implied by a range of `time`.
pub fn hour_partition_filter(lo: Option<i64>, hi: Option<i64>) -> Option<Expr> {
    let slack = HOUR_SLACK_HOURS * 3_600_000_000;
    let key = col("year") * lit(1_000_000i64) + col("month") * lit(10_000i64) + col("day") * lit(100i64) + col("hour");
    let lo = lo.and_then(|l| hour_key(l.saturating_sub(slack)));
    let hi = hi.and_then(|h| hour_key(h.saturating_add(slack)));
    match (lo, hi) {
        (Some(l), Some(h)) => Some(key.between(lit(l), lit(h))),
        (Some(l), None) => Some(key.gt_eq(lit(l))),
        (None, Some(h)) => Some(key.lt_eq(lit(h))),
        (None, None) => None,
    }
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
        let hours = hour_partition_filter(lo, hi);
        let folders = self.scan_roots(&filters).await?;
        self.scan_folders(state, projection, &filters, hours.as_ref(), limit, folders).await
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
