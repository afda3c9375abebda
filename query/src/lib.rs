//! The query side of sluice: the lake as SQL tables, an engine safe for SQL from strangers, and
//! result rendering.
//!
//! ```text
//! {lake}/logs/environment=…/…/hour=…/*.parquet ──► LakeTable (`logs`, Hive partitions, time → hour pruning)
//!                                                      ├─► views logs_<type>, events
//!                                                      └─► Engine::execute (guards, memory limit, timeout)
//!                                                             └─► CSV / TSV / JSON / NDJSON / table
//! ```
//!
//! In AWS mode the same SQL runs on Athena ([`athena::Athena`]) over the Glue table.

pub mod api;
pub mod athena;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod exec;
pub mod format;
pub mod guard;
pub mod limits;

pub use engine::{Engine, EngineConfig};
pub use error::{DiskScope, Error, Forbidden, Limit, Rejection, Result};
