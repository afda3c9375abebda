//! The ingest HTTP API of `sluice serve`: `POST /v1/logs`, `POST /v1/flush`, `GET /healthz`,
//! `GET /metrics`.

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;
use sluice_auth::{
    ApiError, Role,
    routes::{Access, RateClass, Routes},
    slots::Slots,
};
use sluice_schemas::Caller;

use crate::{
    body::{self, BodyError},
    error::Error,
    stream::{Overload, Pipeline},
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
struct AppState {
    pipeline: Pipeline,
    limits: BodyLimits,
    /// Bodies being decoded and ingested at once: a request takes a permit once its body has
    /// arrived, so the memory of decoded bodies is at most permits × the decompressed limit,
    /// and a slow upload never holds one.
    bodies: tokio::sync::Semaphore,
    /// Bodies being received: at most [`RECEIVING`] at once, and at most
    /// [`RECEIVING_PER_CALLER`] of one caller (its token's subject and organizations), so that
    /// one caller's slow uploads never keep another's from being read.
    receiving: Slots,
}

/// The answer to a body that cannot be read.
fn body_error(e: BodyError) -> ApiError {
    let (status, code) = match e {
        BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        BodyError::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
        BodyError::BadGzip(_) | BodyError::BadArray(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
        BodyError::TooManyRecords { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_records"),
    };
    ApiError::new(status, code, e.to_string())
}

fn overloaded(o: Overload) -> ApiError {
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

/// One rejected record in the answer.
#[derive(Debug, Serialize)]
struct Rejected {
    index: usize,
    code: &'static str,
    message: String,
}

/// The answer of `POST /v1/logs`: counts, the first rejected records one by one, and every
/// rejected record counted by reason code (an answer stays small whatever the request held).
#[derive(Debug, Serialize)]
struct IngestAnswer {
    accepted: usize,
    rejected: usize,
    /// The first [`crate::stream::LISTED_REJECTIONS`] rejected records.
    errors: Vec<Rejected>,
    /// Rejected records not in `errors`.
    errors_omitted: usize,
    /// Rejected records by reason code.
    error_counts: std::collections::BTreeMap<&'static str, usize>,
}

async fn ingest(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Result<Json<IngestAnswer>, ApiError> {
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
    // Checked after reading the (bounded) body, so that the client, still sending, gets the answer.
    if let Some(o) = app.pipeline.overload() {
        app.pipeline.metrics().overloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(overloaded(o));
    }
    let _permit = app.bodies.acquire().await.map_err(|_| overloaded(Overload::LogFailed))?;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let (max_dec, max_records) = (app.limits.max_decompressed, app.limits.max_records);
    let ndjson =
        content_type(&headers).is_some_and(|t| t.contains("ndjson") || t.contains("jsonl") || t.contains("json-seq"));
    let (decoded, shape) = tokio::task::spawn_blocking({
        let encoding = encoding.map(str::to_owned);
        move || {
            let decoded = body::decode(raw, encoding.as_deref(), max_dec)?;
            let shape = body::shape(&decoded, ndjson)?;
            if body::count_records(&decoded, shape, max_records) > max_records {
                return Err(BodyError::TooManyRecords { limit: max_records });
            }
            Ok::<_, BodyError>((decoded, shape))
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(body_error)?;
    app.pipeline.metrics().bytes_in.fetch_add(decoded.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let result = app.pipeline.ingest(decoded, shape, caller.orgs).await.map_err(|e| {
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
    Ok(Json(IngestAnswer {
        accepted: result.accepted,
        rejected: result.rejected,
        errors_omitted: result.rejected - result.listed.len(),
        error_counts: result.by_code.iter().map(|(c, n)| (c.as_str(), *n)).collect(),
        errors: result
            .listed
            .into_iter()
            .map(|(index, r)| Rejected { index, code: r.code.as_str(), message: r.message })
            .collect(),
    }))
}

fn content_type(h: &HeaderMap) -> Option<String> {
    h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase)
}

async fn flush(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    app.pipeline
        .flush_orgs(caller.orgs)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopped", e.to_string()))?;
    Ok(Json(json!({"flushed": true})))
}

async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    match app.pipeline.overload() {
        None => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Some(o) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": format!("{o:?}")}))).into_response(),
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.pipeline.metrics().render()).into_response()
}

/// Request bodies processed at once (more wait for a turn).
pub const CONCURRENT_BODIES: usize = 8;
/// Request bodies received at once (more wait for a turn).
pub const RECEIVING: usize = 64;
/// Request bodies one caller may have on their way at once (more are refused with 429).
pub const RECEIVING_PER_CALLER: usize = 8;

/// The ingest routes.
pub fn routes(pipeline: Pipeline, limits: BodyLimits) -> Routes {
    let state = Arc::new(AppState {
        pipeline,
        limits,
        bodies: tokio::sync::Semaphore::new(CONCURRENT_BODIES),
        receiving: Slots::new(RECEIVING, RECEIVING_PER_CALLER),
    });
    let write = Access::new(Role::LogsWrite, RateClass::Ingest);
    Routes::new()
        .route(Method::POST, "/v1/logs", write, ingest)
        .route(Method::POST, "/v1/flush", write, flush)
        .open(Method::GET, "/healthz", healthz)
        .open(Method::GET, "/metrics", metrics)
        .with_state(state)
}
