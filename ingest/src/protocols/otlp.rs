//! OTLP/HTTP logs at `POST /otlp/v1/logs` (docs/otlp.md): an OpenTelemetry SDK or Collector
//! exports to `http://host:port/otlp`. Protobuf (`application/x-protobuf`) or OTLP/JSON
//! (`application/json`), gzip allowed; the answer is an `ExportLogsServiceResponse` in the
//! request's encoding, with `partial_success` counting rejected records; an error is a
//! `google.rpc.Status`, with 429/503 and `Retry-After` where OTLP clients retry.
//!
//! The mapping of one log record to a native record:
//!
//! | OTLP | native field | lake column (log type `otel`) |
//! |---|---|---|
//! | resource `sluice.organization`, else `?organization=`, else the token's one organization | `organizationID` | `organization` |
//! | resource `deployment.environment.name` or `deployment.environment`, else `?environment=` | `environment` | `environment` |
//! | resource `sluice.log_type`, else `?log_type=`, else `service.name` when it is a registered log type, else `otel` | `logType` | `logtype` |
//! | `time_unix_nano`, else `observed_time_unix_nano` | `time` | `time` |
//! | `trace_id` (hex) | `transactionId` | `transaction_id` |
//! | resource `host.name` | `server` | `server` |
//! | body: a string | `description` | `description` |
//! | body: anything else | `detail` | `detail` (JSON) |
//! | `severity_text`, `severity_number`, `span_id` (hex), `flags`, resource `service.name`, scope name | `severityText`, … | `severity_text`, `severity_number`, `span_id`, `trace_flags`, `service_name`, `scope_name` |
//! | the log record's attributes, the resource's, the scope's version and attributes, `observed_time_unix_nano`, `event_name`, `dropped_attributes_count` | `attributes`, `resource`, `scope`, `observedTime`, `eventName`, `droppedAttributesCount` | inside `attributes` (JSON) |

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension,
    extract::{Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
};
use prost::Message as _;
#[cfg(test)]
use serde_json::json;
use serde_json::{Map, Value};
use sluice_auth::ApiError;
use sluice_schemas::{Caller, Registry};

use super::{Ndjson, RequestDefaults, hex, put, rejection_summary, token_organization};
use crate::{
    accept::{AppState, admit, blocking, check_count, content_type, decompress, deliver, receive},
    metrics::Protocol,
};

/// The log type of OTLP records whose resource names none.
pub const DEFAULT_LOG_TYPE: &str = "otel";

/// `google.rpc.Status`, the body of an OTLP error answer.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An OTLP/JSON export request: `{}` (no `resourceLogs`) is a valid, empty one.
#[derive(serde::Deserialize)]
struct JsonRequest {
    #[serde(default, rename = "resourceLogs")]
    resource_logs: Vec<opentelemetry_proto::tonic::logs::v1::ResourceLogs>,
}

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    fn answer<T: prost::Message + serde::Serialize>(self, status: StatusCode, message: &T) -> Response {
        let body = match self {
            Self::Protobuf => message.encode_to_vec(),
            Self::Json => serde_json::to_vec(message).expect("an OTLP message serializes"),
        };
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type()))], body).into_response()
    }

    /// An error as OTLP has it: a `Status` with the gRPC code of the HTTP status, our reason code
    /// first in its message, and `Retry-After` kept.
    fn error(self, e: ApiError) -> Response {
        let code = match e.status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
            StatusCode::UNAUTHORIZED => 16,
            StatusCode::FORBIDDEN => 7,
            StatusCode::TOO_MANY_REQUESTS => 8,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            StatusCode::REQUEST_TIMEOUT => 4,
            _ => 13,
        };
        let mut r = self.answer(e.status, &RpcStatus { code, message: format!("{}: {}", e.code, e.message) });
        if let Some(s) = e.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// `POST /otlp/v1/logs`.
pub(crate) async fn export(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let t = content_type(req.headers()).unwrap_or_default();
    let encoding = if t.starts_with("application/json") {
        Encoding::Json
    } else if t.starts_with("application/x-protobuf") || t.starts_with("application/protobuf") {
        Encoding::Protobuf
    } else {
        return Encoding::Json.error(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("OTLP/HTTP bodies are application/x-protobuf or application/json, not {t:?}"),
        ));
    };
    match handle(&app, caller, &params, req, encoding).await {
        Ok(r) => encoding.answer(StatusCode::OK, &r),
        Err(e) => encoding.error(e),
    }
}

