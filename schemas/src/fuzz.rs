//! What the fuzz targets under `fuzz/` check, callable from tests: each function takes any
//! bytes and panics only when an invariant breaks. `cargo fuzz` (nightly, `scripts/fuzz.sh`)
//! searches for such inputs; the regression test below runs every committed input of
//! `fuzz/corpus/record/` and `fuzz/regressions/record/` on stable, in CI.

use crate::{Context, Contract, MAX_DEPTH, json};

/// The record parser: the fast reader agrees with serde_json at two depth limits, and applying
/// the contract to any bytes gives a record or a rejection, never a panic.
pub fn record(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        json::check_against_serde(text, 3);
        json::check_against_serde(text, MAX_DEPTH);
    }
    let ctx = Context { record_id: crate::record_id("fuzz"), arrival_micros: 1_700_000_000_000_000 };
    if let Ok(r) = Contract::default().parse(data, &ctx) {
        let line = r.row.to_json_line(&crate::Registry::builtin());
        assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok(), "the normalized line is not JSON");
    }
}

/// Every file of `fuzz/corpus/{target}/` and `fuzz/regressions/{target}/` of the workspace
/// (inputs the fuzzer kept, and the ones that once crashed a target), for regression tests.
pub fn committed_inputs(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push((e.path(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_fuzz_inputs_of_the_record_parser() {
        let inputs = super::committed_inputs("record");
        assert!(inputs.len() >= 5, "the corpus of fuzz/corpus/record is missing");
        for (path, bytes) in inputs {
            let done = std::panic::catch_unwind(|| super::record(&bytes));
            assert!(done.is_ok(), "{} breaks the record parser", path.display());
        }
    }
}
