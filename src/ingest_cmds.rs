//! `sluice serve`, `publish`, `import`, `replay` and `demo`.

use std::{
    fs,
    io::{self, BufRead, BufReader},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_ingest::{
    client::{PublishOptions, Publisher, Summary},
    config::{DEFAULT_LAKE, DEFAULT_LISTEN, Partial, Settings},
    import::{ImportOutcome, import_file},
    lake::Lake,
    replay::replay as replay_lake,
    serve::{Server, shutdown_signal},
    sns::{SnsOptions, SnsPublisher, topic_of_url},
};
use sluice_partitioner::Partitioner;

use crate::query_cmd::{AthenaArgs, EngineKind};
use sluice_query::{
    Engine, EngineConfig,
    api::QueryApi,
    exec::{ExecConfig, Executions},
};
use sluice_schemas::{Contract, Limits, Registry};

/// Flags of `sluice serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Lake URL: a folder, file:///path, or s3://bucket/prefix [default: ./sluice-data]
    #[arg(long, env = "SLUICE_LAKE", value_name = "URL")]
    lake: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8400]
    #[arg(long, env = "SLUICE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// A TOML settings file (flags and SLUICE_* variables override it).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Buffering hint: flush a partition's buffer at this size, MiB (1-128) [default: 64]
    #[arg(long, env = "SLUICE_BUFFER_SIZE", value_name = "MIB")]
    buffer_size: Option<u64>,
    /// Buffering hint: flush a buffer this old, seconds (0-900) [default: 60]
    #[arg(long, env = "SLUICE_BUFFER_INTERVAL", value_name = "SECS")]
    buffer_interval: Option<u64>,
    /// Folder of the write-ahead log [default: LAKE/_wal, or ./sluice-wal for S3 lakes]
    #[arg(long, env = "SLUICE_WAL_DIR", value_name = "DIR")]
    wal_dir: Option<PathBuf>,
    /// Largest write-ahead log before the API answers 503, MiB [default: 1024]
    #[arg(long, env = "SLUICE_WAL_MAX", value_name = "MIB")]
    wal_max: Option<u64>,
    /// Memory for buffered records, MiB [default: 512]
    #[arg(long, env = "SLUICE_MEMORY_BUDGET", value_name = "MIB")]
    memory_budget: Option<u64>,
    /// Largest request body, MiB [default: 16]
    #[arg(long, env = "SLUICE_MAX_BODY", value_name = "MIB")]
    max_body: Option<u64>,
    /// How long query results and exports are kept, seconds [default: 86400]
    #[arg(long, env = "SLUICE_EXPORT_TTL", value_name = "SECS")]
    export_ttl: Option<u64>,
    /// Folder of query results and exports [default: LAKE/_results]
    #[arg(long, env = "SLUICE_RESULTS_DIR", value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// Memory per query, MiB [default: 512]
    #[arg(long, env = "SLUICE_QUERY_MEMORY", value_name = "MIB")]
    query_memory: Option<u64>,
    /// Time per query, seconds [default: 300]
    #[arg(long, env = "SLUICE_QUERY_TIMEOUT", value_name = "SECS")]
    query_timeout: Option<u64>,
    /// Most records in one ingest request [default: 100000]
    #[arg(long, env = "SLUICE_MAX_RECORDS", value_name = "N")]
    max_records: Option<usize>,
    /// Memory of all queries running at once, MiB [default: the larger of 2048 and --query-memory]
    #[arg(long, env = "SLUICE_QUERY_MEMORY_TOTAL", value_name = "MIB")]
    query_memory_total: Option<u64>,
    /// Queries, searches, traces and exports running at once [default: 16]
    #[arg(long, env = "SLUICE_MAX_QUERIES", value_name = "N")]
    max_queries: Option<usize>,
    /// Queries, searches, traces and exports of one token running at once [default: 4]
    #[arg(long, env = "SLUICE_MAX_QUERIES_PER_CALLER", value_name = "N")]
    max_queries_per_caller: Option<usize>,
    /// Largest query result or export, MiB [default: 16384]
    #[arg(long, env = "SLUICE_MAX_RESULT", value_name = "MIB")]
    max_result: Option<u64>,
    /// Disk for one token's query results and exports, MiB [default: 16384]
    #[arg(long, env = "SLUICE_RESULTS_QUOTA", value_name = "MIB")]
    results_quota: Option<u64>,
    /// Disk for every token's query results and exports, MiB [default: 65536]
    #[arg(long, env = "SLUICE_RESULTS_TOTAL", value_name = "MIB")]
    results_total: Option<u64>,
    /// Free disk space that results leave alone, MiB [default: --wal-max + 1024]
    #[arg(long, env = "SLUICE_RESULTS_RESERVE", value_name = "MIB")]
    results_reserve: Option<u64>,
    /// Open connections [default: 1024]
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Open connections from one client address [default: 256]
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    max_connections_per_address: Option<usize>,
    /// Serve only the query API (no ingest, no write-ahead log): a query-only node.
    #[arg(long)]
    query_only: bool,
    /// Where queries and exports of the API run: DataFusion over --lake, or Athena (AWS mode:
    /// exports hand out presigned S3 URLs). Search and trace always use DataFusion over --lake.
    #[arg(long, value_enum, default_value_t = EngineKind::Datafusion, env = "SLUICE_ENGINE")]
    engine: EngineKind,
    #[command(flatten)]
    athena: AthenaArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

