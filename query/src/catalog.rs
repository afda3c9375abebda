//! The lake as SQL tables (DESIGN.md §3): `logs`, one `logs_<type>` per log type, and `events`.
//!
//! `logs` is a listing table over `{lake}/logs/` with the seven Hive partition columns
//! (`environment`, `organization`, `logtype` as strings; `year`, `month`, `day`, `hour` as
//! integers). Filters on partition columns prune folders before any file is opened. A filter on
//! `time` alone prunes hour partitions too: [`LakeTable`] derives a partition filter from it,
//! widened by 14 hours on each side, so that it stays correct for producers whose
//! `year/month/day/hour` fields are a local hour rather than the UTC one (every UTC offset is
//! within ±14 h).

use std::sync::Arc;

use arrow_schema::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableProvider},
    datasource::{
        TableType,
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    logical_expr::{Expr, Operator, TableProviderFilterPushDown, col, lit},
    physical_plan::{ExecutionPlan, empty::EmptyExec, union::UnionExec},
    scalar::ScalarValue,
};
use object_store::ObjectStore;
use sluice_auth::Orgs;
use sluice_schemas::{Registry, arrow_schema, partition_columns, validate_partition_value};

use crate::error::{Error, Result};

/// Hours added on each side of a `time` range when it is turned into an hour-partition filter.
pub const TIME_PRUNING_SLACK_HOURS: i64 = 14;

/// The partition columns and their SQL types.
pub fn partition_fields() -> Vec<(String, DataType)> {
    partition_columns().iter().map(|c| (c.name.clone(), c.ty.arrow())).collect()
}

/// The `logs` table: a listing table plus pruning of hour partitions by `time`, seeing only the
/// organizations of its scope.
#[derive(Debug)]
pub struct LakeTable {
    inner: ListingTable,
    scope: Orgs,
    store: Arc<dyn ObjectStore>,
    prefix: object_store::path::Path,
}

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
            .map_err(|e| Error::Lake { url: logs_url.into(), reason: e.to_string() })?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partition_fields());
        let schema = Arc::new(arrow_schema(&registry.lake_columns()));
        let prefix = url.prefix().clone();
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
        Ok(Self { inner: ListingTable::try_new(config)?, scope, store, prefix })
    }

    /// The environments in the lake: the valid `environment=…` folders under `logs/`.
    async fn environments(&self) -> datafusion::error::Result<Vec<String>> {
        let listing = match self.store.list_with_delimiter(Some(&self.prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("environment=").map(str::to_owned))
            .filter(|e| validate_partition_value(e).is_ok())
            .collect())
    }
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
    let slack = TIME_PRUNING_SLACK_HOURS * 3_600_000_000;
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
        let mut filters = filters.to_vec();
        let (lo, hi) = time_bounds(&filters);
        if let Some(f) = hour_partition_filter(lo, hi) {
            filters.push(f);
        }
        let Orgs::Some(orgs) = &self.scope else { return self.inner.scan(state, projection, &filters, limit).await };
        let mut scans = Vec::new();
        for env in self.environments().await? {
            for org in orgs {
                let mut rooted = filters.clone();
                rooted.push(col("environment").eq(lit(env.as_str())));
                rooted.push(col("organization").eq(lit(org.as_str())));
                scans.push(self.inner.scan(state, projection, &rooted, limit).await?);
            }
        }
        if scans.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema().project(p)?),
                None => self.schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(scans)
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
