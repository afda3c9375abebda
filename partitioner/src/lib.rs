//! The Firehose transform of sluice (DESIGN.md §4).
//!
//! ```text
//! Firehose event ──► for each record: base64 decode ──► unwrap SNS envelope ──► Contract::parse
//!                                                                                 │
//!      { recordId, result: "Ok", data: JSON line, metadata.partitionKeys } ◄──────┤
//!      { recordId, result: "ProcessingFailed", data: original bytes }      ◄──────┘ (reason logged)
//! ```
//!
//! [`Partitioner::transform`] is the pure per-record function; the embedded delivery stream calls
//! it too, so both modes write identical rows. [`Partitioner::handle`] maps a whole Firehose event:
//! every `recordId` comes back exactly once, in order, and one bad record never fails the batch.
//!
//! The transform takes a [`Context`] besides the bytes: the record's id (from the Firehose
//! `recordId`, so a retried invocation yields the same `record_id`) and its arrival time (Firehose's
//! `approximateArrivalTimestamp`, which becomes `ingested_at` and bounds "too far in the future").
//! That keeps it a pure function: the same event always gives the same response.

use std::{env, fmt, path::Path, sync::LazyLock};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, Visitor},
};
use serde_json::value::RawValue;
use sluice_schemas::{
    BorrowedRecord, Context, Contract, Limits, PackedRow, Partition, PartitionKeys, Registry, Rejection, record_id,
};

/// The result of transforming one record.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned by value and taken apart at once; a box would be one more allocation a record"
)]
pub enum Outcome {
    /// Accepted: the normalized record and its partition.
    Ok {
        /// Where it goes.
        partition: Partition,
        /// What it holds, its strings in one buffer.
        row: PackedRow,
    },
    /// Nothing to deliver (the record holds only whitespace).
    Dropped,
    /// Rejected by the record contract.
    ProcessingFailed(Rejection),
}

/// A Firehose data-transformation event: the records of one invocation. Other fields of the
/// event (`invocationId`, `deliveryStreamArn`, `region`, …) are not needed and not read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FirehoseEvent {
    /// The records to transform.
    pub records: Vec<FirehoseRecord>,
}

/// One record of a [`FirehoseEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseRecord {
    /// `recordId`: returned as is, and hashed into the row's `record_id`.
    #[serde(default, deserialize_with = "nullable_string")]
    pub record_id: String,
    /// `approximateArrivalTimestamp`, milliseconds since the epoch (a JSON number or a string of
    /// one; a fraction is rounded to the millisecond).
    #[serde(deserialize_with = "epoch_millis")]
    pub approximate_arrival_timestamp: i64,
    /// `data`, decoded from base64 (decoded straight from the event's bytes, no string copy).
    #[serde(deserialize_with = "base64_data")]
    pub data: Vec<u8>,
}

fn nullable_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn epoch_millis<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("milliseconds since the epoch")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("approximateArrivalTimestamp is out of range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            let ms = v.round();
            if ms.is_finite() && ms.abs() < 9.0e15 {
                Ok(ms as i64)
            } else {
                Err(E::custom("approximateArrivalTimestamp is out of range"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            match v.trim().parse::<i64>() {
                Ok(n) => Ok(n),
                Err(_) => self.visit_f64(v.trim().parse::<f64>().map_err(E::custom)?),
            }
        }
    }
    d.deserialize_any(V)
}

fn base64_data<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a base64 string")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            base64_simd::STANDARD.decode_to_vec(v).map_err(|e| E::custom(format!("data is not base64: {e}")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            self.visit_bytes(v.as_bytes())
        }
    }
    // JSON gives the string's bytes without checking them as UTF-8: base64 checks them itself.
    d.deserialize_bytes(V)
}

/// Firehose's transformation result. Serialized exactly as Firehose expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransformResult {
    /// `Ok`.
    Ok,
    /// `Dropped`.
    Dropped,
    /// `ProcessingFailed`.
    ProcessingFailed,
}

/// The Lambda's response to Firehose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirehoseResponse {
    /// One entry per input record, in input order.
    pub records: Vec<ResponseRecord>,
}

/// One record of the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseRecord {
    /// The input record's `recordId`.
    pub record_id: String,
    /// What happened to it.
    pub result: TransformResult,
    /// Base64 of the normalized JSON line (`Ok`) or of the original bytes (otherwise).
    pub data: String,
    /// The partition keys for dynamic partitioning (`Ok` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<ResponseMetadata>,
}

