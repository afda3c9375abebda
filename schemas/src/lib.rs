//! The leaf crate of sluice: the record contract, the log-type registry and the lake schema.
//!
//! ```text
//! producer JSON ──► Contract::parse ──► Record { partition, row } ──► JSON line (Firehose Lambda)
//!                      │                                         └──► Arrow / Parquet (embedded)
//!                      └─► Rejection { code, message }  ──► errors/ (never lost)
//!
//! schemas/logtypes/*.toml ──► Registry ──► lake columns ──► Arrow schema, Glue columns, JSON Schema
//! ```
//!
//! Log types are data: every `*.toml` in `schemas/logtypes/` is compiled in, and
//! [`Registry::with_dir`] adds more at run time.
//!
//! ```
//! use sluice_schemas::{Context, Contract, ReasonCode};
//!
//! let contract = Contract::default();
//! let ctx = Context { record_id: sluice_schemas::record_id("example-1"), arrival_micros: 1_676_652_000_000_000 };
//! let rec = contract
//!     .parse(br#"{"organizationID": 42, "environment": "dev", "logType": "web",
//!                 "time": "2023-02-17T16:38:41.520Z", "extra": [1, 2]}"#, &ctx)
//!     .unwrap();
//! assert_eq!(rec.partition.path(), "environment=dev/organization=42/logtype=web/year=2023/month=02/day=17/hour=16");
//! assert_eq!(rec.row.attributes.as_deref(), Some(r#"{"extra":[1,2]}"#));
//!
//! let bad = contract.parse(br#"{"organizationID": "../etc", "environment": "dev", "logType": "web", "time": 0}"#, &ctx);
//! assert_eq!(bad.unwrap_err().code, ReasonCode::InvalidPartitionValue);
//! ```

mod columns;
mod error;
pub mod fuzz;
mod json;
mod jsonschema;
mod partition;
mod record;
mod registry;
mod scope;
mod time;

pub use columns::{
    Column, ColumnType, GlueColumn, UTC, arrow_fields, arrow_schema, common_columns, event_columns, glue_columns,
    partition_columns,
};
pub use error::{Error, Result};
pub use jsonschema::json_schema;
pub use partition::{
    FAR_TIME_MARK, HOUR_SLACK_HOURS, MAX_PARTITION_VALUE_LEN, PARTITION_COLUMNS, PARTITION_INDEX,
    PARTITION_INDEX_COMPLETE, Partition, PartitionKeys, PartitionValue, PartitionValueError, is_far_time_file,
    validate_partition_value,
};
pub use record::{
    BorrowedRecord, Context, Contract, Event, ExtraValue, Extras, Limits, MAX_DEPTH, MAX_RECORD_BYTES, PackedRow,
    RECORD_ID_LEN, ReasonCode, Record, Rejection, Row, Span, record_id, record_id_at,
};
pub use registry::{CONTRACT_FIELDS, ExtraColumn, ExtraType, LogType, Registry, snake_case};
pub use scope::{Caller, Orgs};
pub use time::{format_time, parse_epoch_millis, parse_time_str};

#[cfg(test)]
mod tests;
