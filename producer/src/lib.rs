//! What a service links to send records to sluice (DESIGN.md §7): no Parquet writer, no
//! write-ahead log, no query engine (`./scripts/test.sh` checks with `cargo tree`).
//!
//! * [`http::Publisher`] streams NDJSON to a `sluice serve` (`POST /v1/logs`), in batches, with
//!   retries of 429/503 and a summary of rejections by reason code (`sluice publish`).
//! * [`sns::SnsPublisher`] publishes to the SNS topic of an AWS deployment, checking records
//!   against the record contract first (`sluice publish --to sns://ARN`).
//! * [`sns::SnsLayer`] is a `tracing` layer that ships a service's own logs as records.

mod error;

pub mod http;
pub mod sns;

pub use error::{Error, Result};
