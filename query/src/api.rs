//! The query HTTP API (JSON, under `/v1`): query executions with stable paged results, text
//! search, transaction traces and CSV exports with polling, server-sent events and webhooks.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Extension, Json,
    body::Body,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderValue, Method, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_auth::{
    ApiError, Role,
    routes::{Access, RateClass, Routes},
    webhook::Webhook,
};
use sluice_schemas::Orgs;

use crate::{
    error::Error,
    exec::{Executions, Output, State as ExecState, Status},
    format::batch_objects,
};

/// The state of the query API.
#[derive(Debug, Clone)]
pub struct QueryApi {
    /// Executions and exports.
    pub executions: Executions,
}

/// Seconds a caller refused for running too many queries is told to wait.
const BUSY_RETRY_AFTER: u64 = 1;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let info = crate::exec::ErrorInfo::from(&e);
        let status = match &e {
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            e if e.is_user_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let e = ApiError::new(status, info.code, info.message);
        if status == StatusCode::TOO_MANY_REQUESTS { e.retry_after(BUSY_RETRY_AFTER) } else { e }
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what} (or it expired)"))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message.into())
}

/// The caller, as the gate verified it (see `sluice_auth::gate`).
type Caller = Extension<sluice_schemas::Caller>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(t)| t)
        .map_err(|e| bad(format!("{}; send a JSON object with Content-Type: application/json", e.body_text())))
}

async fn start_query(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    body: Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    let s = api.executions.start(&req.sql, Output::Rows, &caller.owner_key(), &caller.orgs, None, None).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": s.id, "state": s.state}))).into_response())
}

async fn query_status(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Status>, ApiError> {
    api.executions.status(&id, &caller.owner_key()).map(Json).ok_or_else(|| not_found("query"))
}

async fn cancel_query(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Status>, ApiError> {
    api.executions.cancel(&id, &caller.owner_key()).map(Json).ok_or_else(|| not_found("query"))
}

#[derive(Debug, Deserialize)]
struct PageParams {
    page_size: Option<usize>,
    cursor: Option<String>,
}

fn encode_cursor(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn decode_cursor(c: &str) -> Result<Value, ApiError> {
    B64.decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("the cursor is not one this API handed out; start again without it"))
}

async fn query_results(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| bad(e.body_text()))?;
    let owner = caller.owner_key();
    let status = api.executions.status(&id, &owner).ok_or_else(|| not_found("query"))?;
    match status.state {
        ExecState::Succeeded => {}
        ExecState::Running => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                "the query is still running; poll GET /v1/queries/{id}",
            ));
        }
        _ => return Err(ApiError::new(StatusCode::CONFLICT, "no_results", format!("the query is {:?}", status.state))),
    }
    let page_size = p.page_size.unwrap_or(100).clamp(1, 10_000);
    let offset = match &p.cursor {
        Some(c) => {
            let v = decode_cursor(c)?;
            if v["q"].as_str() != Some(id.as_str()) {
                return Err(bad("the cursor belongs to another query"));
            }
            v["o"].as_u64().ok_or_else(|| bad("malformed cursor"))?
        }
        None => 0,
    };
    let (rows, next) = api.executions.page(&id, &owner, offset, page_size).ok_or_else(|| not_found("query"))??;
    Ok(Json(json!({
        "columns": status.columns,
        "rows": rows,
        "next_cursor": next.map(|o| encode_cursor(&json!({"q": id, "o": o}))),
    })))
}

/// Parameters of a text search.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Text to find (case-insensitive) in description, action, caller and detail.
    pub q: Option<String>,
    /// Start of the time range (RFC 3339); default 24 hours before `to`.
    pub from: Option<String>,
    /// End of the time range (RFC 3339, exclusive); default now.
    pub to: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only this organization.
    pub organization: Option<String>,
    /// Only this log type.
    pub logtype: Option<String>,
    /// Rows per page (default 50, at most 1000).
    pub page_size: Option<usize>,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
}

/// A SQL string literal: single quotes doubled; NUL refused.
pub fn sql_string(s: &str) -> Result<String, ApiError> {
    if s.contains('\0') {
        return Err(bad("text must not contain NUL"));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

fn like_pattern(q: &str) -> String {
    let mut out = String::from("%");
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| bad(format!("{name}={v:?} is not an RFC 3339 time such as 2025-01-01T00:00:00Z")))
}

/// The time range of a search: `[from, to)`.
fn search_range(p: &SearchParams) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = match &p.to {
        Some(t) => parse_time("to", t)?,
        None => Utc::now(),
    };
    let from = match &p.from {
        Some(f) => parse_time("from", f)?,
        None => to - chrono::Duration::hours(24),
    };
    if from >= to {
        return Err(bad("`from` must be before `to`"));
    }
    Ok((from, to))
}

