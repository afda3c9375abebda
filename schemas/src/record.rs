//! The record contract: parse, validate and normalize one producer record into a lake row and
//! its partition, or reject it with a stable reason code.
//!
//! See DESIGN.md §1. The parser is a pure function of the raw bytes and a [`Context`] (the
//! record's id and arrival time), so the Firehose Lambda and the embedded delivery stream give
//! byte-identical output for the same input.

use std::{borrow::Cow, fmt};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    json::{self, Fields, Kind, Raw},
    partition::{Partition, PartitionValue, validate_partition_value},
    registry::{ExtraType, LogType, Registry},
    time::{format_time, parse_epoch_millis, parse_time_str, write_time},
};

/// Why a record was rejected. The strings are stable: they are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Not parseable JSON, invalid UTF-8, or nesting deeper than the limit.
    InvalidJson,
    /// Valid JSON but not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong type or an unparseable value.
    InvalidField,
    /// A partition value breaks the partition-value rule.
    InvalidPartitionValue,
    /// `logType` is not registered.
    UnknownLogType,
    /// The record is over the size limit (1,000 KiB, Firehose's record limit).
    RecordTooLarge,
    /// `time` is before 2000-01-01 or too far in the future.
    TimeOutOfRange,
    /// The record names an organization its producer may not write (set by the ingest API).
    ForbiddenOrganization,
}

impl ReasonCode {
    /// Every code the record contract itself produces.
    pub const CONTRACT: [Self; 8] = [
        Self::InvalidJson,
        Self::NotAnObject,
        Self::MissingField,
        Self::InvalidField,
        Self::InvalidPartitionValue,
        Self::UnknownLogType,
        Self::RecordTooLarge,
        Self::TimeOutOfRange,
    ];

    /// The stable string of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::InvalidPartitionValue => "invalid_partition_value",
            Self::UnknownLogType => "unknown_log_type",
            Self::RecordTooLarge => "record_too_large",
            Self::TimeOutOfRange => "time_out_of_range",
            Self::ForbiddenOrganization => "forbidden_organization",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record: a reason code and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The stable reason code.
    pub code: ReasonCode,
    /// What is wrong, with the offending value, and how to fix it.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Limits of the record contract.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest record accepted, in bytes (Firehose's record limit, 1,000 KiB).
    pub max_record_bytes: usize,
    /// Earliest accepted `time`.
    pub min_time: DateTime<Utc>,
    /// How far past its arrival a record's `time` may be.
    pub max_future: chrono::Duration,
    /// Deepest nesting of arrays and objects accepted.
    pub max_depth: usize,
}

/// The default nesting limit.
pub const MAX_DEPTH: usize = 64;

/// 1,000 KiB, Firehose's limit for one record.
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: MAX_RECORD_BYTES,
            min_time: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().expect("valid date"),
            max_future: chrono::Duration::hours(24),
            max_depth: MAX_DEPTH,
        }
    }
}

/// What the caller knows about a record besides its bytes.
#[derive(Debug, Clone)]
pub struct Context {
    /// The record's id (see [`record_id`]): stable across retries of the same delivery.
    pub record_id: String,
    /// When the pipeline received the record (becomes `ingested_at`), microseconds since the epoch.
    pub arrival_micros: i64,
}

/// Hex digits in a record id ([`record_id`], [`record_id_at`]).
pub const RECORD_ID_LEN: usize = 32;

/// A record id from the identity of a record's delivery (a Firehose `recordId`): 32 hex digits, a
/// hash of it, the same for every retry.
pub fn record_id(source: &str) -> String {
    hex(xxhash_rust::xxh3::xxh3_128(source.as_bytes()))
}

/// `n` as [`RECORD_ID_LEN`] hex digits, zero-padded (what `format!("{n:032x}")` writes).
fn hex(n: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; RECORD_ID_LEN];
    for (i, d) in text.iter_mut().enumerate() {
        *d = DIGITS[((n >> (4 * (RECORD_ID_LEN - 1 - i))) & 0xf) as usize];
    }
    String::from_utf8(text.to_vec()).expect("hex digits")
}