/// How `sluice serve` authenticates callers and limits them.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// `jwt`: every /v1 request needs a bearer token signed with SLUICE_JWT_SECRET (HS256) or a
    /// key of --jwks. `none`: no authentication, allowed only on a loopback --listen address.
    #[arg(long, env = "SLUICE_AUTH", value_name = "jwt|none")]
    auth: Option<String>,
    /// A JWKS file or URL whose keys sign tokens (RS256 or ES256; Cognito's
    /// https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json, say).
    #[arg(long, env = "SLUICE_JWKS", value_name = "FILE|URL")]
    jwks: Option<String>,
    /// The algorithm of the --jwks keys [default: RS256]
    #[arg(long, env = "SLUICE_JWT_ALGORITHM", value_name = "RS256|ES256")]
    jwt_algorithm: Option<String>,
    /// Accept only tokens with this `aud`.
    #[arg(long, env = "SLUICE_JWT_AUDIENCE", value_name = "AUD")]
    jwt_audience: Option<String>,
    /// Accept only tokens with this `iss`.
    #[arg(long, env = "SLUICE_JWT_ISSUER", value_name = "ISS")]
    jwt_issuer: Option<String>,
    /// Ingest requests a second per token subject, 0 for no limit [default: 200]
    #[arg(long, env = "SLUICE_INGEST_RATE", value_name = "N")]
    ingest_rate: Option<f64>,
    /// Queries, searches, traces and exports started a second per token subject, 0 for no
    /// limit [default: 20]
    #[arg(long, env = "SLUICE_QUERY_RATE", value_name = "N")]
    query_rate: Option<f64>,
    /// Time a client has to send a request's headers, seconds [default: 10]
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT", value_name = "SECS")]
    header_timeout: Option<u64>,
    /// Time a client has to send a request's body, seconds [default: 60]
    #[arg(long, env = "SLUICE_BODY_TIMEOUT", value_name = "SECS")]
    body_timeout: Option<u64>,
}

impl AuthArgs {
    /// These flags as a settings layer; the HS256 secret comes only from SLUICE_JWT_SECRET or the
    /// settings file, never from a flag (flags show in `ps`).
    fn partial(&self) -> Partial {
        Partial {
            auth: self.auth.clone(),
            jwt_secret: std::env::var("SLUICE_JWT_SECRET").ok().filter(|s| !s.is_empty()),
            jwks: self.jwks.clone(),
            jwt_algorithm: self.jwt_algorithm.clone(),
            jwt_audience: self.jwt_audience.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            ingest_rate: self.ingest_rate,
            query_rate: self.query_rate,
            header_timeout_secs: self.header_timeout,
            body_timeout_secs: self.body_timeout,
            ..Partial::default()
        }
    }
}

