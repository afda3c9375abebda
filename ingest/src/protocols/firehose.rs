//! Firehose HTTP endpoint delivery at `POST /firehose` (docs/firehose.md): an AWS Firehose stream
//! whose destination is an HTTP endpoint delivers into a `sluice serve`. The request is
//! Firehose's (`requestId`, `timestamp`, `records` of base64 `data`, gzip when the stream says
//! so), the access key comes in `X-Amz-Firehose-Access-Key` and is checked by the gate against
//! the server's keys ([`sluice_auth::keys`]), and the answer is Firehose's (`requestId`,
//! `timestamp`, and `errorMessage` on failure).
//!
//! Each record's data is one native record (a trailing newline is fine; a record of several
//! lines is one JSON value, re-written on one line). The stream's common attributes
//! (`X-Amz-Firehose-Common-Attributes`, set as "Parameters" of the destination) `organization`,
//! `environment` and `log_type` are the request's defaults, like the query parameters of the
//! other protocols.
//!
//! 200 means every record is durable in the write-ahead log (rejected ones too, bound for the
//! error output with their reason codes): Firehose retries anything else. A retry of a request
//! this server already answered 200 (its id is noted durably before the answer) is answered 200
//! again without taking its records twice, after a restart too; a request made durable whose
//! answer a crash cut off is taken again when Firehose retries it (at least once).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension, Json,
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_auth::ApiError;
use sluice_schemas::Caller;

use super::{Ndjson, RequestDefaults, rejection_summary, set_default, token_organization};
use crate::{
    accept::{AppState, admit, blocking, check_count, decompress, deliver, receive},
    metrics::Protocol,
};

/// Longest request id taken (Firehose's are GUIDs).
const MAX_ID: usize = 256;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    request_id: String,
    #[serde(default)]
    records: Vec<FirehoseRecord>,
}

#[derive(Deserialize)]
struct FirehoseRecord {
    data: String,
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The request defaults of the stream's common attributes, with query parameters over them.
fn defaults(params: &HashMap<String, String>, headers: &HeaderMap) -> RequestDefaults {
    let mut merged = params.clone();
    let common = headers
        .get("x-amz-firehose-common-attributes")
        .and_then(|v| serde_json::from_slice::<Value>(v.as_bytes()).ok());
    if let Some(Value::Object(attrs)) = common.as_ref().and_then(|c| c.get("commonAttributes")) {
        for (k, v) in attrs {
            if let Some(v) = v.as_str() {
                merged.entry(k.clone()).or_insert_with(|| v.to_owned());
            }
        }
    }
    RequestDefaults::of(&merged, headers)
}

/// One record's data as one NDJSON line: as sent when it is one line, else the JSON value it
/// holds re-written on one line, else its lines joined with spaces (not JSON either way: the
/// contract rejects it as `invalid_json`).
fn one_line(data: &[u8]) -> Vec<u8> {
    let data = data.trim_ascii();
    if !data.contains(&b'\n') && !data.contains(&b'\r') {
        return data.to_vec();
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(v) => serde_json::to_vec(&v).expect("a JSON value serializes"),
        Err(_) => data.iter().map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { *b }).collect(),
    }
}

/// The records of a delivery as NDJSON, with the request's organization and environment filled
/// in where a record names none.
fn convert(delivery: &Delivery, defaults: &RequestDefaults, token_org: Option<&str>) -> Result<Ndjson, String> {
    let fill = defaults.organization.is_some() || defaults.environment.is_some() || defaults.log_type.is_some();
    let org = defaults.organization.as_deref().or(token_org);
    let mut out = Ndjson::default();
    for (i, r) in delivery.records.iter().enumerate() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(r.data.trim())
            .map_err(|e| format!("record {i}: data is not base64: {e}"))?;
        let line = one_line(&data);
        let filled = if fill || org.is_some() {
            match serde_json::from_slice::<serde_json::Map<String, Value>>(&line) {
                Ok(mut rec) => {
                    set_default(&mut rec, "organizationID", org);
                    set_default(&mut rec, "environment", defaults.environment.as_deref());
                    set_default(&mut rec, "logType", defaults.log_type.as_deref());
                    Some(rec)
                }
                Err(_) => None,
            }
        } else {
            None
        };
        match filled {
            Some(rec) => out.push(&rec),
            None => {
                out.body.extend_from_slice(&line);
                out.body.push(b'\n');
                out.records += 1;
            }
        }
    }
    Ok(out)
}

/// `POST /firehose`.
pub(crate) async fn deliver_records(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let header_id = req
        .headers()
        .get("x-amz-firehose-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    match handle(&app, caller, &params, req).await {
        Ok(id) => Json(json!({"requestId": id, "timestamp": now_millis()})).into_response(),
        Err((id, e)) => {
            let id = id.unwrap_or(header_id);
            let mut r = (e.status, Json(json!({"requestId": id, "timestamp": now_millis(), "errorMessage": format!("{}: {}", e.code, e.message)})))
                .into_response();
            if let Some(s) = e.retry_after {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
            }
            r
        }
    }
}

async fn handle(
    app: &Arc<AppState>,
    caller: Caller,
    params: &HashMap<String, String>,
    req: Request,
) -> Result<String, (Option<String>, ApiError)> {
    let defaults = defaults(params, req.headers());
    let (headers, raw) = receive(app, &caller, req).await.map_err(|e| (None, e))?;
    let _permit = admit(app).await.map_err(|e| (None, e))?;
    let token_org = token_organization(&caller);
    let (id, ndjson) = blocking({
        let app = Arc::clone(app);
        move || {
            let body = decompress(&app, &headers, raw)?;
            let invalid = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e);
            let delivery: Delivery = serde_json::from_slice(&body)
                .map_err(|e| invalid(format!("not a Firehose HTTP endpoint delivery request: {e}")))?;
            let id = &delivery.request_id;
            if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
                return Err(invalid(format!("requestId must be 1 to {MAX_ID} characters without control characters")));
            }
            if app.firehose_delivered.contains(id) {
                return Ok((delivery.request_id, None));
            }
            let ndjson = convert(&delivery, &defaults, token_org.as_deref()).map_err(invalid)?;
            check_count(&app, ndjson.records)?;
            Ok((delivery.request_id, Some(ndjson)))
        }
    })
    .await
    .map_err(|e| (None, e))?;
    let Some(ndjson) = ndjson else {
        tracing::info!(request_id = %id, "a Firehose retry of a request already delivered: answered again");
        return Ok(id);
    };
    if ndjson.records > 0 {
        let result = deliver(app, Protocol::Firehose, ndjson.body.into(), crate::body::Shape::Ndjson, caller)
            .await
            .map_err(|e| (Some(id.clone()), e))?;
        if result.rejected > 0 {
            tracing::warn!(request_id = %id, "{}", rejection_summary(&result, "record"));
        }
    }
    // The records are durable whatever happens here: a failure to note the id only means a
    // retry of this request would be taken again, so the answer is 200 all the same.
    let (noted, id2) = (Arc::clone(app), id.clone());
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || noted.firehose_delivered.insert(id2)).await {
        tracing::warn!(error = %e, request_id = %id, "cannot note a delivered Firehose request id");
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_several_lines_becomes_one() {
        assert_eq!(one_line(b"{\"a\":1}\n"), b"{\"a\":1}");
        assert_eq!(one_line(b"{\n  \"a\": 1,\n  \"b\": [2]\n}\n"), b"{\"a\":1,\"b\":[2]}");
        assert_eq!(one_line(b"not\njson"), b"not json");
    }
}
