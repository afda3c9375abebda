//! The query engine: DataFusion over the lake, safe for SQL from strangers.
//!
//! * Queries only: the guard ([`crate::guard`]) refuses DDL, DML (`INSERT`, `COPY`) and
//!   statements (`SET`, transactions) from the parsed statement, before planning; URL tables
//!   are off; the SQL text has a size limit.
//! * Each query runs in its own session with its own memory pool inside one pool all queries
//!   share (a clean `ResourcesExhausted` error past either limit), with scalar functions whose
//!   output is bounded ([`crate::limits`]), under a timeout, and can be cancelled by dropping its
//!   stream.
//! * Parquet footers are cached across queries (16 MiB). File statistics are not collected, and
//!   DataFusion's listing cache is off: it lists the whole table on every miss (and keeps nothing
//!   past 1 MiB of entries, a few thousand files), while a scan here lists only the folders its
//!   partition filters leave (see [`crate::catalog::LakeTable`]) through the engine's
//!   [`FileIndex`], which keeps a local lake's listing while its folders are unchanged and a
//!   summary of each file (so every query still sees the newest files, and a needle lookup
//!   opens only the files that may hold it).

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use datafusion::{
    arrow::record_batch::RecordBatch,
    error::DataFusionError,
    execution::{
        SendableRecordBatchStream, SessionStateBuilder, TaskContext,
        cache::cache_manager::{CacheManager, CacheManagerConfig},
        memory_pool::GreedyMemoryPool,
        runtime_env::RuntimeEnvBuilder,
    },
    logical_expr::ScalarUDF,
    physical_plan::ExecutionPlan,
    prelude::{SQLOptions, SessionConfig, SessionContext},
};
use futures::StreamExt;
use object_store::ObjectStore;
use sluice_lake::{Lake, files::FileIndex, live::LiveView};
use sluice_schemas::{Orgs, Registry};
use url::Url;

use crate::{
    catalog::{LakeTable, events_view_sql, logtype_view_sql},
    error::{Error, Limit, Result},
    guard::parse_query,
    limits::{QueryPool, bounded_functions},
};

/// Limits and settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Largest SQL text, in bytes.
    pub max_sql_bytes: usize,
    /// Memory per query, in bytes.
    pub memory_limit: usize,
    /// Memory of every query of the engine together, in bytes.
    pub total_memory_limit: usize,
    /// Time per query.
    pub timeout: Duration,
    /// Threads per query.
    pub target_partitions: usize,
    /// Parquet footers kept across queries, bytes; 0 for an engine of one query (`sluice query
    /// -c`, `sluice export`), which would only pay for measuring each footer it keeps.
    pub footer_cache_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_sql_bytes: 64 * 1024,
            memory_limit: 512 << 20,
            total_memory_limit: 2 << 30,
            timeout: Duration::from_secs(300),
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            footer_cache_bytes: METADATA_CACHE_BYTES,
        }
    }
}

/// Parquet footers kept across queries (DataFusion's default is 50 MiB; a footer of a small
/// file of the lake is 10–20 KiB).
const METADATA_CACHE_BYTES: usize = 16 << 20;

/// The bytes a session has read from the lake (a [`SessionConfig`] extension): what an
/// execution reports as `bytes_scanned`. Counted by the session's object store rather than
/// summed from the scans' per-file metrics, which DataFusion keeps for every file a scan opens.
#[derive(Debug)]
pub struct BytesRead(pub Arc<AtomicU64>);

/// The lake as a SQL engine.
#[derive(Debug, Clone)]
pub struct Engine {
    url: Url,
    logs_url: String,
    store: LiveView,
    registry: Registry,
    config: EngineConfig,
    caches: Arc<CacheManager>,
    scope: Orgs,
    /// The memory every query of this engine shares.
    memory: Arc<GreedyMemoryPool>,
    /// The memory the queries of each caller share (half of `memory`), by caller.
    callers: Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<GreedyMemoryPool>>>>,
    /// The pool of the caller this engine runs queries for, if any.
    caller: Option<Arc<GreedyMemoryPool>>,
    /// The scalar functions, bounded ([`crate::limits::bounded_functions`]).
    functions: Arc<Vec<ScalarUDF>>,
    /// The lake's listing and its files' summaries, kept between queries.
    files: FileIndex,
    /// The transaction the `logs` table reads files for only (see [`Engine::tracing`]).
    needle: Option<String>,
}

impl Engine {
    /// An engine over the lake at the URL `lake` (a folder, `file://…`, or `s3://bucket/prefix`;
    /// the same rules as every command, [`Lake::open_existing`]).
    pub async fn open(lake: &str, registry: Registry, config: EngineConfig) -> Result<Self> {
        Self::for_lake(&Lake::open_existing(lake).await?, registry, config)
    }