/// `metadata` of a response record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseMetadata {
    /// `partitionKeys`, used by the delivery stream's `!{partitionKeyFromLambda:…}` prefix.
    pub partition_keys: PartitionKeys,
}

/// The transform: the record contract plus the Firehose and SNS framing around it.
#[derive(Debug, Clone, Default)]
pub struct Partitioner {
    contract: Contract,
}

/// A configuration error of the Lambda (reported as an init error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `SLUICE_SCHEMAS_DIR` holds a definition that cannot be loaded.
    #[error("SLUICE_SCHEMAS_DIR: {0}")]
    Schemas(sluice_schemas::Error),
    /// `SLUICE_MAX_FUTURE_HOURS` is not a number of hours from 0 to 8784.
    #[error("SLUICE_MAX_FUTURE_HOURS={value:?} must be a whole number of hours, 0 to 8784")]
    MaxFutureHours {
        /// The value as set.
        value: String,
    },
}

impl Partitioner {
    /// A partitioner for `contract`.
    pub fn new(contract: Contract) -> Self {
        Self { contract }
    }

    /// The contract in use.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// A partitioner configured from the environment: `SLUICE_SCHEMAS_DIR` (extra log-type
    /// definitions besides the built-in ones) and `SLUICE_MAX_FUTURE_HOURS` (default 24).
    pub fn from_env() -> Result<Self, ConfigError> {
        let registry = match env::var_os("SLUICE_SCHEMAS_DIR") {
            Some(dir) => Registry::with_dir(Path::new(&dir)).map_err(ConfigError::Schemas)?,
            None => Registry::builtin(),
        };
        let mut limits = Limits::default();
        if let Ok(h) = env::var("SLUICE_MAX_FUTURE_HOURS") {
            let hours: i64 = h
                .parse()
                .ok()
                .filter(|h| (0..=24 * 366).contains(h))
                .ok_or_else(|| ConfigError::MaxFutureHours { value: h.clone() })?;
            limits.max_future = chrono::Duration::hours(hours);
        }
        Ok(Self::new(Contract { registry, limits }))
    }

    /// Transforms one record: unwraps an SNS notification envelope, then applies the contract.
    pub fn transform(&self, raw: &[u8], ctx: &Context) -> Outcome {
        let unwrapped = unwrap_sns(raw);
        match self.apply(unwrapped.as_deref().unwrap_or(raw), ctx) {
            Ok(Some(r)) => Outcome::Ok { partition: r.partition, row: PackedRow::new(r.row) },
            Ok(None) => Outcome::Dropped,
            Err(e) => Outcome::ProcessingFailed(e),
        }
    }