/// The record id of the `position`-th record of a numbered source (a write-ahead log, an imported
/// file, a replayed object): 32 hex digits, a 64-bit hash of the source then the position. The
/// same for every retry, like [`record_id`]; the ids of one source share their first half and
/// grow with the position, so a data file stores them in about 4 bytes a row instead of 20.
pub fn record_id_at(source: &str, position: u64) -> String {
    hex(u128::from(xxhash_rust::xxh3::xxh3_64(source.as_bytes())) << 64 | u128::from(position))
}

/// A typed value of an extra column. Text is `String` in an owned row, `Cow<str>` in one that
/// borrows from the raw record (see [`Contract::parse_borrowed`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraValue<S = String> {
    /// Text.
    String(S),
    /// Integer.
    Bigint(i64),
    /// Float.
    Double(f64),
    /// Boolean.
    Boolean(bool),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// JSON text.
    Json(S),
}

/// One element of `events`: a step of a request on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event<S = String> {
    /// `action`.
    pub action: Option<S>,
    /// `description`.
    pub description: Option<S>,
    /// `detail` as JSON text.
    pub detail: Option<S>,
    /// `caller`.
    pub caller: Option<S>,
    /// `server`.
    pub server: Option<S>,
    /// `success`.
    pub success: Option<bool>,
    /// `time`, microseconds since the epoch, UTC.
    pub time: Option<i64>,
    /// `transactionId`.
    pub transaction_id: Option<S>,
    /// `type`.
    pub r#type: Option<S>,
    /// Other fields, a JSON object as text.
    pub attributes: Option<S>,
}

/// The data columns of one record, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<S = String> {
    /// `record_id`.
    pub record_id: S,
    /// `time`, microseconds since the epoch, UTC.
    pub time: i64,
    /// `transaction_id`.
    pub transaction_id: Option<S>,
    /// `server`.
    pub server: Option<S>,
    /// `action`.
    pub action: Option<S>,
    /// `type`.
    pub r#type: Option<S>,
    /// `description`.
    pub description: Option<S>,
    /// `caller`.
    pub caller: Option<S>,
    /// `success`.
    pub success: Option<bool>,
    /// `detail`, JSON text.
    pub detail: Option<S>,
    /// `events`.
    pub events: Option<Vec<Event<S>>>,
    /// `attributes`, a JSON object as text.
    pub attributes: Option<S>,
    /// `ingested_at`, microseconds since the epoch, UTC.
    pub ingested_at: i64,
    /// Typed extras: (index in [`Registry::extras`], value), in that index order.
    pub extras: Extras<S>,
}

/// Typed extras of a row: (index in [`Registry::extras`], value).
pub type Extras<S = String> = Vec<(usize, ExtraValue<S>)>;

/// An accepted record: where it goes and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<S = String> {
    /// The partition (lake path) of the record.
    pub partition: Partition,
    /// The data columns.
    pub row: Row<S>,
}

/// A record whose text borrows from the raw record where it can (no escapes to undo, nothing
/// to minify): what the Firehose transform writes out without copying every string.
pub type BorrowedRecord<'a> = Record<Cow<'a, str>>;

impl BorrowedRecord<'_> {
    /// The record with its own copy of every string.
    pub fn into_owned(self) -> Record {
        Record { partition: self.partition, row: self.row.into_owned() }
    }
}

impl Row<Cow<'_, str>> {
    /// The row with its own copy of every string.
    pub fn into_owned(self) -> Row {
        self.map_text(&mut Cow::into_owned)
    }
}

impl<S> ExtraValue<S> {
    fn map_text<T>(self, f: &mut impl FnMut(S) -> T) -> ExtraValue<T> {
        match self {
            Self::String(s) => ExtraValue::String(f(s)),
            Self::Json(s) => ExtraValue::Json(f(s)),
            Self::Bigint(n) => ExtraValue::Bigint(n),
            Self::Double(n) => ExtraValue::Double(n),
            Self::Boolean(b) => ExtraValue::Boolean(b),
            Self::Timestamp(t) => ExtraValue::Timestamp(t),
        }
    }
}