impl ServeArgs {
    fn partial(&self, schemas: Option<PathBuf>) -> Result<Partial> {
        let file = match &self.config {
            Some(p) => Partial::from_file(p)?,
            None => Partial::default(),
        };
        Ok(file.merge(self.auth.partial()).merge(Partial {
            lake: self.lake.clone(),
            listen: self.listen.clone(),
            wal_dir: self.wal_dir.clone(),
            schemas_dir: schemas,
            buffer_size_mib: self.buffer_size,
            buffer_interval_secs: self.buffer_interval,
            wal_max_mib: self.wal_max,
            memory_budget_mib: self.memory_budget,
            max_body_mib: self.max_body,
            export_ttl_secs: self.export_ttl,
            results_dir: self.results_dir.clone(),
            query_memory_mib: self.query_memory,
            query_timeout_secs: self.query_timeout,
            max_records_per_request: self.max_records,
            query_memory_total_mib: self.query_memory_total,
            max_queries: self.max_queries,
            max_queries_per_caller: self.max_queries_per_caller,
            max_result_mib: self.max_result,
            results_quota_mib: self.results_quota,
            results_total_mib: self.results_total,
            results_reserve_mib: self.results_reserve,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            ..Partial::default()
        }))
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    // Deep query plans recurse while they run: give worker threads room.
    tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).try_init().ok();
}

fn partitioner(registry: Registry, max_future: Option<chrono::Duration>) -> Partitioner {
    let mut limits = Limits::default();
    if let Some(f) = max_future {
        limits.max_future = f;
    }
    Partitioner::new(Contract { registry, limits })
}

/// The query API over the lake of `settings`.
async fn query_api(settings: &Settings, registry: Registry, athena: Option<&AthenaArgs>) -> Result<axum::Router> {
    if !settings.lake.starts_with("s3://") {
        fs::create_dir_all(settings.lake.strip_prefix("file://").unwrap_or(&settings.lake))
            .with_context(|| format!("cannot create the lake folder {}", settings.lake))?;
    }
    let engine = Engine::open(
        &settings.lake,
        registry,
        EngineConfig {
            memory_limit: settings.query_memory as usize,
            total_memory_limit: settings.query_memory_total as usize,
            timeout: settings.query_timeout,
            ..EngineConfig::default()
        },
    )
    .await?;
    let mut executions = Executions::new(
        engine,
        ExecConfig {
            ttl: settings.export_ttl,
            max_result_bytes: settings.max_result_bytes,
            quota_per_owner: settings.results_quota,
            quota_total: settings.results_total,
            reserve: settings.results_reserve,
            max_per_owner: settings.max_executions_per_caller,
            max_running: settings.max_queries,
            max_running_per_owner: settings.max_queries_per_caller,
            ..ExecConfig::new(settings.results_dir.clone())
        },
    )?;
    if let Some(a) = athena {
        executions = executions.with_athena(a.engine().await);
    }
    Ok(sluice_query::api::router(QueryApi { executions }))
}

/// `sluice serve --query-only`: the query API alone.
async fn serve_query_only(settings: &Settings, registry: Registry, athena: Option<&AthenaArgs>) -> Result<()> {
    let app = query_api(settings, registry, athena)
        .await?
        .route("/healthz", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .fallback(sluice_ingest::server::not_found);
    let app = sluice_ingest::serve::gate(settings).await?.protect(app);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}; pick another address with --listen", settings.listen))?;
    eprintln!("sluice serve: listening on http://{}  lake: {} (query API only)", listener.local_addr()?, settings.lake);
    warn_if_open(settings);
    sluice_ingest::serve::serve_http(listener, app, settings.header_timeout, settings.connections, shutdown_signal())
        .await;
    Ok(())
}

