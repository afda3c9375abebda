//! The server `sluice serve` and `sluice demo` run: the embedded pipeline and the query API
//! behind one gate, composed from the library crates.
//!
//! ```text
//! TcpListener ─► auth::http::serve (deadlines, connection limits)
//!                  └─► Gate (declared routes only, token, role, rate) ─► ingest routes ─► Pipeline ─► lake
//!                                                                    └─► query routes ─► Executions ─► Engine
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use axum::{Json, Router, http::StatusCode};
use sluice_auth::{
    ApiError, Authn, Gate, Verifier,
    http::ConnectionLimits,
    routes::{RouteTable, Routes},
};
use sluice_ingest::{
    metrics::Metrics,
    server::BodyLimits,
    stream::{Pipeline, StreamConfig},
    uploads::UploadConfig,
    wal::{Recovery, WalConfig},
};
use sluice_lake::{Lake, lock::LakeLock};
use sluice_partitioner::Partitioner;
use sluice_query::{
    Engine, EngineConfig,
    api::QueryApi,
    exec::{ExecConfig, Executions},
};
use sluice_schemas::Registry;

use crate::{config::Settings, runtime::AthenaArgs};

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The pipeline behind it.
    pub pipeline: Pipeline,
    /// What the log held at start.
    pub recovery: Recovery,
    /// Every `/v1` route it serves, with the role each needs.
    pub routes: RouteTable,
    /// The hold on the lake (one server a lake).
    lock: LakeLock,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Size of a write-ahead-log segment.
const SEGMENT_BYTES: u64 = 64 << 20;

/// How long requests in flight may take to finish once a server stops.
const DRAIN: Duration = Duration::from_secs(30);

impl Server {
    /// Opens the lake and the log, re-delivers what the log holds, and starts listening, with
    /// the query API of `query` beside the ingest API.
    pub async fn start(settings: &Settings, partitioner: Partitioner, query: Routes) -> Result<Self> {
        let lake = Lake::open(&settings.lake).await?;
        let lock = LakeLock::acquire(&lake, "serve").await?;
        lake.complete_index().await?;
        // What a crashed writer staged and never renamed, swept in the background (a lake of
        // many folders takes a while to walk).
        let sweeper = lake.clone();
        tokio::task::spawn_blocking(move || {
            let n = sweeper.sweep_staged(sluice_lake::write::STAGED_SWEEP_AGE);
            if n > 0 {
                tracing::info!(files = n, "deleted staged files a crashed writer left in the lake");
            }
        });
        let config = StreamConfig {
            hints: settings.hints,
            wal: WalConfig {
                dir: settings.wal_dir.clone(),
                segment_bytes: SEGMENT_BYTES.min(settings.wal_max_bytes / 4),
                max_bytes: settings.wal_max_bytes,
            },
            memory_budget: settings.memory_budget,
            concurrent_flushes: settings.concurrent_flushes,
        };
        let (pipeline, recovery) = Pipeline::start(config, lake, partitioner, Arc::new(Metrics::default())).await?;
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}; pick another address with --listen", settings.listen))?;
        let addr = listener.local_addr()?;
        let limits = BodyLimits {
            max_body: settings.max_body_bytes,
            max_decompressed: settings.max_decompressed_bytes,
            max_records: settings.max_records,
        };
        let firehose_ids = settings.wal_dir.join("firehose-delivered");
        let kept = sluice_ingest::server::Kept {
            firehose_ids: Some(firehose_ids.clone()),
            uploads: UploadConfig {
                dir: settings.imports_dir.clone(),
                budget: sluice_ingest::uploads::DEFAULT_BUDGET,
                max_upload: settings.max_upload_bytes,
            },
        };
        let routes = sluice_ingest::server::routes(pipeline.clone(), limits, kept)
            .with_context(|| {
                format!("cannot read or write {} or {}", firehose_ids.display(), settings.imports_dir.display())
            })?
            .merge(query);
        let table = routes.table().clone();
        let app = protect(settings, routes).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (header_timeout, connections) = (settings.header_timeout, settings.connections);
        let task = tokio::spawn(async move {
            serve_http(listener, app, header_timeout, connections, async {
                stopped.await.ok();
            })
            .await;
        });
        Ok(Self { addr, pipeline, recovery, routes: table, lock, stop, task })
    }

    /// Resolves if the hold on the lake is lost (a lease on S3 taken over after renewals
    /// failed): the server must stop.
    pub async fn lost(&self) {
        self.lock.lost().await;
    }

    /// Stops accepting requests, finishes the ones in flight, and flushes everything to the lake.
    pub async fn stop(self) -> Result<()> {
        self.stop.send(()).ok();
        self.task.await?;
        self.pipeline.shutdown().await?;
        self.lock.release().await?;
        Ok(())
    }
}