impl<S> Row<S> {
    /// The same row with every string turned into another by `f`, in column order.
    pub fn map_text<T>(self, f: &mut impl FnMut(S) -> T) -> Row<T> {
        Row {
            record_id: f(self.record_id),
            time: self.time,
            transaction_id: self.transaction_id.map(&mut *f),
            server: self.server.map(&mut *f),
            action: self.action.map(&mut *f),
            r#type: self.r#type.map(&mut *f),
            description: self.description.map(&mut *f),
            caller: self.caller.map(&mut *f),
            success: self.success,
            detail: self.detail.map(&mut *f),
            events: self.events.map(|events| {
                events
                    .into_iter()
                    .map(|e| Event {
                        action: e.action.map(&mut *f),
                        description: e.description.map(&mut *f),
                        detail: e.detail.map(&mut *f),
                        caller: e.caller.map(&mut *f),
                        server: e.server.map(&mut *f),
                        success: e.success,
                        time: e.time,
                        transaction_id: e.transaction_id.map(&mut *f),
                        r#type: e.r#type.map(&mut *f),
                        attributes: e.attributes.map(&mut *f),
                    })
                    .collect()
            }),
            attributes: self.attributes.map(&mut *f),
            ingested_at: self.ingested_at,
            extras: self.extras.into_iter().map(|(i, v)| (i, v.map_text(f))).collect(),
        }
    }
}

/// Where a string of a [`PackedRow`] is in the row's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// A row whose strings are all in one buffer, as [`Span`]s of it: one allocation a row instead
/// of one a string (about 30 for a record with three events), which is what `sluice serve`
/// buffers until a file is written. A record is at most 1,000 KiB, so a `u32` reaches any byte.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedRow {
    text: String,
    row: Row<Span>,
}

impl PackedRow {
    /// Packs `row`: its strings copied, back to back, into one allocation of their exact size.
    pub fn new<S: std::ops::Deref<Target = str>>(row: Row<S>) -> Self {
        thread_local! {
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            let row = row.map_text(&mut |s: S| {
                let start = u32::try_from(scratch.len()).expect("a record is under 4 GiB");
                scratch.push_str(&s);
                Span { start, len: u32::try_from(s.len()).expect("a record is under 4 GiB") }
            });
            let text = scratch.as_str().to_owned();
            // A record of a few MiB leaves its scratch behind, not on the thread for good.
            if scratch.capacity() > 1 << 20 {
                *scratch = String::new();
            }
            Self { text, row }
        })
    }

    /// The row, its strings as spans of [`PackedRow::text`].
    pub fn row(&self) -> &Row<Span> {
        &self.row
    }

    /// The string at `span`.
    pub fn text(&self, span: Span) -> &str {
        &self.text[span.range()]
    }

    /// Sets `record_id`: in place when `id` is as long as the one it replaces (a placeholder of a
    /// record id's 32 digits, say), else by packing the row again.
    pub fn set_record_id(&mut self, id: &str) {
        let old = self.row.record_id.range();
        if old.len() == id.len() {
            self.text.replace_range(old, id);
        } else {
            let mut row = self.to_row();
            row.record_id = id.to_owned();
            *self = Self::new(row);
        }
    }

    /// The string at `span`, if any.
    pub fn opt(&self, span: Option<Span>) -> Option<&str> {
        span.map(|s| self.text(s))
    }

    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The row with its own copy of every string.
    pub fn to_row(&self) -> Row {
        self.row.clone().map_text(&mut |s| self.text(s).to_owned())
    }
}

/// The record contract: a registry of log types and the limits.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Registered log types.
    pub registry: Registry,
    /// Limits.
    pub limits: Limits,
}

impl Default for Contract {
    fn default() -> Self {
        Self { registry: Registry::builtin(), limits: Limits::default() }
    }
}

fn reject<T>(code: ReasonCode, message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(code, message))
}

fn invalid<T>(field: impl fmt::Display, expected: &str, raw: Raw<'_>) -> Result<T, Rejection> {
    reject(ReasonCode::InvalidField, format!("`{field}` must be {expected}, got {}", preview(raw.get())))
}

