//! `sluice compact` as an operator runs it: every row survives, closed hours only, and readers
//! see the old files or the merged ones, never both and never neither — also across a crash.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{data_files, duckdb_python, lake_rows, sluice_bin};

fn sluice(args: &[&str]) -> Output {
    Command::new(sluice_bin()).args(args).env("SLUICE_LOG", "warn").output().expect("run sluice")
}

fn ok(args: &[&str]) -> String {
    let out = sluice(args);
    assert!(out.status.success(), "sluice {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8")
}

fn query(lake: &Path, sql: &str) -> Value {
    let out = ok(&["query", "--lake", lake.to_str().expect("utf8"), "--format", "json", "-c", sql]);
    serde_json::from_str(&out).expect("query JSON")
}

fn count(lake: &Path) -> i64 {
    query(lake, "SELECT count(*) AS n FROM logs")[0]["n"].as_i64().expect("count")
}

fn duckdb_count(lake: &Path) -> i64 {
    let script = format!(
        "import duckdb\nprint(duckdb.sql(\"SELECT count(*) FROM read_parquet('{}/logs/**/*.parquet', hive_partitioning = true)\").fetchall()[0][0])",
        lake.display()
    );
    let out = Command::new(duckdb_python()).args(["-c", &script]).output().expect("duckdb");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

/// A lake of many small files: three closed hours of 2025 imported in six slices, plus records
/// of the current hour, which is still open. Returns the number of records.
fn small_file_lake(dir: &Path) -> (PathBuf, i64) {
    let lake = dir.join("lake");
    let old = dir.join("old.ndjson");
    let now = dir.join("now.ndjson");
    let gen_to = |path: &Path, args: &[&str]| {
        let out = ok(&[&["generate", "--seed", "7"], args].concat());
        std::fs::write(path, out).expect("write records");
    };
    gen_to(&old, &["--records", "3000", "--orgs", "2", "--hours", "3"]);
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z").to_string();
    gen_to(&now, &["--records", "300", "--orgs", "1", "--hours", "1", "--start", &hour]);
    let lines: Vec<String> = std::fs::read_to_string(&old).expect("read").lines().map(str::to_owned).collect();
    for (i, slice) in lines.chunks(500).enumerate() {
        let part = dir.join(format!("slice-{i}.ndjson"));
        std::fs::write(&part, slice.join("\n") + "\n").expect("write slice");
        ok(&["import", "--quiet", "--lake", lake.to_str().expect("utf8"), part.to_str().expect("utf8")]);
    }
    ok(&["import", "--quiet", "--lake", lake.to_str().expect("utf8"), now.to_str().expect("utf8")]);
    (lake, 3300)
}

fn folders(lake: &Path) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
    let mut out: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for (part, file) in data_files(lake) {
        out.entry(part).or_default().push(file);
    }
    out
}

fn sorted_rows(lake: &Path) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = lake_rows(lake).into_iter().map(|(p, r)| (p, r.to_string())).collect();
    rows.sort();
    rows
}

const ANSWERS: &str = "SELECT organization, logtype, year, month, day, hour, count(*) AS n, \
                       count(DISTINCT record_id) AS ids, sum(duration_ms) AS ms, min(time) AS first, max(time) AS last \
                       FROM logs GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6";

