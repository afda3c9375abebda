//! Serving a router with deadlines: a client must send a request's headers within the header
//! timeout and its body within the body timeout, so slow clients (slowloris) cannot hold
//! connections open.

use std::{
    collections::HashMap,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::Request};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}; send it faster or in smaller requests")]
pub struct BodyTimeout(pub Duration);

/// Whether `e` (from reading a body) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(f) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(f);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `req` with a body that fails once `limit` has passed (the whole body, not each chunk).
pub fn with_body_deadline(req: Request, limit: Duration) -> Request {
    req.map(|inner| {
        if inner.is_end_stream() {
            return inner;
        }
        Body::new(DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit })
    })
}

/// How many connections a server holds open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections in all; past it, new ones wait in the listen queue.
    pub total: usize,
    /// Open connections from one client address; past it, new ones are closed at once.
    pub per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { total: 1024, per_address: 256 }
    }
}

/// A client address's open connections, counted until dropped.
struct AddressCount {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressCount {
    fn enter(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, limit: usize) -> Option<Self> {
        let mut map = counts.lock().expect("connection counts");
        let n = map.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Self { counts: Arc::clone(counts), ip })
    }
}

impl Drop for AddressCount {
    fn drop(&mut self) {
        let mut map = self.counts.lock().expect("connection counts");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (for at most `drain`). Request headers must arrive within `header_timeout`; at most
/// `limits` connections are open at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    drain: Duration,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.total.max(1)));
    let per_address = Arc::new(Mutex::new(HashMap::new()));
    loop {
        // A place first: past the limit, clients wait in the listen queue.
        let place = tokio::select! {
            p = Arc::clone(&open).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            conn = listener.accept() => match conn {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(counted) = AddressCount::enter(&per_address, peer.ip(), limits.per_address) else {
            tracing::debug!(%peer, limit = limits.per_address, "too many connections from one address; closed");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((place, counted));
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {drain:?}; closing them");
    }
}