/// The SQL of a search page (without cursor handling when `after` is `None`).
pub fn search_sql(p: &SearchParams, after: Option<(&str, &str)>, limit: usize) -> Result<String, ApiError> {
    let (from, to) = search_range(p)?;
    search_window_sql(p, (from, to), after, limit)
}

/// The SQL of the records of a search within `[from, to)` (a part of the search's range).
fn search_window_sql(
    p: &SearchParams,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<String, ApiError> {
    let ts = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    let mut conds = vec![format!("time >= {}", ts(from)), format!("time < {}", ts(to))];
    for (col, v) in [("environment", &p.environment), ("organization", &p.organization), ("logtype", &p.logtype)] {
        if let Some(v) = v {
            conds.push(format!("{col} = {}", sql_string(v)?));
        }
    }
    if let Some(q) = p.q.as_deref().filter(|q| !q.is_empty()) {
        let pat = sql_string(&like_pattern(q))?;
        conds.push(format!(
            "(description ILIKE {pat} ESCAPE '\\' OR action ILIKE {pat} ESCAPE '\\' OR caller ILIKE {pat} ESCAPE '\\' OR detail ILIKE {pat} ESCAPE '\\')"
        ));
    }
    if let Some((t, r)) = after {
        let t = sql_string(t)?;
        let r = sql_string(r)?;
        conds.push(format!("(time < CAST({t} AS TIMESTAMP) OR (time = CAST({t} AS TIMESTAMP) AND record_id > {r}))"));
    }
    Ok(format!(
        "SELECT time, environment, organization, logtype, record_id, transaction_id, server, action, type, description, caller, success, detail \
         FROM logs WHERE {} ORDER BY time DESC, record_id LIMIT {limit}",
        conds.join(" AND ")
    ))
}

/// The first window a search page reads, newest first; each next one is [`WINDOW_GROWTH`]
/// times as long, until the page is full or the search's range is read.
pub const FIRST_WINDOW: chrono::Duration = chrono::Duration::hours(1);
/// How much longer each window of a search is than the one before.
pub const WINDOW_GROWTH: i32 = 4;

async fn search(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| bad(e.body_text()))?;
    let page_size = p.page_size.unwrap_or(50).clamp(1, 1000);
    let after = match &p.cursor {
        Some(c) => {
            // A cursor this API handed out: the time and record id of a page's last row.
            let v = decode_cursor(c)?;
            let (Some(t), Some(r)) = (v["t"].as_str(), v["r"].as_str()) else { return Err(Error::BadCursor.into()) };
            let time_ok = DateTime::parse_from_rfc3339(t).is_ok();
            if !time_ok || r.is_empty() || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::BadCursor.into());
            }
            Some((t.to_owned(), r.to_owned()))
        }
        None => None,
    };
    let (from, mut to) = search_range(&p)?;
    let after = after.as_ref().map(|(t, r)| (t.as_str(), r.as_str()));
    if let Some((t, _)) = after {
        // Nothing after the cursor is newer than its row.
        let t = parse_time("cursor", t).map_err(|_| ApiError::from(Error::BadCursor))?;
        to = to.min(t + chrono::Duration::microseconds(1));
    }
    let _running = api.executions.admit(&caller.owner_key())?;
    let engine = api.executions.engine().scoped(caller.orgs.clone()).for_caller(&caller.owner_key());
    // The page is read in windows of time, newest first, until it is full: the newest records
    // of a busy day are found without reading the day's older files (each window reads only
    // the files whose records' times reach into it).
    let mut rows: Vec<Value> = Vec::new();
    let mut width = FIRST_WINDOW;
    while from < to && rows.len() <= page_size {
        let lo = (to - width).max(from);
        let sql = search_window_sql(&p, (lo, to), after, page_size + 1 - rows.len())?;
        let batches = engine.query(&sql, None).await?;
        rows.extend(batches.iter().flat_map(batch_objects));
        to = lo;
        width = width * WINDOW_GROWTH;
    }
    let next = if rows.len() > page_size {
        rows.truncate(page_size);
        rows.last().map(|r| encode_cursor(&json!({"t": r["time"], "r": r["record_id"]})))
    } else {
        None
    };
    Ok(Json(json!({"rows": rows, "next_cursor": next})))
}