/// At most 80 characters of a value, for messages.
fn preview(text: &str) -> String {
    let mut s: String = text.chars().take(80).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

fn opt(v: Option<Raw<'_>>) -> Option<Raw<'_>> {
    v.filter(|r| json::kind(*r) != Kind::Null)
}

fn opt_string(field: impl fmt::Display, v: Option<Raw<'_>>) -> Result<Option<Cow<'_, str>>, Rejection> {
    match opt(v) {
        None => Ok(None),
        Some(r) => match json::string(r) {
            Some(s) => Ok(Some(s)),
            None => invalid(field, "a string", r),
        },
    }
}

fn opt_bool(field: impl fmt::Display, v: Option<Raw<'_>>) -> Result<Option<bool>, Rejection> {
    match opt(v).map(|r| (r, r.get())) {
        None => Ok(None),
        Some((_, "true")) => Ok(Some(true)),
        Some((_, "false")) => Ok(Some(false)),
        Some((r, _)) => invalid(field, "a boolean", r),
    }
}

fn json_text(v: Option<Raw<'_>>) -> Option<Cow<'_, str>> {
    opt(v).map(|r| json::minify(r.get()))
}

fn time_field(field: impl fmt::Display, r: Raw<'_>) -> Result<i64, Rejection> {
    let t = match json::kind(r) {
        Kind::String => json::string(r).and_then(|s| parse_time_str(&s)),
        Kind::Number => parse_epoch_millis(r.get()),
        _ => return invalid(field, "an RFC 3339 time string or epoch milliseconds", r),
    };
    match t {
        Some(t) => Ok(t),
        None => invalid(field, "an RFC 3339 time (2023-02-17T16:38:41.520Z) or epoch milliseconds", r),
    }
}

/// An hour part (`year`, `month`, …): a JSON integer or a string of digits.
fn hour_part(field: &str, r: Raw<'_>) -> Result<u32, Rejection> {
    let text: Cow<'_, str> = match json::kind(r) {
        Kind::Number => Cow::Borrowed(r.get()),
        Kind::String => json::string(r).unwrap_or_default(),
        _ => return invalid(field, "an integer or a string of digits", r),
    };
    if !text.is_empty()
        && text.len() <= 4
        && text.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = text.parse()
    {
        return Ok(n);
    }
    invalid(field, "an integer or a string of digits", r)
}

fn partition_value(field: &str, value: Cow<'_, str>) -> Result<PartitionValue, Rejection> {
    if let Err(e) = validate_partition_value(&value) {
        return reject(
            ReasonCode::InvalidPartitionValue,
            format!(
                "`{field}` {:?} {e}: partition values are 1-64 characters of A-Z a-z 0-9 . _ - and do not start with `.`",
                preview(&value)
            ),
        );
    }
    Ok(PartitionValue::new(value.into_owned()).expect("checked just before"))
}

fn required<'a>(field: &str, v: Option<Raw<'a>>) -> Result<Raw<'a>, Rejection> {
    opt(v).ok_or_else(|| Rejection::new(ReasonCode::MissingField, format!("`{field}` is required")))
}

impl Contract {
    /// Applies the record contract to one raw record.
    pub fn parse(&self, raw: &[u8], ctx: &Context) -> Result<Record, Rejection> {
        self.parse_borrowed(raw, ctx).map(BorrowedRecord::into_owned)
    }

    /// Applies the record contract to one raw record, borrowing the row's text from `raw` and
    /// `ctx` where it can: the same record as [`Contract::parse`] without copying its strings.
    pub fn parse_borrowed<'a>(&self, raw: &'a [u8], ctx: &'a Context) -> Result<BorrowedRecord<'a>, Rejection> {
        if raw.len() > self.limits.max_record_bytes {
            return reject(
                ReasonCode::RecordTooLarge,
                format!(
                    "record is {} bytes; the limit is {} bytes (Firehose's 1,000 KiB): split it or move bulk data out of the log",
                    raw.len(),
                    self.limits.max_record_bytes
                ),
            );
        }
        // The fast reader takes the records it is sure of; everything else, and every error, is
        // read as before: the depth, UTF-8 checked once, then `serde_json`.
        let fast = simdutf8::basic::from_utf8(raw).ok().and_then(|t| json::record_fields(t, self.limits.max_depth));
        let json::RecordFields { fields, events } = match fast {
            Some(f) => f,
            None => self.read_fields(raw)?,
        };

        let mut org = None;
        let mut env = None;
        let mut logtype = None;
        let mut time = None;
        let mut ymdh: [Option<Raw<'_>>; 4] = [None; 4];
        let mut txn = None;
        let mut server = None;
        let mut action = None;
        let mut ty = None;
        let mut description = None;
        let mut caller = None;
        let mut success = None;
        let mut detail = None;
        let mut rest: Vec<(Cow<'_, str>, Raw<'_>)> = Vec::with_capacity(fields.len());
        for (k, v) in fields {
            let slot = match k.as_ref() {
                "organizationID" => &mut org,
                "environment" => &mut env,
                "logType" => &mut logtype,
                "time" => &mut time,
                "year" => &mut ymdh[0],
                "month" => &mut ymdh[1],
                "day" => &mut ymdh[2],
                "hour" => &mut ymdh[3],
                "transactionId" => &mut txn,
                "server" => &mut server,
                "action" => &mut action,
                "type" => &mut ty,
                "description" => &mut description,
                "caller" => &mut caller,
                "success" => &mut success,
                "detail" => &mut detail,
                _ => {
                    rest.push((k, v));
                    continue;
                }
            };
            *slot = Some(v);
        }
        last_of_each(&mut rest);

        // Partition values.
        let org_raw = required("organizationID", org)?;
        let organization: Cow<'_, str> = match json::kind(org_raw) {
            Kind::String => json::string(org_raw).unwrap_or_default(),
            Kind::Number if org_raw.get().bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                Cow::Borrowed(org_raw.get())
            }
            _ => return invalid("organizationID", "a string or an integer", org_raw),
        };
        let env_raw = required("environment", env)?;
        let Some(environment) = json::string(env_raw) else {
            return invalid("environment", "a string", env_raw);
        };
        let lt_raw = required("logType", logtype)?;
        let Some(lt_name) = json::string(lt_raw) else {
            return invalid("logType", "a string", lt_raw);
        };
        let organization = partition_value("organizationID", organization)?;
        let environment = partition_value("environment", environment)?;
        let lt_name = partition_value("logType", lt_name)?;
        let Some(lt) = self.registry.get(&lt_name) else {
            return reject(
                ReasonCode::UnknownLogType,
                format!(
                    "logType {:?} is not registered; valid values are {}; add schemas/logtypes/{lt_name}.toml to register it",
                    lt_name.as_str(),
                    self.registry.names().join(", ")
                ),
            );
        };

        // The hour: from year/month/day/hour when all four are present, else from `time`.
        let all_parts = ymdh.iter().all(|p| opt(*p).is_some());
        let part_hour = if all_parts {
            let mut n = [0u32; 4];
            for (i, (name, p)) in ["year", "month", "day", "hour"].iter().zip(ymdh).enumerate() {
                n[i] = hour_part(name, p.expect("checked present"))?;
            }
            let date = NaiveDate::from_ymd_opt(n[0] as i32, n[1], n[2]).filter(|_| n[3] < 24);
            let Some(start) = date.and_then(|d| d.and_hms_opt(n[3], 0, 0)) else {
                return reject(
                    ReasonCode::InvalidField,
                    format!("year/month/day/hour {}-{}-{} {}h is not a valid UTC hour", n[0], n[1], n[2], n[3]),
                );
            };
            Some(start.and_utc().timestamp_micros())
        } else {
            for (name, p) in ["year", "month", "day", "hour"].iter().zip(ymdh) {
                if let Some(p) = opt(p) {
                    rest.push((Cow::Borrowed(name), p));
                }
            }
            None
        };
        let time = match (opt(time), part_hour) {
            (Some(r), _) => time_field("time", r)?,
            (None, Some(start)) => start,
            (None, None) => {
                return reject(
                    ReasonCode::MissingField,
                    "`time` is required (RFC 3339 or epoch milliseconds) unless all of year, month, day and hour are given",
                );
            }
        };
        let hour_start = part_hour.unwrap_or(time.div_euclid(3_600_000_000) * 3_600_000_000);
        let min = self.limits.min_time.timestamp_micros();
        let max = ctx.arrival_micros.saturating_add(self.limits.max_future.num_microseconds().unwrap_or(i64::MAX));
        for t in [time, hour_start] {
            if t < min || t > max {
                return reject(
                    ReasonCode::TimeOutOfRange,
                    format!(
                        "time {} is outside the accepted range {} to {} (arrival + {} h); check the producer's clock and time zone",
                        format_time(t),
                        format_time(min),
                        format_time(max),
                        self.limits.max_future.num_hours()
                    ),
                );
            }
        }
        let hour = DateTime::<Utc>::from_timestamp_micros(hour_start).expect("checked range");
        let partition = Partition {
            environment,
            organization,
            logtype: lt_name,
            year: u16::try_from(chrono::Datelike::year(&hour)).expect("checked range"),
            month: chrono::Datelike::month(&hour) as u8,
            day: chrono::Datelike::day(&hour) as u8,
            hour: chrono::Timelike::hour(&hour) as u8,
        };

        let events = match events {
            None | Some(json::Shape::Null) => None,
            Some(json::Shape::Array(items)) => Some(parse_events(items, raw)?),
            Some(_) => return invalid("events", "an array of event objects", raw_events(raw)),
        };
        let (extras, attributes) = self.extras_and_attributes(lt, rest)?;
        let row = Row {
            record_id: Cow::Borrowed(ctx.record_id.as_str()),
            time,
            transaction_id: opt_string("transactionId", txn)?,
            server: opt_string("server", server)?,
            action: opt_string("action", action)?,
            r#type: opt_string("type", ty)?,
            description: opt_string("description", description)?,
            caller: opt_string("caller", caller)?,
            success: opt_bool("success", success)?,
            detail: json_text(detail),
            events,
            attributes,
            ingested_at: ctx.arrival_micros,
            extras,
        };
        Ok(Record { partition, row })
    }

    /// A record's fields read by `serde_json`, or why they cannot be.
    fn read_fields<'a>(&self, raw: &'a [u8]) -> Result<json::RecordFields<'a>, Rejection> {
        if json::deeper_than(raw, self.limits.max_depth) {
            return reject(
                ReasonCode::InvalidJson,
                format!("JSON nests deeper than {} levels; flatten it", self.limits.max_depth),
            );
        }
        // Checked as UTF-8 in one pass (again, for a record the fast reader did not take): parsed
        // as text, the JSON parser does not check every string and raw value again.
        let Ok(text) = simdutf8::basic::from_utf8(raw) else {
            let e = std::str::from_utf8(raw).err().map(|e| e.to_string()).unwrap_or_default();
            return reject(ReasonCode::InvalidJson, format!("not valid JSON: the record is not UTF-8 ({e})"));
        };
        match serde_json::from_str::<json::RecordFields<'_>>(text) {
            Ok(f) => Ok(f),
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                reject(ReasonCode::NotAnObject, "a record must be a JSON object ({…})")
            }
            Err(e) => reject(ReasonCode::InvalidJson, format!("not valid JSON: {e}")),
        }
    }

    fn extras_and_attributes<'a>(
        &self,
        lt: &LogType,
        rest: Vec<(Cow<'a, str>, Raw<'a>)>,
    ) -> Result<ExtrasAndAttributes<'a>, Rejection> {
        let mut extras = Vec::with_capacity(rest.len());
        let mut attrs: Vec<(Cow<'_, str>, Raw<'_>)> = Vec::with_capacity(rest.len());
        let slots = self.registry.extra_slots(&lt.name);
        for (k, v) in rest {
            match lt.columns.iter().position(|c| c.field == k) {
                Some(j) => {
                    let col = &lt.columns[j];
                    if let Some(value) = extra_value(&col.field, col.ty, v)? {
                        extras.push((slots[j], value));
                    }
                }
                None => attrs.push((k, v)),
            }
        }
        extras.sort_by_key(|(i, _)| *i);
        Ok((extras, object_text(&attrs).map(Cow::Owned)))
    }
}

