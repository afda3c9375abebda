//! The lake of sluice on object storage (DESIGN.md §2 and §7): what every writer and reader of
//! a lake stands on.
//!
//! ```text
//! Lake::open(url) ──► one object store, chosen by URL (path, file://, s3://bucket/prefix)
//!   ├─ layout      keys of data files, error files, the partition index (`lake`)
//!   ├─ writes      durable: staged, synced, renamed; in groups with syncfs (`write`)
//!   ├─ encode      rows → zstd Parquet (`encode`); error records (`error_record`)
//!   ├─ live view   which files are part of the lake (`live`), read by every sluice reader
//!   ├─ local reads small reads of a local lake's files in place, not on the blocking pool
//!   ├─ files       the listing and a summary a file kept between queries (`files`)
//!   ├─ compact     merging small files, swapped atomically through the live view
//!   └─ lock        one writer of a kind a lake (flock, or a lease on S3)
//! ```

mod error;
mod footer;
mod lake;
mod stats;

pub mod compact;
pub mod encode;
pub mod error_record;
pub mod files;
pub mod live;
#[cfg(unix)]
pub mod local_reads;
pub mod lock;
pub mod write;

pub use error::{Error, Result};
pub use footer::{LakeFile, read_footer};
pub use lake::Lake;
pub use stats::LakeStats;