async fn trace(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lit = sql_string(&id)?;
    let _running = api.executions.admit(&caller.owner_key())?;
    let engine = api.executions.engine().scoped(caller.orgs.clone()).for_caller(&caller.owner_key()).tracing(&id);
    let records_sql = format!(
        "SELECT time, logtype, environment, organization, record_id, server, action, type, description, caller, success, detail \
         FROM logs WHERE transaction_id = {lit} ORDER BY time, record_id LIMIT 10000"
    );
    let events_sql = format!(
        "SELECT time, logtype, record_id, server, action, type, description, caller, success, detail \
         FROM events WHERE transaction_id = {lit} OR event_transaction_id = {lit} ORDER BY time, record_id LIMIT 10000"
    );
    // Both at once: each reads only the few files that may hold the transaction.
    let (records, events) = tokio::try_join!(engine.query(&records_sql, None), engine.query(&events_sql, None))?;
    let records: Vec<Value> = records.iter().flat_map(batch_objects).collect();
    let events: Vec<Value> = events.iter().flat_map(batch_objects).collect();
    if records.is_empty() && events.is_empty() {
        return Err(not_found("transaction"));
    }
    Ok(Json(json!({"transaction_id": id, "records": records, "events": events})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    sql: Option<String>,
    search: Option<SearchParams>,
    notify: Option<Notify>,
    /// Neutralise cells that a spreadsheet would run as formulas (default: on).
    protect_formulas: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Notify {
    webhook_url: Option<String>,
}

fn export_json(s: &Status) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if s.state == ExecState::Succeeded {
        v["download_url"] = match &s.presigned_url {
            Some(url) => json!(url),
            None => json!(format!("/v1/exports/{}/download", s.id)),
        };
    }
    v
}

async fn start_export(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    let sql = match (req.sql, req.search) {
        (Some(sql), None) => sql,
        (None, Some(s)) => {
            let mut s = s;
            s.cursor = None;
            search_sql(&s, None, 10_000_000)?
        }
        _ => return Err(bad("give exactly one of `sql` and `search`")),
    };
    let hook = match req.notify.and_then(|n| n.webhook_url) {
        Some(url) => Some(Webhook::check(&url, caller.orgs == Orgs::All).await?),
        None => None,
    };
    let on_done: Option<Box<dyn FnOnce(Status) + Send>> =
        hook.map(|hook| Box::new(move |s: Status| hook.call(export_json(&s))) as Box<dyn FnOnce(Status) + Send>);
    let s = api
        .executions
        .start(&sql, Output::Csv, &caller.owner_key(), &caller.orgs, req.protect_formulas, on_done)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": s.id, "state": s.state}))).into_response())
}

async fn export_status(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = api
        .executions
        .status(&id, &caller.owner_key())
        .filter(|s| s.output == Output::Csv)
        .ok_or_else(|| not_found("export"))?;
    Ok(Json(export_json(&s)))
}

async fn export_events(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = api.executions.watch(&id, &caller.owner_key()).ok_or_else(|| not_found("export"))?;
    // Every change of the status is a `progress` event; the last one is `complete`, then the
    // stream ends (without waiting for a change that will never come).
    let events = futures::stream::unfold((rx, true, false), |(mut rx, first, ended)| async move {
        if ended || (!first && rx.changed().await.is_err()) {
            return None;
        }
        let s = rx.borrow_and_update().clone();
        let ended = s.state != ExecState::Running;
        let name = if ended { "complete" } else { "progress" };
        let event = Event::default().event(name).data(export_json(&s).to_string());
        Some((Ok::<_, Infallible>(event), (rx, false, ended)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn export_download(
    State(api): State<Arc<QueryApi>>,
    Extension(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = caller.owner_key();
    let s =
        api.executions.status(&id, &owner).filter(|s| s.output == Output::Csv).ok_or_else(|| not_found("export"))?;
    if s.state != ExecState::Succeeded {
        return Err(ApiError::new(StatusCode::CONFLICT, "not_ready", format!("the export is {:?}", s.state)));
    }
    if let Some(url) = &s.presigned_url {
        return Ok(axum::response::Redirect::temporary(url).into_response());
    }
    let path = api.executions.result_path(&id, &owner).ok_or_else(|| not_found("export"))?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| not_found("export"))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8; header=present"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"sluice-export-{id}.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// The query routes, each with the role it needs.
pub fn routes(api: QueryApi) -> Routes {
    let read = Access::new(Role::LogsRead, RateClass::Query);
    let follow = Access::unmetered(Role::LogsRead);
    let export = Access::new(Role::ExportsWrite, RateClass::Query);
    let download = Access::unmetered(Role::ExportsWrite);
    Routes::new()
        .route(Method::POST, "/v1/queries", read, start_query)
        .route(Method::GET, "/v1/queries/{id}", follow, query_status)
        .route(Method::DELETE, "/v1/queries/{id}", follow, cancel_query)
        .route(Method::GET, "/v1/queries/{id}/results", follow, query_results)
        .route(Method::GET, "/v1/search", read, search)
        .route(Method::GET, "/v1/trace/{id}", read, trace)
        .route(Method::POST, "/v1/exports", export, start_export)
        .route(Method::GET, "/v1/exports/{id}", download, export_status)
        .route(Method::GET, "/v1/exports/{id}/events", download, export_events)
        .route(Method::GET, "/v1/exports/{id}/download", download, export_download)
        .with_state(Arc::new(api))
}