/// The query API over the lake of `settings` (queries and exports on Athena with `athena`).
pub async fn query_routes(settings: &Settings, registry: Registry, athena: Option<&AthenaArgs>) -> Result<Routes> {
    // A server's lake may be new: it is made here, as it is for ingest.
    let lake = Lake::open(&settings.lake).await?;
    let engine = Engine::for_lake(
        &lake,
        registry,
        EngineConfig {
            memory_limit: settings.query_memory as usize,
            total_memory_limit: settings.query_memory_total as usize,
            timeout: settings.query_timeout,
            ..EngineConfig::default()
        },
    )?;
    // The summaries of a local lake's files are read once, in the background, so that the first
    // needle lookups are as fast as the next (a lookup before then reads what it needs itself).
    // Not on S3: two requests a file, for files nobody may look up.
    if lake.local_root().is_some() {
        let (files, logs) = (engine.files().clone(), engine.logs_prefix()?);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match files.warm(&logs).await {
                Ok(n) => tracing::info!(
                    files = n,
                    secs = started.elapsed().as_secs_f64(),
                    "read the summaries of the lake's files"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the summaries of the lake's files; lookups read them as needed")
                }
            }
        });
    }
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
    Ok(sluice_query::api::routes(QueryApi { executions }))
}

/// `routes` behind the gate of `settings` (authentication, declared routes only, roles, rate
/// limits, the body deadline), with the one error envelope for paths that are not there.
pub async fn protect(settings: &Settings, routes: Routes) -> Result<Router> {
    let authn = match &settings.auth {
        Some(jwt) => Authn::Jwt(Box::new(Verifier::new(jwt).await?)),
        None => {
            tracing::warn!(
                listen = %settings.listen,
                "AUTHENTICATION IS OFF (--auth none): every caller on this machine can read and write every \
                 organization's logs"
            );
            Authn::None
        }
    };
    let (router, table) = routes.into_parts();
    let gate = Gate::with_access_keys(authn, settings.gate, table, settings.firehose_keys.clone());
    Ok(gate.protect(router.fallback(not_found)).layer(axum::middleware::map_response(elastic_product)))
}

/// Marks every answer under `/es` (the gate's too) as Elasticsearch's: the official clients
/// refuse a server whose successful answers lack `X-Elastic-Product: Elasticsearch`.
async fn elastic_product(uri: axum::http::Uri, mut r: axum::response::Response) -> axum::response::Response {
    if uri.path() == "/es" || uri.path().starts_with("/es/") {
        r.headers_mut().insert("x-elastic-product", axum::http::HeaderValue::from_static("Elasticsearch"));
    }
    r
}

/// The answer to a path that is not there.
async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the API is in docs/ingest.md and docs/query.md",
    )
}

/// `GET /healthz` of a query-only server.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Serves `app` until `shutdown`; request headers must arrive within `header_timeout`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    connections: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    sluice_auth::http::serve(listener, app, header_timeout, DRAIN, connections, shutdown).await;
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from this call on, and resolves on the first. Call it
/// before the process says it is ready: a signal that arrives before the future is awaited is
/// kept, where the default disposition would have killed the process without a clean stop.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            async fn recv(s: Option<&mut Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(term.as_mut()) => {}
                () = recv(int.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.ok();
    }
}