    /// The contract applied to an unwrapped body: `None` for a body of only whitespace.
    fn apply<'a>(&self, body: &'a [u8], ctx: &'a Context) -> Result<Option<BorrowedRecord<'a>>, Rejection> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.contract.parse_borrowed(body, ctx).map(Some)
    }

    /// Handles one Firehose data-transformation event: the [`FirehoseResponse`] as compact JSON,
    /// written directly (base64 straight into the text, no string escaping pass), which is what
    /// the Lambda returns.
    pub fn respond(&self, event: &FirehoseEvent) -> Box<RawValue> {
        // The normalized line adds `record_id` and `ingested_at` and escapes nested JSON; its
        // base64 is 4/3 of that. Reserving enough up front saves copying megabytes on growth.
        let size: usize = event.records.iter().map(|r| r.data.len() * 2 + r.record_id.len() + 512).sum();
        // Text from the start (base64 and small checked pieces), so the megabytes are not
        // checked as UTF-8 again at the end.
        let mut out = String::with_capacity(size + 16);
        let mut line = Vec::with_capacity(4096);
        let mut small = Vec::with_capacity(256);
        out.push_str("{\"records\":[");
        for (i, r) in event.records.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            small.clear();
            small.extend_from_slice(b"{\"recordId\":");
            serde_json::to_writer(&mut small, &r.record_id).expect("writing to a Vec cannot fail");
            let id_end = small.len();
            let ctx = Context {
                record_id: record_id(&r.record_id),
                arrival_micros: r.approximate_arrival_timestamp.saturating_mul(1000),
            };
            // The rows are written out at once, so their text is borrowed, not copied.
            let unwrapped = unwrap_sns(&r.data);
            let (result, data) = match self.apply(unwrapped.as_deref().unwrap_or(&r.data), &ctx) {
                Ok(Some(rec)) => {
                    line.clear();
                    rec.row.write_json_line(&self.contract.registry, &mut line);
                    small.extend_from_slice(b",\"metadata\":{\"partitionKeys\":");
                    rec.partition.write_keys_json(&mut small);
                    small.push(b'}');
                    ("Ok", line.as_slice())
                }
                Ok(None) => ("Dropped", r.data.as_slice()),
                Err(e) => {
                    tracing::warn!(
                        record_id = %r.record_id,
                        reason = e.code.as_str(),
                        message = %e.message,
                        "record rejected"
                    );
                    ("ProcessingFailed", r.data.as_slice())
                }
            };
            // `small` holds `{"recordId":…` then, for `Ok`, `,"metadata":{…}`; the result and
            // the data go between them.
            let text = std::str::from_utf8(&small).expect("JSON written from UTF-8 strings");
            out.push_str(&text[..id_end]);
            out.push_str(",\"result\":\"");
            out.push_str(result);
            out.push_str("\",\"data\":\"");
            base64_simd::STANDARD.encode_append(data, &mut out);
            out.push('"');
            out.push_str(&text[id_end..]);
            out.push('}');
        }
        out.push_str("]}");
        // Checking the text would parse every byte of the response again (8% of the handler's
        // time on a 6 MB event) to confirm what the code above guarantees: every piece is
        // serde_json's output, base64, fixed text, or partition keys written by `write_keys_json`.
        // Debug builds (every test) still check it: `from_string_unchecked` re-parses there.
        // SAFETY: `out` is one JSON object, without leading or trailing whitespace.
        #[allow(unsafe_code)]
        unsafe {
            RawValue::from_string_unchecked(out)
        }
    }

    /// Handles one Firehose data-transformation event: the response as a value.
    pub fn handle(&self, event: &FirehoseEvent) -> FirehoseResponse {
        serde_json::from_str(self.respond(event).get()).expect("the response is a FirehoseResponse by construction")
    }

    /// Handles a Firehose event given as JSON text and returns the response as JSON text
    /// (what `sluice firehose-invoke` prints).
    pub fn handle_json(&self, event: &[u8]) -> Result<String, serde_json::Error> {
        let event: FirehoseEvent = serde_json::from_slice(event)?;
        serde_json::to_string_pretty(&self.handle(&event))
    }
}

#[derive(Deserialize)]
struct SnsNotification {
    #[serde(rename = "Type")]
    ty: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "TopicArn")]
    topic_arn: String,
}

/// The message inside an SNS notification envelope (what SNS delivers to a Firehose subscription
/// when raw message delivery is off), or `None` when `raw` is not one.
pub fn unwrap_sns(raw: &[u8]) -> Option<Vec<u8>> {
    // SNS writes `Type`, `MessageId`, then `TopicArn`: the key is within the first few hundred
    // bytes of an envelope.
    let head = &raw[..raw.len().min(512)];
    let first = raw.iter().find(|b| !b.is_ascii_whitespace())?;
    static TOPIC_ARN: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"TopicArn\""));
    if *first != b'{' || TOPIC_ARN.find(head).is_none() {
        return None;
    }
    let n: SnsNotification = serde_json::from_slice(raw).ok()?;
    (n.ty == "Notification" && n.topic_arn.starts_with("arn:")).then(|| n.message.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_strings_are_exact() {
        let s =
            serde_json::to_string(&[TransformResult::Ok, TransformResult::Dropped, TransformResult::ProcessingFailed])
                .expect("serialize");
        assert_eq!(s, r#"["Ok","Dropped","ProcessingFailed"]"#);
    }

    #[test]
    fn sns_envelopes_are_unwrapped_and_others_are_not() {
        let env = r#"{"Type" : "Notification", "MessageId" : "m", "TopicArn" : "arn:aws:sns:us-east-1:123456789012:logs", "Message" : "{\"a\":1}", "Timestamp" : "2023-02-17T16:38:41.520Z"}"#;
        assert_eq!(unwrap_sns(env.as_bytes()).as_deref(), Some(br#"{"a":1}"#.as_slice()));
        assert_eq!(unwrap_sns(br#"{"Type":"Other","TopicArn":"arn:x","Message":"m"}"#), None);
        assert_eq!(unwrap_sns(br#"{"TopicArn":"arn:x"}"#), None);
        assert_eq!(unwrap_sns(b"[1]"), None);
    }
}
