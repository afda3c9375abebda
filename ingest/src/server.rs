//! The ingest HTTP API of `sluice serve`: `POST /v1/logs`, `POST /v1/flush`, the shippers'
//! protocols ([`crate::protocols`]: `/otlp/v1/logs`, `/es/_bulk`, `/firehose`), `GET /healthz`,
//! `GET /metrics`. Every protocol takes its body the same way ([`crate::accept`]).

use std::sync::Arc;

use std::collections::HashMap;

use axum::{
    Extension, Json,
    extract::{Path, Query, Request, State},
    http::{Method, StatusCode, header},
    response::sse::{Event, KeepAlive, Sse},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;
use sluice_auth::webhook::Webhook;
use sluice_auth::{
    ApiError, Role,
    routes::{Access, RateClass, Routes},
    slots::Slots,
};
use sluice_schemas::{Caller, Orgs};

pub use crate::accept::{BodyLimits, CONCURRENT_BODIES, RECEIVING, RECEIVING_PER_CALLER};
use crate::{
    accept::{AppState, admit, blocking, body_error, check_count, content_type, decompress, deliver, receive},
    answered::Answered,
    body::{self, BodyError},
    metrics::Protocol,
    protocols,
    stream::Pipeline,
    uploads::{JobState, JobStatus, UploadConfig, UploadError, Uploads},
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

/// The answer to an upload that could not be taken.
fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.to_string()),
        UploadError::Body(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()),
        UploadError::Busy => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_uploads", e.to_string()).retry_after(10)
        }
        UploadError::Io(_) => {
            tracing::warn!(error = %e, "cannot keep an upload");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string()).retry_after(30)
        }
    }
}

/// `POST /v1/imports`: a file as a job. The format is `?format=` (`ndjson`, `csv`), else the
/// `Content-Type` (`text/csv`), else the `?name=`'s extension, else NDJSON.
async fn start_import(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers();
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m);
    let name = params.get("name").cloned().unwrap_or_else(|| "upload".to_owned());
    if name.len() > 255 || name.chars().any(char::is_control) {
        return Err(bad("name must be at most 255 characters, without control characters".into()));
    }
    let lower = name.to_ascii_lowercase();
    let format = match params.get("format").map(String::as_str) {
        Some(f @ ("ndjson" | "csv")) => f,
        Some(other) => return Err(bad(format!("format {other:?}: use ndjson or csv"))),
        None if content_type(headers).is_some_and(|t| t.starts_with("text/csv")) => "csv",
        None if lower.ends_with(".csv") || lower.ends_with(".csv.gz") => "csv",
        None => "ndjson",
    };
    let gzip = match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("" | "identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => true,
        Some(e) => return Err(body_error(BodyError::UnsupportedEncoding(e.to_owned()))),
    };
    let webhook = match params.get("webhook_url") {
        Some(url) => Some(Webhook::check(url, caller.orgs == Orgs::All).await?),
        None => None,
    };
    let limit = app.uploads.max_upload();
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(upload_error(UploadError::TooLarge(limit)));
    }
    let owner = caller.owner_key();
    let _receiving = app.receiving.take(&owner).await.map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!("this token already has {RECEIVING_PER_CALLER} request bodies on their way; retry after the Retry-After seconds"),
        )
        .retry_after(1)
    })?;
    let (status, new) = app
        .uploads
        .start(&owner, caller.orgs, req.into_body(), name, format, gzip, webhook)
        .await
        .map_err(upload_error)?;
    let code = if new { StatusCode::ACCEPTED } else { StatusCode::OK };
    let location = format!("/v1/imports/{}", status.id);
    Ok((code, [(header::LOCATION, location)], Json(status)).into_response())
}

fn no_import() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such import for this token")
}

/// `GET /v1/imports/{id}`.
async fn import_status(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    app.uploads.status(&id, &caller.owner_key()).map(Json).ok_or_else(no_import)
}

/// `GET /v1/imports/{id}/events`: a `progress` event at each change, then `complete`.
async fn import_events(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let rx = app.uploads.watch(&id, &caller.owner_key()).ok_or_else(no_import)?;
    let events = futures::stream::unfold((rx, true, false), |(mut rx, first, ended)| async move {
        if ended || (!first && rx.changed().await.is_err()) {
            return None;
        }
        let s = rx.borrow_and_update().clone();
        let ended = matches!(s.state, JobState::Succeeded | JobState::Failed);
        let name = if ended { "complete" } else { "progress" };
        let data = serde_json::to_string(&s).unwrap_or_default();
        Some((Ok(Event::default().event(name).data(data)), (rx, false, ended)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// `GET /v1/imports/{id}/rejected.csv`: the rejected rows (line, code, message), once the job
/// has ended.
async fn import_report(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = app.uploads.status(&id, &caller.owner_key()).ok_or_else(no_import)?;
    if !matches!(s.state, JobState::Succeeded | JobState::Failed) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("the import is {:?}; wait for it to end", s.state),
        ));
    }
    let file = tokio::fs::File::open(app.uploads.report_path(&id)).await.map_err(|_| no_import())?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
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

/// Where the ingest API keeps what it must remember.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The file of the ids of Firehose deliveries answered 200 (beside the write-ahead log;
    /// `None`: in memory only).
    pub firehose_ids: Option<std::path::PathBuf>,
    /// Upload jobs.
    pub uploads: UploadConfig,
}

/// The ingest routes.
pub fn routes(pipeline: Pipeline, limits: BodyLimits, kept: Kept) -> std::io::Result<Routes> {
    let uploads = Uploads::open(
        kept.uploads,
        pipeline.lake().clone(),
        Arc::clone(pipeline.partitioner()),
        Arc::clone(pipeline.metrics()),
    )?;
    let state = Arc::new(AppState {
        pipeline,
        limits,
        bodies: tokio::sync::Semaphore::new(CONCURRENT_BODIES),
        receiving: Slots::new(RECEIVING, RECEIVING_PER_CALLER),
        firehose_delivered: Answered::open(kept.firehose_ids)?,
        uploads: Arc::new(uploads),
    });
    let write = Access::new(Role::LogsWrite, RateClass::Ingest);
    let handshake = Access::unmetered(Role::LogsWrite);
    Ok(Routes::new()
        .route(Method::POST, "/v1/logs", write, ingest)
        .route(Method::POST, "/v1/flush", write, flush)
        .route(Method::POST, "/otlp/v1/logs", write, protocols::otlp::export)
        .route(Method::GET, "/es", handshake, protocols::es::info)
        .route(Method::GET, "/es/", handshake, protocols::es::info)
        .route(Method::GET, "/es/_license", handshake, protocols::es::license)
        .route(Method::POST, "/es/_bulk", write, protocols::es::bulk)
        .route(Method::PUT, "/es/_bulk", write, protocols::es::bulk)
        .route(Method::POST, "/es/{index}/_bulk", write, protocols::es::bulk_index)
        .route(Method::PUT, "/es/{index}/_bulk", write, protocols::es::bulk_index)
        .route(Method::POST, "/firehose", write, protocols::firehose::deliver_records)
        .route(Method::POST, "/v1/imports", write, start_import)
        .route(Method::GET, "/v1/imports/{id}", handshake, import_status)
        .route(Method::GET, "/v1/imports/{id}/events", handshake, import_events)
        .route(Method::GET, "/v1/imports/{id}/rejected.csv", handshake, import_report)
        .open(Method::GET, "/healthz", healthz)
        .open(Method::GET, "/metrics", metrics)
        .with_state(state))
}