    /// An engine over `lake`.
    pub fn for_lake(lake: &Lake, registry: Registry, config: EngineConfig) -> Result<Self> {
        let (store, url) = lake.engine_store()?;
        let mut engine = Self::with_store(Arc::clone(&store), url, registry, config)?;
        if let Some(root) = lake.local_root() {
            // The store is the local file system: listings read only the folders that changed,
            // and summaries are kept in the lake for the next process.
            engine.files = FileIndex::local(engine.store.clone(), store, root)?;
        }
        Ok(engine)
    }

    /// An engine over `store`, whose lake root is `url` (used with custom stores in tests).
    /// Every listing goes through [`LiveView`], so files that `sluice compact` replaced are never
    /// read next to the file that replaced them.
    pub fn with_store(store: Arc<dyn ObjectStore>, url: Url, registry: Registry, config: EngineConfig) -> Result<Self> {
        let view = LiveView::new(Arc::clone(&store));
        let files = FileIndex::new(view.clone(), store);
        let store = view;
        let caches = CacheManager::try_new(
            &CacheManagerConfig::default()
                .with_list_files_cache_limit(0)
                .with_metadata_cache_limit(config.footer_cache_bytes),
        )?;
        let logs_url =
            url.join("logs/").map_err(|e| Error::Location { url: url.to_string(), reason: e.to_string() })?.to_string();
        let memory = Arc::new(GreedyMemoryPool::new(config.total_memory_limit.max(config.memory_limit)));
        let defaults = SessionStateBuilder::new().with_default_features().build();
        let functions = Arc::new(bounded_functions(defaults.scalar_functions().values()));
        Ok(Self {
            url,
            logs_url,
            store,
            registry,
            config,
            caches,
            scope: Orgs::All,
            memory,
            callers: Arc::default(),
            caller: None,
            functions,
            files,
            needle: None,
        })
    }

    /// The same engine reading, for the `logs` table and the views over it, only the files that
    /// may hold a record or an event of the transaction `id` (by the bloom filters of the files'
    /// transaction ids): what `GET /v1/trace/{id}` runs its queries on. Filters
    /// `transaction_id = …` of any query prune the same way by themselves; an event's
    /// transaction id is below `unnest`, where no filter reaches the scan.
    /// Its queries share one listing of the lake ([`FileIndex::snapshot`]).
    pub fn tracing(&self, id: &str) -> Self {
        Self { needle: Some(id.to_owned()), files: self.files.snapshot(), ..self.clone() }
    }

    /// The lake's listing and its files' summaries (a server warms them once started).
    pub fn files(&self) -> &FileIndex {
        &self.files
    }

    /// The key of the lake's `logs/` folder in its store.
    pub fn logs_prefix(&self) -> Result<object_store::path::Path> {
        Ok(datafusion::datasource::listing::ListingTableUrl::parse(&self.logs_url)?.prefix().clone())
    }

    /// The same engine seeing only the organizations of `scope`: every table of its sessions
    /// (`logs`, the `logs_<type>` views, `events`) is rooted at those organizations' partitions.
    pub fn scoped(&self, scope: Orgs) -> Self {
        Self { scope, ..self.clone() }
    }

    /// The same engine running queries for `caller` (an owner key): its queries running at
    /// once share half of the memory of all queries, so one caller never takes all of it.
    pub fn for_caller(&self, caller: &str) -> Self {
        let mut callers = self.callers.lock().expect("callers lock");
        callers.retain(|_, p| p.strong_count() > 0);
        let pool = callers.get(caller).and_then(std::sync::Weak::upgrade).unwrap_or_else(|| {
            let limit = (self.config.total_memory_limit / 2).max(self.config.memory_limit);
            let pool = Arc::new(GreedyMemoryPool::new(limit));
            callers.insert(caller.to_owned(), Arc::downgrade(&pool));
            pool
        });
        Self { caller: Some(pool), ..self.clone() }
    }

    /// The organizations this engine sees.
    pub fn scope(&self) -> &Orgs {
        &self.scope
    }

