//! Integration tests of the query engine over a lake made from the committed sample data.

mod golden;
mod guards;
mod pruning;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, sync::OnceLock};

use sha2::Digest;
use sluice_lake::{Lake, encode::encode_parquet};
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, PackedRow, Partition, record_id_at};

/// `sample-data/` of the workspace.
pub fn sample_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-data")
}

/// Writes the records of the NDJSON `text` into the lake at `path`, one Parquet file a
/// partition, with the record ids `sluice import` gives them (from the content's SHA-256 and
/// the line number): what the query engine reads, made without the ingest crate.
pub async fn write_lake(path: &std::path::Path, text: &str) -> Lake {
    let lake = Lake::open(path.to_str().expect("utf8")).await.expect("lake");
    let p = Partitioner::default();
    let registry = p.contract().registry.clone();
    let schema = Arc::new(registry.lake_arrow_schema());
    let source = format!("import:{:x}", sha2::Sha256::digest(text.as_bytes()));
    let arrival = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    let mut parts: BTreeMap<Partition, Vec<PackedRow>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let ctx = Context { record_id: record_id_at(&source, i as u64 + 1), arrival_micros: arrival };
        if let Outcome::Ok { partition, row } = p.transform(line.as_bytes(), &ctx) {
            parts.entry(partition).or_default().push(row);
        }
    }
    for (partition, rows) in parts {
        let bytes = encode_parquet(&registry, &schema, &rows).expect("encode");
        lake.put(&lake.data_key(&partition, "sample.parquet"), bytes.into()).await.expect("put");
    }
    lake
}

/// A lake with the 3,000 committed sample records, written once per test run.
pub fn sample_lake() -> PathBuf {
    static LAKE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    LAKE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("lake");
        // Tests are async: build the lake on a thread of its own, with its own runtime.
        let target = path.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let text = std::fs::read_to_string(sample_data().join("records.ndjson")).expect("sample");
            rt.block_on(write_lake(&target, &text));
        })
        .join()
        .expect("lake thread");
        (dir, path)
    })
    .1
    .clone()
}
