//! The embedded delivery stream of sluice (DESIGN.md §5): what SNS, Firehose and the Lambda do,
//! in one process.
//!
//! ```text
//! POST /v1/logs ─► server ─► body (NDJSON, array, gzip) ─► stream::Pipeline::ingest
//!                                 transform (sluice-partitioner) ─► wal (group commit, fsync) ─► 200
//!                                 stream: batch buffers per partition ─► Parquet in the lake (sluice-lake)
//! sluice import ─► import ─┘      sluice replay ─► replay (error output back through the transform)
//! ```

mod accept;
pub mod answered;
pub mod batch;
pub mod body;
pub mod import;
pub mod metrics;
pub mod protocols;
pub mod replay;
pub mod server;
pub mod stream;
pub mod uploads;
pub mod wal;

mod error;

pub use error::{Error, Result};
