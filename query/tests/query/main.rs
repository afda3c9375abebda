//! Integration tests of the query engine over a lake made from the committed sample data.

mod golden;
mod guards;
mod pruning;

use std::{path::PathBuf, sync::OnceLock};

use sluice_ingest::lake::Lake;
use sluice_partitioner::Partitioner;

/// `sample-data/` of the workspace.
pub fn sample_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-data")
}

/// A lake with the 3,000 committed sample records, imported once per test run.
pub fn sample_lake() -> PathBuf {
    static LAKE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    LAKE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("lake");
        // Tests are async: build the lake on a thread of its own, with its own runtime.
        let target = path.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let lake = Lake::open(target.to_str().expect("utf8")).await.expect("lake");
                let records = sample_data().join("records.ndjson");
                sluice_ingest::import::import_file(&lake, &Partitioner::default(), &records, 64 << 20, |_| {})
                    .await
                    .expect("import");
            });
        })
        .join()
        .expect("import thread");
        (dir, path)
    })
    .1
    .clone()
}
