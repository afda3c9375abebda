//! Integration tests of the Firehose transform: golden fixtures, reason codes, properties, and the
//! real `sluice-partitioner` binary against a Lambda Runtime API server.

mod golden;
mod properties;
mod runtime_api;

use std::path::PathBuf;

/// `sample-data/` of the workspace.
pub fn sample_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-data")
}