#[test]
fn compaction_merges_closed_hours_and_keeps_every_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let (lake, records) = small_file_lake(dir.path());
    let l = lake.to_str().expect("utf8");
    let before = folders(&lake);
    let rows_before = sorted_rows(&lake);
    let answers_before = query(&lake, ANSWERS);
    assert_eq!(rows_before.len() as i64, records);
    let this_year = chrono::Utc::now().format("year=%Y").to_string();
    let open: Vec<&String> = before.keys().filter(|p| p.contains(&this_year)).collect();
    assert!(!open.is_empty(), "the current hour has files");
    assert!(before.values().filter(|f| f.len() > 2).count() > 10, "most folders hold several small files");
    assert!(before.values().flatten().all(|f| in_time_order(f)), "import writes its rows in order of time");

    let dry = ok(&["compact", "--lake", l, "--dry-run", "--quiet"]);
    assert!(dry.contains("would merge"), "{dry}");
    assert_eq!(folders(&lake), before, "a dry run writes and deletes nothing");

    let report = ok(&["compact", "--lake", l, "--grace", "0s", "--quiet"]);
    assert!(report.contains("before") && report.contains("after"), "{report}");
    let after = folders(&lake);
    for (part, files) in &after {
        if part.contains(&this_year) {
            assert_eq!(files, &before[part], "the open hour {part} is left alone");
        } else if before[part].len() > 1 {
            let names: Vec<String> =
                files.iter().map(|f| f.file_name().expect("name").to_string_lossy().into_owned()).collect();
            assert!(names.len() == 1 && names[0].starts_with("compacted-"), "{part}: {names:?}");
            assert!(in_time_order(&files[0]), "{part}: a merged file is in order of time and says so");
        }
    }
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "never across folders");
    assert_eq!(sorted_rows(&lake), rows_before, "every row, in its own partition, unchanged");
    assert_eq!(query(&lake, ANSWERS), answers_before);
    assert_eq!(duckdb_count(&lake), records, "DuckDB reads the compacted lake");

    let again = ok(&["compact", "--lake", l, "--grace", "0s", "--quiet"]);
    assert!(again.contains("merged files in 0 of them"), "{again}");
    assert_eq!(folders(&lake), after, "a second run has nothing to do");

    let bad = sluice(&["compact", "--lake", l, "--older-than", "soon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--older-than"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn readers_see_old_or_merged_files_even_across_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let (lake, records) = small_file_lake(dir.path());
    let l = lake.to_str().expect("utf8");
    let before = folders(&lake);
    let (sample_part, sample_files) = before.iter().find(|(_, f)| f.len() > 1).expect("a folder of small files");
    let live_before = sorted_rows_live(&lake);
    let saved = dir.path().join("saved.parquet");
    std::fs::copy(&sample_files[0], &saved).expect("save a source file");

    // A compaction that swaps and then waits a long grace period before deleting: readers run
    // during the swap, and the run is killed while both generations are on disk.
    let mut compactor = Command::new(sluice_bin())
        .args(["compact", "--lake", l, "--grace", "120s", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start compact");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reads = 0;
    loop {
        assert_eq!(count(&lake), records, "a reader during compaction (read {reads})");
        reads += 1;
        let merged = folders(&lake).values().flatten().filter(|f| f.to_string_lossy().contains("compacted-")).count();
        let merging = before.values().filter(|f| f.len() > 1).count();
        if merged == merging {
            break;
        }
        assert!(Instant::now() < deadline, "compaction did not swap in time ({merged}/{merging})");
    }
    let mid = folders(&lake);
    assert!(mid[sample_part].len() > sample_files.len(), "old and merged files are both on disk");
    assert_eq!(count(&lake), records, "…and a reader sees one generation of them");
    // A second compaction while the first runs refuses, saying who holds the lake.
    let locked = sluice(&["compact", "--lake", l, "--grace", "0s", "--quiet"]);
    assert!(!locked.status.success(), "a second compaction refuses while the first runs");
    let msg = String::from_utf8_lossy(&locked.stderr);
    assert!(
        msg.contains("in use by another sluice process") && msg.contains(&format!("pid {}", compactor.id())),
        "{msg}"
    );
    compactor.kill().expect("kill compact");
    compactor.wait().expect("reap");
    assert_eq!(count(&lake), records, "after the crash");
    assert_eq!(sorted_rows_live(&lake), live_before, "the same rows, each once");

    // The crashed run's hold lapsed with its process: the next run needs nothing removed by hand.
    let report = ok(&["compact", "--lake", l, "--grace", "0s", "--quiet"]);
    assert!(report.contains("deleted"), "the next run deletes what the crash left: {report}");
    assert_eq!(count(&lake), records);
    assert_eq!(duckdb_count(&lake), records, "no replaced file is left for other readers");

    // A replaced file written again (a write-ahead log replayed after a crash rewrites the same
    // name) stays replaced, and the next run removes it.
    let again = lake.join("logs").join(sample_part).join(sample_files[0].file_name().expect("name"));
    std::fs::copy(&saved, &again).expect("restore");
    assert_eq!(count(&lake), records, "a rewritten replaced file is not counted twice");
    ok(&["compact", "--lake", l, "--grace", "0s", "--quiet"]);
    assert!(!again.exists());
}

/// Whether the rows of a data file are in order of `time`, and each of its row groups says so
/// (Parquet's `sorting_columns`).
fn in_time_order(file: &Path) -> bool {
    use arrow_array::{cast::AsArray, types::TimestampMicrosecondType};
    let f = std::fs::File::open(file).expect("open");
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    let declared = builder.metadata().row_groups().iter().all(|rg| rg.sorting_columns().is_some_and(|c| !c.is_empty()));
    let mut times: Vec<i64> = Vec::new();
    for b in builder.build().expect("reader") {
        let b = b.expect("batch");
        times.extend(b.column_by_name("time").expect("time").as_primitive::<TimestampMicrosecondType>().values());
    }
    declared && times.is_sorted()
}

/// Rows as sluice reads them (through the live-file rule), sorted.
fn sorted_rows_live(lake: &Path) -> Vec<String> {
    let v = query(lake, "SELECT record_id, organization, hour FROM logs ORDER BY record_id, organization, hour");
    v.as_array().expect("rows").iter().map(Value::to_string).collect()
}
