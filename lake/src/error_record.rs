//! The error output: rejected records in Firehose's error record format, so that `sluice replay`
//! reads the error output of either mode.

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde::{Deserialize, Serialize};
use sluice_schemas::Rejection;

/// Firehose's `processing-failed` output type (the folder under `errors/`).
pub const PROCESSING_FAILED: &str = "processing-failed";

/// One line of an error file, as Firehose writes it for records its transform failed; `errorCode`
/// holds sluice's reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    /// How many times delivery was tried.
    pub attempts_made: u32,
    /// When the record arrived, epoch milliseconds.
    pub arrival_timestamp: i64,
    /// The reason code (`invalid_json`, …).
    pub error_code: String,
    /// What is wrong and how to fix it.
    pub error_message: String,
    /// When the last attempt ended, epoch milliseconds.
    pub attempt_ending_timestamp: i64,
    /// The record's original bytes, base64.
    pub raw_data: String,
    /// The Lambda that failed it (Firehose only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_arn: Option<String>,
}

impl ErrorRecord {
    /// The error record of a rejected record.
    pub fn new(raw: &[u8], arrival_micros: i64, code: &str, message: &str) -> Self {
        let ms = arrival_micros.div_euclid(1000);
        Self {
            attempts_made: 1,
            arrival_timestamp: ms,
            error_code: code.to_owned(),
            error_message: message.to_owned(),
            attempt_ending_timestamp: ms,
            raw_data: BASE64.encode(raw),
            lambda_arn: None,
        }
    }

    /// The error record of a rejection.
    pub fn from_rejection(raw: &[u8], arrival_micros: i64, r: &Rejection) -> Self {
        Self::new(raw, arrival_micros, r.code.as_str(), &r.message)
    }

    /// The original bytes.
    pub fn raw(&self) -> Option<Vec<u8>> {
        BASE64.decode(&self.raw_data).ok()
    }

    /// The JSON line of this record (newline-terminated).
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("serializable");
        v.push(b'\n');
        v
    }
}