/// Says loudly, on the terminal, that authentication is off.
fn warn_if_open(settings: &Settings) {
    if settings.auth.is_none() {
        eprintln!(
            "sluice serve: WARNING: authentication is off (--auth none). Anyone who can reach {} can read and \
             write every organization's logs. Use it only for a trial on this machine.",
            settings.listen
        );
    }
}

/// `sluice serve`.
pub fn serve(args: ServeArgs, registry: Registry, schemas: Option<PathBuf>) -> Result<ExitCode> {
    init_logs("info");
    let settings = args.partial(schemas)?.validate()?;
    let athena = (args.engine == EngineKind::Athena).then_some(&args.athena);
    if args.query_only {
        runtime()?.block_on(serve_query_only(&settings, registry, athena))?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = partitioner(registry.clone(), Some(settings.max_future));
    runtime()?.block_on(async {
        let server = Server::start(&settings, p, Some(query_api(&settings, registry, athena).await?)).await?;
        tracing::info!(
            listen = %server.addr,
            lake = %server.pipeline.lake().url(),
            recovered = server.recovery.entries,
            "sluice serve is ready: POST /v1/logs"
        );
        eprintln!("sluice serve: listening on http://{}  lake: {}", server.addr, server.pipeline.lake().url());
        warn_if_open(&settings);
        tokio::select! {
            () = shutdown_signal() => {}
            () = server.lost() => eprintln!("sluice serve: another process took the lake over; stopping"),
        }
        eprintln!("sluice serve: shutting down, flushing buffers to the lake…");
        server.stop().await?;
        eprintln!("sluice serve: stopped; everything accepted is in the lake");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Flags of `sluice publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// NDJSON files to send, or `-` for standard input [default: -]
    files: Vec<PathBuf>,
    /// Where to send: the URL of a `sluice serve`, or `sns://TOPIC_ARN` for the SNS topic of an
    /// AWS deployment (AWS settings from the environment: AWS_REGION, AWS_PROFILE, …).
    #[arg(long, env = "SLUICE_URL", default_value = "http://127.0.0.1:8400", value_name = "URL")]
    to: String,
    /// With `sns://`: send records as they are, without checking them against the record
    /// contract first (the transform Lambda still checks them).
    #[arg(long)]
    no_validate: bool,
    /// Records per request.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// Bytes per request (before compression).
    #[arg(long, default_value_t = 4 << 20)]
    batch_bytes: usize,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
    /// Requests in flight at once [default: 4; `PublishBatch` calls with `sns://`: 8]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: Option<u16>,
    /// Bearer token for servers that require one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn bar(len: Option<u64>, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{msg}} ({{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!("{{spinner}} {what} {{bytes}} {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

fn print_summary(s: &Summary) {
    eprintln!(
        "sent {} records: {} accepted, {} rejected ({} retries)",
        s.sent,
        s.accepted,
        s.rejected_total(),
        s.retries
    );
    for (code, n) in &s.rejected {
        eprintln!("  {code:<26} {n}");
    }
    for e in s.examples.iter().take(5) {
        eprintln!("  line {}: {}: {}", e.line, e.code, e.message);
    }
}

/// Where `sluice publish` sends records.
enum Producer {
    Http(Publisher),
    Sns(SnsPublisher),
}

/// Publishes one input and returns its summary.
async fn publish_input(producer: &Producer, file: &PathBuf, quiet: bool) -> Result<Summary> {
    let (reader, len): (Box<dyn BufRead + Send>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(BufReader::new(io::stdin())), None)
    } else {
        let f = fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, f)), len)
    };
    let pb = bar(len, quiet, &file.display().to_string());
    let progress = |s: &Summary| {
        pb.set_position(s.bytes);
        pb.set_message(format!("{} accepted, {} rejected", s.accepted, s.rejected_total()));
    };
    let s = match producer {
        Producer::Http(p) => p.publish(reader, progress).await?,
        Producer::Sns(p) => p.publish(reader, progress).await?,
    };
    pb.finish_and_clear();
    Ok(s)
}