/// Says loudly, on the terminal, that authentication is off.
pub fn warn_if_open(settings: &Settings) {
    if settings.auth.is_none() {
        eprintln!(
            "sluice serve: WARNING: authentication is off (--auth none). Anyone who can reach {} can read and \
             write every organization's logs. Use it only for a trial on this machine.",
            settings.listen
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::Method;
    use sluice_auth::token::{self, Role};
    use sluice_schemas::Registry;

    use super::{Server, query_routes};
    use crate::{config::Partial, runtime::partitioner};

    const SECRET: &str = "route-table-test-secret-0123456789abcdef";

    fn mint(roles: &[Role]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
        let claims =
            token::claims("route-test", &["acme".to_owned()], &roles, Duration::from_secs(600)).expect("claims");
        token::mint(SECRET.as_bytes(), &claims).expect("mint")
    }

    /// A request path of a declared pattern: `x` for each `{name}`.
    fn concrete(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|s| if s.starts_with('{') && s.ends_with('}') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The route table of the server as it runs, enumerated: whatever routes are added, each is
    /// refused without a token (401), refused with a token that holds every role but the one it
    /// declares (403, naming that role), and reached with that role alone. A method or path no
    /// route declares is not there (404), whatever the token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_declared_route_needs_its_role_and_nothing_else_is_reachable() {
        let dir = tempfile::tempdir().expect("tmp");
        let settings = Partial {
            lake: Some(dir.path().to_str().expect("utf8").to_owned()),
            listen: Some("127.0.0.1:0".to_owned()),
            jwt_secret: Some(SECRET.to_owned()),
            ..Partial::default()
        }
        .validate()
        .expect("settings");
        let registry = Registry::builtin();
        let query = query_routes(&settings, registry.clone(), None).await.expect("query routes");
        let server = Server::start(&settings, partitioner(registry, None), query).await.expect("server");
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::new();
        let send = |method: Method, path: &str, token: Option<&str>| {
            let mut r = client.request(method, format!("{base}{path}")).header("content-type", "application/json");
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            async move {
                let r = r.body("{}").send().await.expect("send");
                let status = r.status().as_u16();
                let body = r.bytes().await.expect("body");
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                (status, body)
            }
        };

        let declared: Vec<_> = server.routes.iter().cloned().collect();
        for (method, path) in [(Method::POST, "/v1/logs"), (Method::POST, "/v1/queries"), (Method::GET, "/v1/search")] {
            assert!(declared.iter().any(|d| d.method == method && d.path == path), "{method} {path} is not declared");
        }
        let admin = mint(&[Role::Admin]);
        for d in &declared {
            let (method, path, role) = (d.method.clone(), concrete(&d.path), d.access.role);
            let what = format!("{method} {}", d.path);
            if d.path == "/firehose" {
                // Firehose presents an access key, never a token: with no keys configured,
                // nothing reaches it, an operator's token neither.
                for token in [None, Some(admin.as_str())] {
                    let (status, body) = send(method.clone(), &path, token).await;
                    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_access_key")), "{what}");
                }
                continue;
            }
            let (status, body) = send(method.clone(), &path, None).await;
            assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{what}: {body}");

            let others: Vec<Role> = Role::ALL.into_iter().filter(|r| *r != role && *r != Role::Admin).collect();
            let (status, body) = send(method.clone(), &path, Some(&mint(&others))).await;
            assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{what}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(role.as_str()), "{what}: the refusal does not name {role}: {message}");

            for token in [mint(&[role]), admin.clone()] {
                let (status, body) = send(method.clone(), &path, Some(&token)).await;
                assert!(![401, 403].contains(&status), "{what} with {role}: {status} {body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(!message.contains("in this API"), "{what} with {role}: the gate refused it: {body}");
            }

            // Methods the path does not declare are not there.
            for other in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                if declared.iter().any(|e| e.method == other && e.path == d.path) {
                    continue;
                }
                let (status, body) = send(other.clone(), &path, Some(&admin)).await;
                assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{other} {path}");
            }
        }
        for path in ["/v1/nope", "/v1", "/v1/", "/v1/logs/extra", "/v1/queries/x/y/z"] {
            let (status, body) = send(Method::GET, path, Some(&admin)).await;
            assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
        }
        // Outside /v1 only the open routes answer.
        assert_eq!(send(Method::GET, "/healthz", None).await.0, 200);
        assert_eq!(send(Method::GET, "/nope", None).await.0, 404);
        server.stop().await.expect("stop");
    }
}