    /// The registry of log types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A session over the lake with its own memory pool and the shared caches.
    pub async fn session(&self) -> Result<SessionContext> {
        let caches = CacheManagerConfig::default()
            .with_list_files_cache_limit(0)
            .with_metadata_cache_limit(self.config.footer_cache_bytes)
            .with_file_statistics_cache(self.caches.get_file_statistic_cache())
            .with_file_metadata_cache(Some(self.caches.get_file_metadata_cache()));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(QueryPool::new(
                self.config.memory_limit,
                self.caller.iter().chain([&self.memory]).cloned().collect(),
            )))
            .with_cache_manager(caches)
            .build_arc()?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(self.config.target_partitions)
            .with_default_catalog_and_schema("sluice", "lake");
        let read = Arc::new(AtomicU64::new(0));
        let mut config = config.with_extension(Arc::new(BytesRead(Arc::clone(&read))));
        config.options_mut().execution.parquet.pushdown_filters = true;
        // File statistics would be gathered from every file's footer while planning and kept
        // for the whole scan (about 40 KiB a file here): on a lake of many small files that was
        // a third of an export's memory and most of its planning time. Partition pruning and
        // the row-group statistics in each footer still apply.
        config.options_mut().execution.collect_statistics = false;
        config.options_mut().sql_parser.recursion_limit = datafusion::config::ConfigNonZeroUsize::try_new(200)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for f in self.functions.iter() {
            ctx.register_udf(f.clone());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(self.store.counting_reads(read));
        ctx.register_object_store(&self.url, Arc::clone(&store));
        let logs = LakeTable::new(&self.logs_url, &self.registry, store, self.files.clone(), self.scope.clone())?
            .with_needle(self.needle.clone());
        ctx.register_table("logs", Arc::new(logs))?;
        for lt in self.registry.names() {
            let sql = logtype_view_sql(&self.registry, lt).expect("registered");
            let plan = ctx.state().create_logical_plan(&sql).await?;
            ctx.register_table(
                format!("logs_{lt}"),
                Arc::new(datafusion::catalog::view::ViewTable::new(plan, Some(sql))),
            )?;
        }
        let sql = events_view_sql();
        let plan = ctx.state().create_logical_plan(&sql).await?;
        ctx.register_table("events", Arc::new(datafusion::catalog::view::ViewTable::new(plan, Some(sql))))?;
        Ok(ctx)
    }

    /// Plans a query from untrusted SQL: the physical plan and the context to run it in. Only
    /// queries are allowed; planning runs under the timeout.
    pub async fn plan(&self, sql: &str) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
        let statement = parse_query(sql, self.config.max_sql_bytes)?;
        let ctx = self.session().await?;
        let task = ctx.task_ctx();
        let timeout = self.config.timeout;
        let planned = on_big_stack(async move {
            let plan = ctx.state().statement_to_plan(statement).await?;
            // The statement was checked; the plan is checked again, in case a query plans into
            // something that is not one.
            SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false)
                .verify_plan(&plan)?;
            Ok::<_, Error>(ctx.execute_logical_plan(plan).await?.create_physical_plan().await?)
        });
        let plan = tokio::time::timeout(timeout, planned)
            .await
            .map_err(|_| Limit::Time { secs: timeout.as_secs(), planning: true })??;
        Ok((plan, task))
    }

    /// Plans a query from untrusted SQL and starts it (see [`Engine::plan`]).
    pub async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let (plan, task) = self.plan(sql).await?;
        Ok(datafusion::physical_plan::execute_stream(plan, task)?)
    }

    /// Runs a query and collects at most `max_rows` rows (all when `None`), under the timeout.
    pub async fn query(&self, sql: &str, max_rows: Option<usize>) -> Result<Vec<RecordBatch>> {
        let timeout = self.config.timeout;
        let run = async {
            let mut stream = self.execute(sql).await?;
            let mut out = Vec::new();
            let mut rows = 0usize;
            while let Some(b) = stream.next().await {
                let b = b?;
                if let Some(max) = max_rows {
                    if rows >= max {
                        break;
                    }
                    let take = (max - rows).min(b.num_rows());
                    rows += take;
                    out.push(b.slice(0, take));
                } else {
                    rows += b.num_rows();
                    out.push(b);
                }
            }
            Ok::<_, Error>(out)
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Limit::Time { secs: timeout.as_secs(), planning: false })?
    }
}

/// Stack of the thread that plans a query: planning recurses over the statement's tree.
const PLANNING_STACK: usize = 64 << 20;

/// Runs `fut` to completion on a thread of its own with a large stack, on the current runtime.
async fn on_big_stack<T: Send + 'static>(fut: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-plan".into())
        .stack_size(PLANNING_STACK)
        .spawn(move || {
            let _ = tx.send(handle.block_on(fut));
        })
        .map_err(Error::io("a planning thread"))?;
    rx.await.map_err(|_| Error::Engine(Box::new(DataFusionError::Internal("the planning thread failed".into()))))?
}