/// `sluice publish`.
pub fn publish(args: PublishArgs, registry: Registry) -> Result<ExitCode> {
    let rt = runtime()?;
    let producer = if let Some(topic) = topic_of_url(&args.to) {
        let mut opts = SnsOptions::new(topic);
        if let Some(n) = args.concurrency {
            opts.concurrency = n.into();
        }
        if !args.no_validate {
            opts.contract = Some(Contract { registry, limits: Limits::default() });
        }
        Producer::Sns(rt.block_on(SnsPublisher::new(opts))?)
    } else if args.to.starts_with("http://") || args.to.starts_with("https://") {
        Producer::Http(Publisher::new(PublishOptions {
            url: args.to.clone(),
            batch_records: args.batch_records,
            batch_bytes: args.batch_bytes,
            gzip: args.gzip,
            concurrency: args.concurrency.map_or(PublishOptions::default().concurrency, usize::from),
            token: args.token.clone(),
            ..PublishOptions::default()
        })?)
    } else {
        bail!("--to {:?} must be the http:// URL of a sluice server or sns://TOPIC_ARN", args.to);
    };
    let files = if args.files.is_empty() { vec![PathBuf::from("-")] } else { args.files.clone() };
    let total = rt.block_on(async {
        let mut total = Summary::default();
        for f in &files {
            total.merge(publish_input(&producer, f, args.quiet).await?);
        }
        Ok::<_, anyhow::Error>(total)
    })?;
    print_summary(&total);
    Ok(if total.rejected_total() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Flags of `sluice import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NDJSON (.ndjson, .json, .jsonl, optionally .gz) or CSV (.csv, .csv.gz) files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Lake URL.
    #[arg(long, env = "SLUICE_LAKE", default_value = DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Memory for buffered rows, MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    memory_budget: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// `sluice import`.
pub fn import(args: ImportArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    let rt = runtime()?;
    let lake = rt.block_on(Lake::open(&args.lake))?;
    let p = partitioner(registry, None);
    let mut rejected = 0;
    rt.block_on(async {
        for f in &args.files {
            let pb = bar(None, args.quiet, &f.display().to_string());
            pb.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {pos} records")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.set_prefix(f.display().to_string());
            match import_file(&lake, &p, f, args.memory_budget << 20, |n| pb.set_position(n)).await? {
                ImportOutcome::Imported(e) => {
                    pb.finish_and_clear();
                    eprintln!(
                        "{}: imported {} records ({} accepted, {} rejected to errors/) into {} files",
                        f.display(),
                        e.records,
                        e.accepted,
                        e.rejected,
                        e.files
                    );
                    rejected += e.rejected;
                }
                ImportOutcome::AlreadyImported(e) => {
                    pb.finish_and_clear();
                    eprintln!(
                        "{}: already imported on {} (same content as {}, sha256 {}); nothing to do",
                        f.display(),
                        e.imported_at,
                        e.path,
                        &e.sha256[..12]
                    );
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(if rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Flags of `sluice replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Lake URL.
    #[arg(long, env = "SLUICE_LAKE", default_value = DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Memory for buffered rows, MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    memory_budget: u64,
}

/// `sluice replay`.
pub fn replay(args: ReplayArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    let rt = runtime()?;
    let lake = rt.block_on(Lake::open(&args.lake))?;
    let p = partitioner(registry, None);
    let pb = bar(None, false, "replaying");
    pb.set_style(
        ProgressStyle::with_template("{spinner} replaying errors/: {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let report = rt.block_on(replay_lake(&lake, &p, args.memory_budget << 20, |r| {
        pb.set_message(format!("{} files, {} records, {} delivered", r.files, r.records, r.delivered))
    }))?;
    pb.finish_and_clear();
    let failing: u64 = report.still_failing.values().sum();
    eprintln!(
        "replayed {} error records from {} files: {} delivered to the lake, {} still failing",
        report.records, report.files, report.delivered, failing
    );
    for (code, n) in &report.still_failing {
        eprintln!("  {code:<26} {n}");
    }
    if report.unreadable > 0 {
        eprintln!("  {} lines are not error records and were left as they are", report.unreadable);
    }
    Ok(ExitCode::SUCCESS)
}

