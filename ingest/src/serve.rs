//! Running the embedded pipeline behind its HTTP API: what `sluice serve` and `sluice demo` start.

use std::{net::SocketAddr, sync::Arc};

use sluice_auth::{Authn, Gate, Verifier};
use sluice_partitioner::Partitioner;

use crate::{
    config::Settings,
    error::{Error, Result},
    lake::Lake,
    lock::LakeLock,
    metrics::Metrics,
    server::{BodyLimits, router},
    stream::{Pipeline, StreamConfig},
    wal::{Recovery, WalConfig},
};

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The pipeline behind it.
    pub pipeline: Pipeline,
    /// What the log held at start.
    pub recovery: Recovery,
    /// The hold on the lake (one server a lake).
    lock: LakeLock,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Size of a write-ahead-log segment.
const SEGMENT_BYTES: u64 = 64 << 20;

/// How long a staged file must have been left alone before a starting server deletes it: a
/// writer alongside (an import) renames its staged files within seconds.
const STAGED_SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

impl Server {
    /// Opens the lake and the log, re-delivers what the log holds, and starts listening.
    /// `extra` routes (the query API) are served beside the ingest API.
    pub async fn start(settings: &Settings, partitioner: Partitioner, extra: Option<axum::Router>) -> Result<Self> {
        let lake = Lake::open(&settings.lake).await?;
        let lock = LakeLock::acquire(&lake, "serve").await?;
        lake.complete_index().await?;
        // What a crashed writer staged and never renamed, swept in the background (a lake of
        // many folders takes a while to walk).
        let sweeper = lake.clone();
        tokio::task::spawn_blocking(move || {
            let n = sweeper.sweep_staged(STAGED_SWEEP_AGE);
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
        let listener = tokio::net::TcpListener::bind(settings.listen).await.map_err(|e| {
            Error::Config(format!("cannot listen on {}: {e}; pick another address with --listen", settings.listen))
        })?;
        let addr = listener.local_addr().map_err(Error::io("listener"))?;
        let mut app = router(
            pipeline.clone(),
            BodyLimits {
                max_body: settings.max_body_bytes,
                max_decompressed: settings.max_decompressed_bytes,
                max_records: settings.max_records,
            },
        );
        if let Some(extra) = extra {
            app = app.merge(extra);
        }
        let app = gate(settings).await?.protect(app);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (header_timeout, connections) = (settings.header_timeout, settings.connections);
        let task = tokio::spawn(async move {
            serve_http(listener, app, header_timeout, connections, async {
                stopped.await.ok();
            })
            .await;
            Ok(())
        });
        Ok(Self { addr, pipeline, recovery, lock, stop, task })
    }

    /// Resolves if the hold on the lake is lost (a lease on S3 taken over after renewals
    /// failed): the server must stop.
    pub async fn lost(&self) {
        self.lock.lost().await;
    }

    /// Stops accepting requests, finishes the ones in flight, and flushes everything to the lake.
    pub async fn stop(self) -> Result<()> {
        self.stop.send(()).ok();
        self.task.await.map_err(|e| Error::Stopped(e.to_string()))?.map_err(Error::io("server"))?;
        self.pipeline.shutdown().await?;
        self.lock.release().await
    }
}

/// The gate of the settings: authentication (or none, on loopback), rate limits, body deadline.
pub async fn gate(settings: &Settings) -> Result<Arc<Gate>> {
    let authn = match &settings.auth {
        Some(jwt) => Authn::Jwt(Box::new(Verifier::new(jwt).await.map_err(|e| Error::Config(e.0))?)),
        None => {
            tracing::warn!(
                listen = %settings.listen,
                "AUTHENTICATION IS OFF (--auth none): every caller on this machine can read and write every \
                 organization's logs"
            );
            Authn::None
        }
    };
    Ok(Gate::new(authn, settings.gate))
}

/// How long requests in flight may take to finish once a server stops.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `app` until `shutdown`; request headers must arrive within `header_timeout`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: std::time::Duration,
    connections: sluice_auth::http::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    sluice_auth::http::serve(listener, app, header_timeout, DRAIN, connections, shutdown).await;
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c.await.ok();
    }
}