/// Keeps the last of the fields of each name, where it stands (a JSON object's duplicate key
/// means its last value, as serde_json reads it), in one pass: a record of 100,000 unknown
/// fields once took 9.6 s when each field searched the ones before it.
fn last_of_each(fields: &mut Vec<(Cow<'_, str>, Raw<'_>)>) {
    if fields.len() < 2 {
        return;
    }
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(fields.len());
    // Walking back, the first of a name is its last: keep those.
    let keep: Vec<bool> = fields.iter().rev().map(|(k, _)| seen.insert(k.as_ref())).collect();
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut keep = keep.into_iter().rev();
    fields.retain(|_| keep.next().unwrap_or(true));
}

/// A row's typed extras and its `attributes` text.
type ExtrasAndAttributes<'a> = (Extras<Cow<'a, str>>, Option<Cow<'a, str>>);

/// A JSON object as text from (key, raw value) pairs; `None` when there are none.
fn object_text(pairs: &[(Cow<'_, str>, Raw<'_>)]) -> Option<String> {
    if pairs.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, k);
        out.push(b':');
        out.extend_from_slice(json::minify(v.get()).as_bytes());
    }
    out.push(b'}');
    Some(String::from_utf8(out).expect("built from valid UTF-8"))
}

fn extra_value<'a>(field: &str, ty: ExtraType, r: Raw<'a>) -> Result<Option<ExtraValue<Cow<'a, str>>>, Rejection> {
    let kind = json::kind(r);
    if kind == Kind::Null {
        return Ok(None);
    }
    let text = r.get();
    let s = if kind == Kind::String { json::string(r) } else { None };
    let value = match ty {
        ExtraType::String => match (kind, s) {
            (Kind::String, Some(s)) => ExtraValue::String(s),
            (Kind::Number, _) => ExtraValue::String(Cow::Borrowed(text)),
            _ => return invalid(field, "a string", r),
        },
        ExtraType::Bigint => {
            let n = match (kind, s) {
                (Kind::Number, _) => text.parse::<i64>().ok(),
                (Kind::String, Some(s)) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) => ExtraValue::Bigint(n),
                None => return invalid(field, "an integer", r),
            }
        }
        ExtraType::Double => {
            let n = match (kind, s) {
                (Kind::Number, _) => text.parse::<f64>().ok(),
                (Kind::String, Some(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n.filter(|n| n.is_finite()) {
                Some(n) => ExtraValue::Double(n),
                None => return invalid(field, "a number", r),
            }
        }
        ExtraType::Boolean => match (text, s.as_deref()) {
            ("true", _) | (_, Some("true")) => ExtraValue::Boolean(true),
            ("false", _) | (_, Some("false")) => ExtraValue::Boolean(false),
            _ => return invalid(field, "a boolean", r),
        },
        ExtraType::Timestamp => ExtraValue::Timestamp(time_field(field, r)?),
        ExtraType::Json => ExtraValue::Json(json::minify(text)),
    };
    Ok(Some(value))
}

/// The name of a field of an event in messages (`events[2].time`), formatted only when used.
#[derive(Clone, Copy)]
struct EventField {
    index: usize,
    field: &'static str,
}

impl fmt::Display for EventField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "events[{}].{}", self.index, self.field)
    }
}

