//! Elasticsearch `_bulk` at `POST /es/_bulk` and `POST /es/{index}/_bulk` (docs/elasticsearch.md),
//! with the handshake shippers and clients make first (`GET /es/`: a version; every answer under
//! `/es` carries `X-Elastic-Product: Elasticsearch`, which the server adds). Filebeat, Logstash,
//! Fluent Bit, Vector and the official clients send to `http://host:port/es`.
//!
//! `index` and `create` actions are taken, each document a record; `delete` and `update` are
//! answered one by one with `unsupported_action`. The answer has `took`, `errors` and one item a
//! action, with `status` 201 for a record made durable and, for a rejected one, 400 (403 for
//! `forbidden_organization`) with an `error` whose `type` is the reason code.
//!
//! A document becomes a native record with these fields moved to their native names (the values
//! are kept, under the contract's name; query parameters name other fields, a dotted name reaches
//! into objects, e.g. `organization_field=fields.org`):
//!
//! | native field | document field (query parameter, default) | when the document has none |
//! |---|---|---|
//! | `organizationID` | `organization_field`, `organizationID` | `?organization=`, else the token's one organization |
//! | `environment` | `environment_field`, `environment` | `?environment=` |
//! | `logType` | `log_type_field`, `logType` | `?log_type=`, else the index when it names a registered log type |
//! | `time` | `time_field`, `time`, else `@timestamp` | — |
//! | `description` | `message_field`, `message` (a string) | — |
//!
//! Every other field is kept as the contract keeps it (typed columns, or inside `attributes`).

use std::{collections::HashMap, sync::Arc, time::Instant};

use axum::{
    Extension, Json,
    extract::{Path, Query, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};
use sluice_auth::ApiError;
use sluice_schemas::{Caller, ReasonCode, Registry};

use super::{Ndjson, RequestDefaults, set_default, token_organization};
use crate::{
    accept::{AppState, admit, blocking, check_count, decompress, deliver, receive},
    metrics::Protocol,
};

/// The Elasticsearch version `GET /es/` reports: what shippers check before they send.
pub const VERSION: &str = "8.19.0";

/// An error as Elasticsearch answers one (`error.type`, `error.reason`, `status`), so that
/// clients raise the exception of its status; our reason code is the type.
fn es_error(e: ApiError) -> Response {
    let body = json!({
        "error": {"root_cause": [{"type": e.code, "reason": e.message}], "type": e.code, "reason": e.message},
        "status": e.status.as_u16(),
    });
    let mut r = (e.status, Json(body)).into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
    }
    r
}

/// `GET /es/`: who we are, as Elasticsearch says it.
pub(crate) async fn info() -> Json<Value> {
    Json(json!({
        "name": "sluice",
        "cluster_name": "sluice",
        "cluster_uuid": "sluice",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "sluice",
            "build_hash": env!("CARGO_PKG_VERSION"),
            "build_snapshot": false,
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "You Know, for Search"
    }))
}

/// `GET /es/_license`: an active basic license, which Logstash's and Beats' Elasticsearch outputs
/// ask for before they send.
pub(crate) async fn license() -> Json<Value> {
    Json(json!({
        "license": {
            "status": "active",
            "uid": "sluice",
            "type": "basic",
            "issue_date_in_millis": 0,
            "max_nodes": 1000,
            "issued_to": "sluice",
            "issuer": "sluice",
            "start_date_in_millis": -1
        }
    }))
}

/// Which document fields hold the native ones.
#[derive(Debug, Clone)]
pub struct FieldMap {
    organization: String,
    environment: String,
    log_type: String,
    time: Option<String>,
    message: String,
}

impl FieldMap {
    /// The field names of a request's query parameters.
    pub fn of(params: &HashMap<String, String>) -> Self {
        let get = |k: &str, default: &str| params.get(k).cloned().unwrap_or_else(|| default.to_owned());
        Self {
            organization: get("organization_field", "organizationID"),
            environment: get("environment_field", "environment"),
            log_type: get("log_type_field", "logType"),
            time: params.get("time_field").cloned(),
            message: get("message_field", "message"),
        }
    }
}