/// The queries `sluice demo` runs.
const DEMO_QUERIES: &[(&str, &str)] = &[
    ("records by log type", "SELECT logtype, count(*) AS records FROM logs GROUP BY logtype ORDER BY records DESC"),
    (
        "error rate by organization",
        "SELECT organization, count(*) AS records, \
         round(100.0 * avg(CASE WHEN success = false THEN 1 ELSE 0 END), 1) AS failed_pct \
         FROM logs GROUP BY organization ORDER BY organization",
    ),
    (
        "slowest connectors (agw)",
        "SELECT connector, count(*) AS calls, max(duration_ms) AS slowest_ms FROM logs_agw \
         WHERE connector IS NOT NULL GROUP BY connector ORDER BY slowest_ms DESC LIMIT 5",
    ),
    (
        "a request's timeline across servers (events)",
        "SELECT time, server, action, success FROM events WHERE transaction_id = \
         (SELECT transaction_id FROM events ORDER BY time DESC LIMIT 1) ORDER BY time",
    ),
];

/// Flags of `sluice demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Lake folder.
    #[arg(long, default_value = DEFAULT_LAKE, value_name = "DIR")]
    lake: String,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// How many sample records to publish.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Leave after the tour instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

/// The organizations a tenant's token sees through the search API since `from`.
async fn tenant_view(url: &str, token: &str, from: chrono::DateTime<chrono::Utc>) -> Result<Vec<String>> {
    let from = from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/search?page_size=1000&from={from}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = r.status();
    let v: serde_json::Value = serde_json::from_str(&r.text().await?)?;
    if !status.is_success() {
        bail!("the search as a tenant failed: {status} {v}");
    }
    let mut orgs: Vec<String> = v["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["organization"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    orgs.sort();
    orgs.dedup();
    Ok(orgs)
}

/// `sluice demo`.
pub fn demo(args: DemoArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    // The demo serves with authentication on, like `sluice serve`: with SLUICE_JWT_SECRET when
    // set, otherwise with a secret made up for this run.
    let secret = std::env::var("SLUICE_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()));
    let settings = Partial {
        lake: Some(args.lake.clone()),
        listen: Some(args.listen.clone()),
        buffer_interval_secs: Some(5),
        jwt_secret: Some(secret.clone()),
        ..Partial::default()
    }
    .validate()?;
    let hour = Duration::from_secs(3600);
    let mint = |sub: &str, org: &str, roles: &[&str]| -> Result<String> {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let claims = crate::token_cmd::claims(sub, &[org.to_owned()], &roles, 12 * hour)?;
        sluice_auth::token::mint(secret.as_bytes(), &claims).map_err(|e| anyhow::anyhow!("{}", e.0))
    };
    let operator = mint("demo-operator", "*", &["admin"])?;
    let tenant_org = "1000";
    let tenant = mint("demo-analyst-1000", tenant_org, &["logs:read", "exports:write"])?;
    let p = partitioner(registry.clone(), None);
    runtime()?.block_on(async {
        println!("sluice demo — the embedded pipeline on this machine\n");
        let server = Server::start(&settings, p, Some(query_api(&settings, registry.clone(), None).await?)).await?;
        let url = format!("http://{}", server.addr);
        println!("1. serving the ingest API at {url} (write-ahead log in {})", settings.wal_dir.display());

        let hours = 6;
        let now = chrono::Utc::now();
        let start = now - chrono::Duration::hours(hours) - chrono::Duration::minutes(1);
        let mut data = Vec::new();
        let counts = sluice_sample_data::generate(
            sluice_sample_data::Options {
                records: args.records,
                seed: now.timestamp() as u64,
                orgs: 4,
                hours: hours as u32,
                start,
                bad_fraction: 0.01,
            },
            &mut data,
        )?;
        println!(
            "2. generated {} sample records over the last {hours} hours ({} deliberately bad)",
            counts.good + counts.bad,
            counts.bad
        );

        let publisher =
            Publisher::new(PublishOptions { url: url.clone(), token: Some(operator.clone()), ..PublishOptions::default() })?;
        let pb = bar(Some(data.len() as u64), false, "publishing");
        let summary = publisher
            .publish(io::Cursor::new(data), |s| {
                pb.set_position(s.bytes);
                pb.set_message(format!("{} accepted", s.accepted));
            })
            .await?;
        pb.finish_and_clear();
        println!(
            "3. published them with POST /v1/logs and an operator token: {} accepted, {} rejected with reason codes:",
            summary.accepted,
            summary.rejected_total()
        );
        for (code, n) in &summary.rejected {
            println!("     {code:<26} {n}");
        }

        let t = std::time::Instant::now();
        server.pipeline.flush().await?;
        println!("4. flushed the buffers to Parquet in {:.1} s", t.elapsed().as_secs_f64());
        let stats = server.pipeline.lake().stats().await?;
        let lake = server.pipeline.lake().url().to_owned();
        println!("\nThe lake at {lake}:");
        println!("   {:<10} {:>6} {:>9}", "logtype", "files", "rows");
        for (lt, (files, rows)) in &stats.by_logtype {
            println!("   {lt:<10} {files:>6} {rows:>9}");
        }
        println!(
            "   errors/processing-failed: {} rejected records in {} files (replay them with `sluice replay --lake {lake}`)",
            stats.error_records, stats.error_files
        );
        let engine = Engine::open(&lake, registry, EngineConfig::default()).await?;
        println!("\nExample queries (sluice query --lake {lake} -c '…'):");
        for (title, sql) in DEMO_QUERIES {
            println!("\n-- {title}\n{sql};");
            let batches = engine.query(sql, Some(20)).await?;
            println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
        }
        let seen = tenant_view(&url, &tenant, start).await?;
        println!(
            "\nTenant isolation: a token for organization {tenant_org} (roles logs:read, exports:write) searches the\n\
             same hours through GET /v1/search and sees organizations {seen:?} only."
        );
        println!("\nTokens for this run (signed with {}):", if std::env::var("SLUICE_JWT_SECRET").is_ok() { "SLUICE_JWT_SECRET" } else { "a secret made up for this run" });
        println!("   export OPERATOR='{operator}'");
        println!("   export ANALYST='{tenant}'   # organization {tenant_org} only");
        println!("\nTry it:");
        println!("   curl -s {url}/metrics | grep sluice_records");
        println!(
            "   echo '{{\"organizationID\":\"1000\",\"environment\":\"dev\",\"logType\":\"web\",\"time\":\"{}\",\"description\":\"hello\"}}' | \\\n     curl -s -H \"authorization: Bearer $OPERATOR\" -H 'content-type: application/x-ndjson' --data-binary @- {url}/v1/logs",
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        println!("   sluice generate --records 1000 --start {} | sluice publish --to {url} --token \"$OPERATOR\"", start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        println!("   sluice query --lake {lake}            # an interactive SQL prompt (local files: no token)");
        println!(
            "   curl -s -X POST {url}/v1/exports -H \"authorization: Bearer $ANALYST\" -H 'content-type: application/json' -d '{{\"sql\": \"SELECT * FROM logs_agw\"}}'"
        );
        println!(
            "   curl -s -H \"authorization: Bearer $ANALYST\" '{url}/v1/search?q=timeout&from={}'",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        println!("   SLUICE_JWT_SECRET=… sluice token --org 1001 --roles logs:read --ttl 8h   # more tokens");
        if args.exit {
            server.stop().await?;
            println!("\nstopped (--exit).");
        } else {
            println!("\nServing until Ctrl-C…");
            shutdown_signal().await;
            println!("\nshutting down, flushing buffers…");
            server.stop().await?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