/// The raw text of the (last) `events` field of a record that parsed, for messages.
fn raw_events(record: &[u8]) -> Raw<'_> {
    let Fields(fields) = serde_json::from_slice(record).expect("the record parsed as an object before");
    fields.into_iter().rev().find(|(k, _)| k == "events").map(|(_, v)| v).expect("the record has events")
}

fn parse_events<'a>(items: Vec<json::Shape<'a>>, record: &[u8]) -> Result<Vec<Event<Cow<'a, str>>>, Rejection> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let name = |field| EventField { index: i, field };
        let json::Shape::Object(fields) = item else {
            // Read the array again for the element's text, for the message.
            let raw: Vec<Raw<'_>> = serde_json::from_str(raw_events(record).get()).expect("the array parsed before");
            return invalid(format!("events[{i}]"), "an object", raw[i]);
        };
        let mut e = Event::default();
        let mut rest: Vec<(Cow<'_, str>, Raw<'_>)> = Vec::with_capacity(fields.len());
        for (k, v) in fields {
            match k.as_ref() {
                "action" => e.action = opt_string(name("action"), Some(v))?,
                "description" => e.description = opt_string(name("description"), Some(v))?,
                "detail" => e.detail = json_text(Some(v)),
                "caller" => e.caller = opt_string(name("caller"), Some(v))?,
                "server" => e.server = opt_string(name("server"), Some(v))?,
                "success" => e.success = opt_bool(name("success"), Some(v))?,
                "time" => e.time = opt(Some(v)).map(|t| time_field(name("time"), t)).transpose()?,
                "transactionId" => e.transaction_id = opt_string(name("transactionId"), Some(v))?,
                "type" => e.r#type = opt_string(name("type"), Some(v))?,
                _ => rest.push((k, v)),
            }
        }
        last_of_each(&mut rest);
        e.attributes = object_text(&rest).map(Cow::Owned);
        out.push(e);
    }
    Ok(out)
}