/// What one action of a bulk request became.
#[derive(Debug)]
enum Action {
    /// A record: its line in the converted body.
    Record { op: &'static str, index: Option<String>, id: Option<String>, line: usize },
    /// Not taken.
    Unsupported { op: String, index: Option<String>, id: Option<String> },
}

/// A bulk body's actions and the native records of its documents.
#[derive(Debug, Default)]
pub struct Bulk {
    actions: Vec<Action>,
    records: Ndjson,
}

/// Removes the value at a dotted path (`a.b`): the field named so at the top, else one in
/// the objects on its way.
fn take(doc: &mut Map<String, Value>, path: &str) -> Option<Value> {
    if let Some(v) = doc.remove(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match doc.get_mut(head)? {
        Value::Object(inner) => take(inner, rest),
        _ => None,
    }
}

/// Moves the value at `from` to the native `to` unless the document has `to` already.
fn relocate(doc: &mut Map<String, Value>, from: &str, to: &str) {
    if from != to
        && !doc.contains_key(to)
        && let Some(v) = take(doc, from)
    {
        doc.insert(to.to_owned(), v);
    }
}

/// One document as a native record.
fn document(
    mut doc: Map<String, Value>,
    index: Option<&str>,
    fields: &FieldMap,
    defaults: &RequestDefaults,
    token_org: Option<&str>,
    registry: &Registry,
) -> Map<String, Value> {
    relocate(&mut doc, &fields.organization, "organizationID");
    relocate(&mut doc, &fields.environment, "environment");
    relocate(&mut doc, &fields.log_type, "logType");
    match &fields.time {
        Some(f) => relocate(&mut doc, f, "time"),
        None => relocate(&mut doc, "@timestamp", "time"),
    }
    if matches!(doc.get(&fields.message), Some(Value::String(_))) {
        relocate(&mut doc, &fields.message.clone(), "description");
    }
    set_default(&mut doc, "organizationID", defaults.organization.as_deref().or(token_org));
    set_default(&mut doc, "environment", defaults.environment.as_deref());
    let index_type = index.filter(|i| registry.get(i).is_some());
    set_default(&mut doc, "logType", defaults.log_type.as_deref().or(index_type));
    doc
}

/// Reads a bulk body: action lines, each `index` and `create` followed by its document. An
/// action line that is not an action, or an action without its document, fails the whole
/// request (as Elasticsearch does); a document that is not a JSON object is passed on as it is,
/// for the contract to reject with its reason code.
pub fn parse(
    body: &[u8],
    path_index: Option<&str>,
    fields: &FieldMap,
    defaults: &RequestDefaults,
    token_org: Option<&str>,
    registry: &Registry,
) -> Result<Bulk, String> {
    let mut bulk = Bulk::default();
    let mut lines = body.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.trim_ascii().is_empty());
    while let Some((n, line)) = lines.next() {
        let action: Map<String, Value> = serde_json::from_slice(line)
            .map_err(|e| format!("line {}: an action line must be a JSON object: {e}", n + 1))?;
        let (op, meta) = action
            .into_iter()
            .next()
            .ok_or_else(|| format!("line {}: an action line names one action (index, create, …)", n + 1))?;
        let meta = match meta {
            Value::Object(m) => m,
            _ => return Err(format!("line {}: the action {op:?} must hold an object", n + 1)),
        };
        let index = meta.get("_index").and_then(Value::as_str).or(path_index).map(str::to_owned);
        let id = meta.get("_id").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        let op = match op.as_str() {
            "index" => "index",
            "create" => "create",
            "update" => {
                lines.next();
                bulk.actions.push(Action::Unsupported { op, index, id });
                continue;
            }
            _ => {
                bulk.actions.push(Action::Unsupported { op, index, id });
                continue;
            }
        };
        let (_, source) =
            lines.next().ok_or_else(|| format!("line {}: the {op} action has no document after it", n + 1))?;
        let line = bulk.records.records;
        match serde_json::from_slice::<Map<String, Value>>(source) {
            Ok(doc) => bulk.records.push(&document(doc, index.as_deref(), fields, defaults, token_org, registry)),
            Err(_) => {
                bulk.records.body.extend_from_slice(source.trim_ascii());
                bulk.records.body.push(b'\n');
                bulk.records.records += 1;
            }
        }
        bulk.actions.push(Action::Record { op, index, id, line });
    }
    Ok(bulk)
}

/// `POST /es/_bulk`.
pub(crate) async fn bulk(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    run(app, caller, params, None, req).await
}

/// `POST /es/{index}/_bulk`.
pub(crate) async fn bulk_index(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(index): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    run(app, caller, params, Some(index), req).await
}

async fn run(
    app: Arc<AppState>,
    caller: Caller,
    params: HashMap<String, String>,
    index: Option<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    match handle(&app, caller, &params, index, req).await {
        Ok(items) => {
            let errors = items.iter().any(|i| i.values().any(|v| v.get("error").is_some()));
            Json(json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": items}))
                .into_response()
        }
        Err(e) => es_error(e),
    }
}

async fn handle(
    app: &Arc<AppState>,
    caller: Caller,
    params: &HashMap<String, String>,
    index: Option<String>,
    req: Request,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let defaults = RequestDefaults::of(params, req.headers());
    let fields = FieldMap::of(params);
    let (headers, raw) = receive(app, &caller, req).await?;
    let _permit = admit(app).await?;
    let token_org = token_organization(&caller);
    let bulk = blocking({
        let app = Arc::clone(app);
        move || {
            let body = decompress(&app, &headers, raw)?;
            let registry = &app.pipeline.partitioner().contract().registry;
            let bulk = parse(&body, index.as_deref(), &fields, &defaults, token_org.as_deref(), registry)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e))?;
            check_count(&app, bulk.records.records)?;
            Ok(bulk)
        }
    })
    .await?;
    let Bulk { actions, records } = bulk;
    let (codes, listed) = if records.records > 0 {
        let result =
            deliver(app, Protocol::Elasticsearch, records.body.into(), crate::body::Shape::Ndjson, caller).await?;
        let listed: HashMap<usize, String> = result.listed.into_iter().map(|(i, r)| (i, r.message)).collect();
        (result.codes.into_iter().collect::<HashMap<_, _>>(), listed)
    } else {
        Default::default()
    };
    let mut seq = 0u64;
    Ok(actions
        .into_iter()
        .map(|a| {
            let (op, item) = match a {
                Action::Record { op, index, id, line } => {
                    let mut item = Map::new();
                    item.insert("_index".into(), index.map_or(Value::Null, Value::String));
                    item.insert("_id".into(), id.map_or(Value::Null, Value::String));
                    match codes.get(&line) {
                        None => {
                            item.insert("_version".into(), 1.into());
                            item.insert("result".into(), "created".into());
                            item.insert("_shards".into(), json!({"total": 1, "successful": 1, "failed": 0}));
                            item.insert("_seq_no".into(), seq.into());
                            item.insert("_primary_term".into(), 1.into());
                            item.insert("status".into(), 201.into());
                            seq += 1;
                        }
                        Some(code) => {
                            let status = if *code == ReasonCode::ForbiddenOrganization { 403 } else { 400 };
                            let reason = listed.get(&line).cloned().unwrap_or_else(|| {
                                format!("rejected ({code}); the record is kept in the lake's error output")
                            });
                            item.insert("status".into(), status.into());
                            item.insert("error".into(), json!({"type": code.as_str(), "reason": reason}));
                        }
                    }
                    (op.to_owned(), item)
                }
                Action::Unsupported { op, index, id } => {
                    let mut item = Map::new();
                    item.insert("_index".into(), index.map_or(Value::Null, Value::String));
                    item.insert("_id".into(), id.map_or(Value::Null, Value::String));
                    item.insert("status".into(), 400.into());
                    item.insert(
                        "error".into(),
                        json!({"type": "unsupported_action", "reason": format!(
                            "sluice keeps logs as they come: only index and create actions are taken, not {op}"
                        )}),
                    );
                    (op, item)
                }
            };
            Map::from_iter([(op, Value::Object(item))])
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(body: &str, params: &[(&str, &str)]) -> Result<Bulk, String> {
        let params: HashMap<String, String> = params.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let defaults = RequestDefaults::of(&params, &axum::http::HeaderMap::new());
        parse(body.as_bytes(), Some("web"), &FieldMap::of(&params), &defaults, Some("acme"), &Registry::builtin())
    }

    #[test]
    fn documents_are_mapped_and_other_actions_answered_one_by_one() {
        let body = concat!(
            "{\"index\":{\"_id\":\"a\"}}\n{\"@timestamp\":\"2026-12-01T00:00:00Z\",\"message\":\"hi\",\"fields\":{\"env\":\"dev\"},\"x\":1}\n",
            "{\"delete\":{\"_id\":\"b\"}}\n",
            "{\"update\":{\"_id\":\"c\"}}\n{\"doc\":{}}\n",
            "{\"create\":{\"_index\":\"nope\"}}\nnot json\n",
        );
        let bulk = parse_text(body, &[("environment_field", "fields.env")]).expect("bulk");
        assert_eq!(bulk.actions.len(), 4);
        assert_eq!(bulk.records.records, 2);
        let text = String::from_utf8(bulk.records.body).expect("utf8");
        let mut lines = text.lines();
        let first: Value = serde_json::from_str(lines.next().expect("line")).expect("JSON");
        assert_eq!(
            first,
            json!({"fields": {}, "x": 1, "organizationID": "acme", "environment": "dev", "time": "2026-12-01T00:00:00Z",
                   "description": "hi", "logType": "web"})
        );
        // A document that is not JSON is passed on for the contract to reject.
        assert_eq!(lines.next(), Some("not json"));
        assert!(matches!(&bulk.actions[1], Action::Unsupported { op, .. } if op == "delete"));
        assert!(matches!(&bulk.actions[3], Action::Record { op: "create", line: 1, .. }));
    }

    #[test]
    fn a_broken_action_fails_the_request() {
        assert!(parse_text("{\"index\":{}}\n", &[]).expect_err("no document").contains("no document"));
        assert!(parse_text("[1]\n{}\n", &[]).expect_err("not an object").contains("JSON object"));
    }
}
