//! `sluice serve`: the embedded pipeline and the query API, or the query API alone.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Args;
use sluice_schemas::Registry;

use crate::{
    config::{Partial, Settings},
    runtime::{AthenaArgs, EngineKind, init_logs, partitioner, runtime},
    server::{Server, healthz, protect, query_routes, serve_http, shutdown_signal, warn_if_open},
};

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
    /// Largest write-ahead log before the API answers 503, MiB [default: --memory-budget + 1024]
    #[arg(long, env = "SLUICE_WAL_MAX", value_name = "MIB")]
    wal_max: Option<u64>,
    /// Memory for buffered records, MiB [default: an eighth of the memory, 256-4096]
    #[arg(long, env = "SLUICE_MEMORY_BUDGET", value_name = "MIB")]
    memory_budget: Option<u64>,
    /// Largest request body, MiB [default: 16]
    #[arg(long, env = "SLUICE_MAX_BODY", value_name = "MIB")]
    max_body: Option<u64>,
    /// Largest file upload (`POST /v1/imports`, streamed to disk), MiB [default: 4096]
    #[arg(long, env = "SLUICE_MAX_UPLOAD", value_name = "MIB")]
    max_upload: Option<u64>,
    /// Folder of upload jobs: uploads while they are imported, statuses, reports of rejected
    /// rows [default: LAKE/_imports; ./sluice-imports for an S3 lake]
    #[arg(long, env = "SLUICE_IMPORTS_DIR", value_name = "DIR")]
    imports_dir: Option<PathBuf>,
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
    /// A file of access keys for Firehose HTTP endpoint delivery (`POST /firehose`), each bound
    /// to its organizations (docs/firehose.md)
    #[arg(long, env = "SLUICE_FIREHOSE_KEYS", value_name = "FILE")]
    firehose_keys: Option<std::path::PathBuf>,
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
            firehose_keys: self.firehose_keys.clone(),
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
            max_upload_mib: self.max_upload,
            imports_dir: self.imports_dir.clone(),
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

/// `sluice serve --query-only`: the query API alone.
async fn serve_query_only(settings: &Settings, registry: Registry, athena: Option<&AthenaArgs>) -> Result<()> {
    let shutdown = shutdown_signal();
    let routes = query_routes(settings, registry, athena)
        .await?
        .merge(sluice_auth::routes::Routes::new().open(axum::http::Method::GET, "/healthz", healthz).with_state(()));
    let app = protect(settings, routes).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}; pick another address with --listen", settings.listen))?;
    eprintln!("sluice serve: listening on http://{}  lake: {} (query API only)", listener.local_addr()?, settings.lake);
    warn_if_open(settings);
    serve_http(listener, app, settings.header_timeout, settings.connections, shutdown).await;
    Ok(())
}

/// `sluice serve`.
pub fn run(args: ServeArgs, registry: Registry, schemas: Option<PathBuf>) -> Result<ExitCode> {
    init_logs("info");
    let settings = args.partial(schemas)?.validate()?;
    // Extra log types from the settings file (`schemas_dir`), when no flag or variable named some.
    let registry = match &settings.schemas_dir {
        Some(dir) => crate::runtime::registry(Some(dir))?,
        None => registry,
    };
    let athena = (args.engine == EngineKind::Athena).then_some(&args.athena);
    if args.query_only {
        runtime()?.block_on(serve_query_only(&settings, registry, athena))?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = partitioner(registry.clone(), Some(settings.max_future));
    runtime()?.block_on(async {
        let shutdown = shutdown_signal();
        let server = Server::start(&settings, p, query_routes(&settings, registry, athena).await?).await?;
        tracing::info!(
            listen = %server.addr,
            lake = %server.pipeline.lake().url(),
            recovered = server.recovery.entries,
            "sluice serve is ready: POST /v1/logs"
        );
        for d in server.routes.iter() {
            tracing::debug!(method = %d.method, path = %d.path, role = %d.access.role, "route");
        }
        eprintln!("sluice serve: listening on http://{}  lake: {}", server.addr, server.pipeline.lake().url());
        warn_if_open(&settings);
        tokio::select! {
            () = shutdown => {}
            () = server.lost() => eprintln!("sluice serve: another process took the lake over; stopping"),
        }
        eprintln!("sluice serve: shutting down, flushing buffers to the lake…");
        server.stop().await?;
        eprintln!("sluice serve: stopped; everything accepted is in the lake");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