impl<S: std::ops::Deref<Target = str>> Row<S> {
    /// The normalized JSON line of this row: data columns with lake names, nulls left out,
    /// timestamps as RFC 3339 UTC, newline-terminated. This is what the Firehose Lambda returns.
    pub fn to_json_line(&self, registry: &Registry) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_json_line(registry, &mut out);
        out
    }

    /// Appends the normalized JSON line of this row to `out`.
    pub fn write_json_line(&self, registry: &Registry, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut w = ObjectWriter { out, first: true };
        w.str("record_id", Some(&self.record_id));
        w.time("time", Some(self.time));
        w.str("transaction_id", self.transaction_id.as_deref());
        w.str("server", self.server.as_deref());
        w.str("action", self.action.as_deref());
        w.str("type", self.r#type.as_deref());
        w.str("description", self.description.as_deref());
        w.str("caller", self.caller.as_deref());
        w.bool("success", self.success);
        w.str("detail", self.detail.as_deref());
        if let Some(events) = &self.events {
            w.key("events");
            w.out.push(b'[');
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    w.out.push(b',');
                }
                w.out.push(b'{');
                let mut ew = ObjectWriter { out: w.out, first: true };
                ew.str("action", e.action.as_deref());
                ew.str("description", e.description.as_deref());
                ew.str("detail", e.detail.as_deref());
                ew.str("caller", e.caller.as_deref());
                ew.str("server", e.server.as_deref());
                ew.bool("success", e.success);
                ew.time("time", e.time);
                ew.str("transaction_id", e.transaction_id.as_deref());
                ew.str("type", e.r#type.as_deref());
                ew.str("attributes", e.attributes.as_deref());
                w.out.push(b'}');
            }
            w.out.push(b']');
        }
        w.str("attributes", self.attributes.as_deref());
        w.time("ingested_at", Some(self.ingested_at));
        let extras = registry.extras();
        for (i, v) in &self.extras {
            let name = &extras[*i].name;
            match v {
                ExtraValue::String(s) | ExtraValue::Json(s) => w.str(name, Some(s)),
                ExtraValue::Bigint(n) => w.raw(name, &n.to_string()),
                ExtraValue::Double(n) => w.raw(name, &serde_json::to_string(n).unwrap_or_else(|_| "null".into())),
                ExtraValue::Boolean(b) => w.bool(name, Some(*b)),
                ExtraValue::Timestamp(t) => w.time(name, Some(*t)),
            }
        }
        out.push(b'}');
        out.push(b'\n');
    }
}

struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

// Inlined, so that each key's length is a constant and its copy a few moves, not a call.
impl ObjectWriter<'_> {
    #[inline(always)]
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
    #[inline(always)]
    fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.extend_from_slice(v.as_bytes());
    }
    #[inline(always)]
    fn str(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.key(k);
            json::write_str(self.out, v);
        }
    }
    #[inline(always)]
    fn bool(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.raw(k, if v { "true" } else { "false" });
        }
    }
    #[inline(always)]
    fn time(&mut self, k: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.key(k);
            self.out.push(b'"');
            write_time(self.out, v);
            self.out.push(b'"');
        }
    }
}
