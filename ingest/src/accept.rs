//! Taking a request body, the same way for every protocol: received whole within the size
//! limit while the caller holds one of its places to send ([`receive`]), a turn to process it
//! ([`admit`]), decompressed within its limit ([`decompress`]) on the blocking pool
//! ([`blocking`]), and handed to the pipeline as native records ([`deliver`]).

use axum::{
    extract::Request,
    http::{HeaderMap, StatusCode, header},
};
use bytes::Bytes;
use sluice_auth::{ApiError, slots::Slots};
use sluice_schemas::Caller;

use crate::{
    body::{self, BodyError},
    error::Error,
    metrics::Protocol,
    stream::{IngestResult, Overload, Pipeline},
};

/// Limits on request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body as sent.
    pub max_body: u64,
    /// Largest body after decompression.
    pub max_decompressed: u64,
    /// Most records in one request.
    pub max_records: usize,
}

#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) pipeline: Pipeline,
    pub(crate) limits: BodyLimits,
    /// Firehose deliveries answered 200, so a retry of one is not taken twice.
    pub(crate) firehose_delivered: crate::answered::Answered,
    /// Upload jobs.
    pub(crate) uploads: std::sync::Arc<crate::uploads::Uploads>,
    /// Bodies being decoded and ingested at once: a request takes a permit once its body has
    /// arrived, so the memory of decoded bodies is at most permits × the decompressed limit,
    /// and a slow upload never holds one.
    pub(crate) bodies: tokio::sync::Semaphore,
    /// Bodies being received: at most [`RECEIVING`] at once, and at most
    /// [`RECEIVING_PER_CALLER`] of one caller (its token's subject and organizations), so that
    /// one caller's slow uploads never keep another's from being read.
    pub(crate) receiving: Slots,
}

/// The answer to a body that cannot be read.
pub(crate) fn body_error(e: BodyError) -> ApiError {
    let (status, code) = match e {
        BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        BodyError::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
        BodyError::BadGzip(_) | BodyError::BadArray(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
        BodyError::TooManyRecords { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_records"),
    };
    ApiError::new(status, code, e.to_string())
}

pub(crate) fn overloaded(o: Overload) -> ApiError {
    let message = match o {
        Overload::LogFull => {
            "the write-ahead log is full while the lake catches up; retry after the Retry-After seconds"
        }
        Overload::MemoryFull => {
            "buffers are at the memory budget while the lake catches up; retry after the Retry-After seconds"
        }
        Overload::LogFailed => {
            "the write-ahead log cannot be written (see the server log); retry later or on another node"
        }
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry_after(1)
}

/// A request body received whole within the size limit, while the caller holds one of its
/// places to send: a slow upload holds a place, never a permit to process.
pub(crate) async fn receive(app: &AppState, caller: &Caller, req: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let headers = req.headers().clone();
    let limit = app.limits.max_body;
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(body_error(BodyError::TooLarge { limit, decompressed: false }));
    }
    let receiving = app.receiving.take(&caller.owner_key()).await.map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "this token already has {RECEIVING_PER_CALLER} request bodies on their way; wait for them to \
                 finish, then retry after the Retry-After seconds"
            ),
        )
        .retry_after(1)
    })?;
    let raw = axum::body::to_bytes(req.into_body(), limit as usize).await.map_err(|e| {
        let e = e.into_inner();
        if sluice_auth::http::is_body_timeout(&*e) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string())
        } else {
            body_error(BodyError::TooLarge { limit, decompressed: false })
        }
    })?;
    drop(receiving);
    Ok((headers, raw))
}

/// A turn to decode and ingest a received body: refused (503) while the log or memory is full,
/// else one of [`CONCURRENT_BODIES`] permits, so that decoded bodies take bounded memory.
/// Checked after reading the (bounded) body, so that the client, still sending, gets the answer.
pub(crate) async fn admit(app: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    if let Some(o) = app.pipeline.overload() {
        app.pipeline.metrics().overloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(overloaded(o));
    }
    app.bodies.acquire().await.map_err(|_| overloaded(Overload::LogFailed))
}

/// Runs `f` (decoding, converting: CPU work on a whole body) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// The body of `headers`' request decompressed within the limit.
pub(crate) fn decompress(app: &AppState, headers: &HeaderMap, raw: Bytes) -> Result<Bytes, ApiError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    body::decode(raw, encoding, app.limits.max_decompressed).map_err(body_error)
}

/// Hands records in the native contract (`body`, of `shape`, `records` of them, as counted by
/// the caller) to the pipeline for `caller`: the one path every protocol ends in. The answer
/// comes once every accepted record is durable in the write-ahead log.
pub(crate) async fn deliver(
    app: &AppState,
    protocol: Protocol,
    body: Bytes,
    shape: body::Shape,
    caller: Caller,
) -> Result<IngestResult, ApiError> {
    let metrics = app.pipeline.metrics();
    metrics.bytes_in.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let result = app.pipeline.ingest(body, shape, caller.orgs).await.map_err(|e| {
        tracing::warn!(error = %e, "ingest failed");
        match e {
            Error::Partial { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string()).retry_after(1)
            }
            _ => match app.pipeline.overload() {
                Some(o) => overloaded(o),
                None => overloaded(Overload::LogFailed),
            },
        }
    })?;
    metrics.protocol(protocol, result.accepted as u64, result.rejected as u64);
    Ok(result)
}

/// The most records a request may hold, checked on a converted body.
pub(crate) fn check_count(app: &AppState, n: usize) -> Result<(), ApiError> {
    let limit = app.limits.max_records;
    if n > limit { Err(body_error(BodyError::TooManyRecords { limit })) } else { Ok(()) }
}

pub(crate) fn content_type(h: &HeaderMap) -> Option<String> {
    h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase)
}

/// Request bodies processed at once (more wait for a turn).
pub const CONCURRENT_BODIES: usize = 8;
/// Request bodies received at once (more wait for a turn).
pub const RECEIVING: usize = 64;
/// Request bodies one caller may have on their way at once (more are refused with 429).
pub const RECEIVING_PER_CALLER: usize = 8;