async fn handle(
    app: &Arc<AppState>,
    caller: Caller,
    params: &HashMap<String, String>,
    req: Request,
    encoding: Encoding,
) -> Result<ExportLogsServiceResponse, ApiError> {
    let defaults = RequestDefaults::of(params, req.headers());
    let (headers, raw) = receive(app, &caller, req).await?;
    let _permit = admit(app).await?;
    let token_org = token_organization(&caller);
    let ndjson = blocking({
        let app = Arc::clone(app);
        move || {
            let body = decompress(&app, &headers, raw)?;
            let request = match encoding {
                Encoding::Protobuf => ExportLogsServiceRequest::decode(&body[..]).map_err(|e| e.to_string()),
                Encoding::Json => serde_json::from_slice::<JsonRequest>(&body)
                    .map(|r| ExportLogsServiceRequest { resource_logs: r.resource_logs })
                    .map_err(|e| e.to_string()),
            }
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("not an OTLP logs export request: {e}"))
            })?;
            let registry = &app.pipeline.partitioner().contract().registry;
            let ndjson = convert(request, &defaults, token_org.as_deref(), registry);
            check_count(&app, ndjson.records)?;
            Ok(ndjson)
        }
    })
    .await?;
    if ndjson.records == 0 {
        return Ok(ExportLogsServiceResponse { partial_success: None });
    }
    let result = deliver(app, Protocol::Otlp, ndjson.body.into(), crate::body::Shape::Ndjson, caller).await?;
    let partial_success = (result.rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: result.rejected as i64,
        error_message: rejection_summary(&result, "log record"),
    });
    Ok(ExportLogsServiceResponse { partial_success })
}

/// An attribute value as JSON: strings, numbers, booleans, arrays and maps as themselves, bytes
/// as base64.
fn json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(object(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        // An index into a profile's string table (profiles only): kept as the number it is.
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
    }
}

fn object(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json))).collect()
}

