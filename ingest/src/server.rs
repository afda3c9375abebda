//! The ingest HTTP API of `sluice serve`: `POST /v1/logs`, `POST /v1/flush`, the shippers'
//! protocols ([`crate::protocols`]: `/otlp/v1/logs`, `/es/_bulk`, `/firehose`), `GET /healthz`,
//! `GET /metrics`. Every protocol takes its body the same way ([`crate::accept`]).

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Request, State},
    http::{Method, StatusCode, header},
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

pub use crate::accept::{BodyLimits, CONCURRENT_BODIES, RECEIVING, RECEIVING_PER_CALLER};
use crate::{
    accept::{AppState, admit, blocking, body_error, check_count, content_type, decompress, deliver, receive},
    answered::Answered,
    body,
    metrics::Protocol,
    protocols,
    stream::Pipeline,
};

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
    let (headers, raw) = receive(&app, &caller, req).await?;
    let _permit = admit(&app).await?;
    let max_records = app.limits.max_records;
    let ndjson =
        content_type(&headers).is_some_and(|t| t.contains("ndjson") || t.contains("jsonl") || t.contains("json-seq"));
    let (decoded, shape) = blocking({
        let app = Arc::clone(&app);
        move || {
            let decoded = decompress(&app, &headers, raw)?;
            let shape = body::shape(&decoded, ndjson).map_err(body_error)?;
            check_count(&app, body::count_records(&decoded, shape, max_records))?;
            Ok((decoded, shape))
        }
    })
    .await?;
    let result = deliver(&app, Protocol::Native, decoded, shape, caller).await?;
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

/// The ingest routes. `firehose_ids` is the file that keeps the ids of Firehose deliveries
/// answered 200 (beside the write-ahead log; `None`: in memory only).
pub fn routes(
    pipeline: Pipeline,
    limits: BodyLimits,
    firehose_ids: Option<std::path::PathBuf>,
) -> std::io::Result<Routes> {
    let state = Arc::new(AppState {
        pipeline,
        limits,
        bodies: tokio::sync::Semaphore::new(CONCURRENT_BODIES),
        receiving: Slots::new(RECEIVING, RECEIVING_PER_CALLER),
        firehose_delivered: Answered::open(firehose_ids)?,
    });
    let write = Access::new(Role::LogsWrite, RateClass::Ingest);
    let handshake = Access::unmetered(Role::LogsWrite);
    Ok(Routes::new()
        .route(Method::POST, "/v1/logs", write, ingest)
        .route(Method::POST, "/v1/flush", write, flush)
        .route(Method::POST, "/otlp/v1/logs", write, protocols::otlp::export)
        .route(Method::GET, "/es", handshake, protocols::es::info)
        .route(Method::GET, "/es/", handshake, protocols::es::info)
        .route(Method::POST, "/es/_bulk", write, protocols::es::bulk)
        .route(Method::PUT, "/es/_bulk", write, protocols::es::bulk)
        .route(Method::POST, "/es/{index}/_bulk", write, protocols::es::bulk_index)
        .route(Method::PUT, "/es/{index}/_bulk", write, protocols::es::bulk_index)
        .route(Method::POST, "/firehose", write, protocols::firehose::deliver_records)
        .open(Method::GET, "/healthz", healthz)
        .open(Method::GET, "/metrics", metrics)
        .with_state(state))
}
