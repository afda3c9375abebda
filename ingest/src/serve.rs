//! Running the embedded pipeline behind its HTTP API: what `sluice serve` and `sluice demo` start.

use std::{net::SocketAddr, sync::Arc};

use sluice_partitioner::Partitioner;

use crate::{
    config::Settings,
    error::{Error, Result},
    lake::Lake,
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
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Size of a write-ahead-log segment.
const SEGMENT_BYTES: u64 = 64 << 20;

impl Server {
    /// Opens the lake and the log, re-delivers what the log holds, and starts listening.
    /// `extra` routes (the query API) are served beside the ingest API.
    pub async fn start(settings: &Settings, partitioner: Partitioner, extra: Option<axum::Router>) -> Result<Self> {
        let lake = Lake::open(&settings.lake).await?;
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
            BodyLimits { max_body: settings.max_body_bytes, max_decompressed: settings.max_decompressed_bytes },
        );
        if let Some(extra) = extra {
            app = app.merge(extra);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    stopped.await.ok();
                })
                .await
        });
        Ok(Self { addr, pipeline, recovery, stop, task })
    }

    /// Stops accepting requests, finishes the ones in flight, and flushes everything to the lake.
    pub async fn stop(self) -> Result<()> {
        self.stop.send(()).ok();
        self.task.await.map_err(|e| Error::Stopped(e.to_string()))?.map_err(Error::io("server"))?;
        self.pipeline.shutdown().await
    }
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