/// An attribute's value as a partition value: a string, or an integer as its digits.
fn text(attrs: &Map<String, Value>, key: &str) -> Option<String> {
    match attrs.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// RFC 3339 with nanoseconds of a Unix time in nanoseconds (0: unset).
fn time(nanos: u64) -> Option<String> {
    if nanos == 0 {
        return None;
    }
    // Past 2262 a time is out of range whatever it is: the contract rejects it as such.
    let t = chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX));
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// The native records of an export request, one a log record, in order.
pub fn convert(
    request: ExportLogsServiceRequest,
    defaults: &RequestDefaults,
    token_org: Option<&str>,
    registry: &Registry,
) -> Ndjson {
    let mut out = Ndjson::default();
    for rl in request.resource_logs {
        let resource = rl.resource.map(|r| object(&r.attributes)).unwrap_or_default();
        let organization = text(&resource, "sluice.organization")
            .or_else(|| defaults.organization.clone())
            .or_else(|| token_org.map(str::to_owned));
        let environment = text(&resource, "deployment.environment.name")
            .or_else(|| text(&resource, "deployment.environment"))
            .or_else(|| defaults.environment.clone());
        let service = text(&resource, "service.name");
        let log_type = text(&resource, "sluice.log_type")
            .or_else(|| defaults.log_type.clone())
            .or_else(|| service.clone().filter(|s| registry.get(s).is_some()))
            .unwrap_or_else(|| DEFAULT_LOG_TYPE.to_owned());
        let server = text(&resource, "host.name");
        for sl in rl.scope_logs {
            let (scope_name, scope) = match sl.scope {
                Some(s) => {
                    let mut scope = Map::new();
                    put(&mut scope, "version", Some(s.version).filter(|v| !v.is_empty()));
                    put(&mut scope, "attributes", Some(object(&s.attributes)).filter(|a| !a.is_empty()));
                    put(&mut scope, "droppedAttributesCount", Some(s.dropped_attributes_count).filter(|n| *n > 0));
                    (Some(s.name).filter(|n| !n.is_empty()), scope)
                }
                None => (None, Map::new()),
            };
            for lr in sl.log_records {
                let mut r = Map::new();
                put(&mut r, "organizationID", organization.clone());
                put(&mut r, "environment", environment.clone());
                r.insert("logType".into(), Value::String(log_type.clone()));
                let at = if lr.time_unix_nano != 0 { lr.time_unix_nano } else { lr.observed_time_unix_nano };
                put(&mut r, "time", time(at));
                put(&mut r, "transactionId", Some(hex(&lr.trace_id)).filter(|t| !t.is_empty()));
                put(&mut r, "server", server.clone());
                match lr.body.as_ref().map(json) {
                    Some(Value::String(s)) => put(&mut r, "description", Some(s)),
                    Some(Value::Null) | None => {}
                    Some(other) => put(&mut r, "detail", Some(other)),
                }
                put(&mut r, "severityText", Some(lr.severity_text).filter(|s| !s.is_empty()));
                put(&mut r, "severityNumber", Some(lr.severity_number).filter(|n| *n != 0));
                put(&mut r, "spanId", Some(hex(&lr.span_id)).filter(|s| !s.is_empty()));
                put(&mut r, "traceFlags", Some(lr.flags).filter(|f| *f != 0));
                put(&mut r, "serviceName", service.clone());
                put(&mut r, "scopeName", scope_name.clone());
                put(&mut r, "eventName", Some(lr.event_name).filter(|s| !s.is_empty()));
                if lr.time_unix_nano != 0 {
                    put(&mut r, "observedTime", time(lr.observed_time_unix_nano));
                }
                put(&mut r, "droppedAttributesCount", Some(lr.dropped_attributes_count).filter(|n| *n > 0));
                put(&mut r, "attributes", Some(object(&lr.attributes)).filter(|a| !a.is_empty()));
                put(&mut r, "resource", Some(resource.clone()).filter(|a| !a.is_empty()));
                put(&mut r, "scope", Some(scope.clone()).filter(|a| !a.is_empty()));
                out.push(&r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{InstrumentationScope, KeyValueList},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
    };

    use super::*;

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn lines(n: &Ndjson) -> Vec<Value> {
        n.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("JSON"))
            .collect()
    }

    #[test]
    fn records_take_resource_then_request_then_token_values() {
        let record = |body: any_value::Value| LogRecord {
            time_unix_nano: 1_764_590_400_123_456_789,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue { value: Some(body) }),
            attributes: vec![kv("time", s("not the time")), kv("n", any_value::Value::IntValue(7))],
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            ..Default::default()
        };
        let resource = |attrs: Vec<KeyValue>| ResourceLogs {
            resource: Some(Resource { attributes: attrs, ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "lib".into(), version: "1.2".into(), ..Default::default() }),
                log_records: vec![
                    record(s("text")),
                    record(any_value::Value::KvlistValue(KeyValueList { values: vec![kv("k", s("v"))] })),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![
                resource(vec![
                    kv("service.name", s("app")),
                    kv("deployment.environment.name", s("prod")),
                    kv("sluice.organization", s("globex")),
                ]),
                resource(vec![kv("service.name", s("billing"))]),
            ],
        };
        let defaults = RequestDefaults { environment: Some("staging".into()), ..Default::default() };
        let out = convert(request, &defaults, Some("acme"), &Registry::builtin());
        assert_eq!(out.records, 4);
        let r = lines(&out);
        // The resource's values, `service.name` as a registered log type.
        assert_eq!(
            (&r[0]["organizationID"], &r[0]["environment"], &r[0]["logType"]),
            (&json!("globex"), &json!("prod"), &json!("app"))
        );
        // The request's environment, the token's organization, the default log type.
        assert_eq!(
            (&r[2]["organizationID"], &r[2]["environment"], &r[2]["logType"]),
            (&json!("acme"), &json!("staging"), &json!("otel"))
        );
        assert_eq!(r[0]["time"], "2025-12-01T12:00:00.123456789Z");
        assert_eq!(r[0]["transactionId"], "ab".repeat(16));
        assert_eq!(r[0]["spanId"], "01".repeat(8));
        assert_eq!(r[0]["description"], "text");
        assert_eq!(r[1]["detail"], json!({"k": "v"}));
        // An attribute named like a contract field stays an attribute.
        assert_eq!(r[0]["attributes"], json!({"time": "not the time", "n": 7}));
        assert_eq!(r[0]["scope"], json!({"version": "1.2"}));
        assert_eq!((&r[0]["scopeName"], &r[0]["severityNumber"]), (&json!("lib"), &json!(17)));
    }

    #[test]
    fn a_time_past_2262_is_out_of_range_not_wrapped() {
        assert!(time(u64::MAX).is_some_and(|t| t.starts_with("2262")));
        assert_eq!(time(0), None);
    }
}
