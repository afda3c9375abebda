//! What shippers already speak, turned into records of the native contract (DESIGN.md §9):
//! OTLP/HTTP logs ([`otlp`]), Elasticsearch `_bulk` ([`es`]) and Firehose HTTP endpoint delivery
//! ([`firehose`]). Each converts a request into NDJSON of native records, one line a record in
//! the request's order, and hands it to [`crate::server::deliver`]: the same transform,
//! write-ahead log, reason codes, organizations and limits as `POST /v1/logs`. A record that
//! cannot be mapped (no organization, say) is converted without the field and rejected by the
//! contract with its reason code, like any other.

pub mod es;
pub mod firehose;
pub mod otlp;

use std::collections::HashMap;

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use sluice_schemas::{Caller, Orgs};

use crate::stream::IngestResult;

/// The partition fields a request gives its records that do not name their own, from query
/// parameters (`organization`, `environment`, `log_type`) or headers (`X-Sluice-Organization`,
/// `X-Sluice-Environment`, `X-Sluice-Log-Type`; a query parameter wins over its header). What a
/// record (or its OTLP resource) says wins over the request; the request wins over the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDefaults {
    /// The organization of records that name none.
    pub organization: Option<String>,
    /// The environment of records that name none.
    pub environment: Option<String>,
    /// The log type of records that name none.
    pub log_type: Option<String>,
}

impl RequestDefaults {
    /// The defaults of a request.
    pub fn of(params: &HashMap<String, String>, headers: &HeaderMap) -> Self {
        let pick = |param: &str, header: &str| {
            params
                .get(param)
                .cloned()
                .or_else(|| headers.get(header).and_then(|v| v.to_str().ok()).map(str::to_owned))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            organization: pick("organization", "x-sluice-organization"),
            environment: pick("environment", "x-sluice-environment"),
            log_type: pick("log_type", "x-sluice-log-type"),
        }
    }
}

/// The organization of records that name none and come without a request default: the
/// caller's, when its token allows exactly one.
pub fn token_organization(caller: &Caller) -> Option<String> {
    match &caller.orgs {
        Orgs::Some(set) if set.len() == 1 => set.iter().next().map(|o| o.as_str().to_owned()),
        _ => None,
    }
}

/// Native records being written as NDJSON, one line each.
#[derive(Debug, Default)]
pub struct Ndjson {
    /// The body.
    pub body: Vec<u8>,
    /// Records written.
    pub records: usize,
}

impl Ndjson {
    /// Appends one record.
    pub fn push(&mut self, record: &Map<String, Value>) {
        serde_json::to_writer(&mut self.body, record).expect("a JSON map always serializes");
        self.body.push(b'\n');
        self.records += 1;
    }
}

/// Puts `value` at `key` unless it is absent.
pub(crate) fn put(record: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        record.insert(key.to_owned(), v.into());
    }
}

/// Sets `key` to `value` when the record has no value there (absent or null).
pub(crate) fn set_default(record: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value
        && record.get(key).is_none_or(Value::is_null)
    {
        record.insert(key.to_owned(), Value::String(v.to_owned()));
    }
}

/// One sentence on what was rejected and why, for protocols that answer with one message:
/// the count, the codes with their counts, and the first rejected record's message.
pub fn rejection_summary(result: &IngestResult, noun: &str) -> String {
    if result.rejected == 0 {
        return String::new();
    }
    let codes: Vec<String> = result.by_code.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    let first = result
        .listed
        .first()
        .map(|(i, r)| format!("; first: {noun} {i}: {} ({})", r.message, r.code.as_str()))
        .unwrap_or_default();
    format!(
        "{} of {} {noun}s rejected: {}{first}; rejected records are kept in the lake's error output (sluice replay)",
        result.rejected,
        result.accepted + result.rejected,
        codes.join(", ")
    )
}

/// Lowercase hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
