//! The commands of issue 2 run as a user runs them: schema, firehose-invoke, generate.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn sluice(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().expect("run sluice");
    assert!(out.status.success(), "sluice {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn schema_glue_and_arrow_agree_column_for_column() {
    for logtype in [None, Some("web"), Some("agw"), Some("container")] {
        let mut glue_args = vec!["schema", "glue"];
        let mut arrow_args = vec!["schema", "arrow"];
        if let Some(t) = logtype {
            glue_args.extend(["--logtype", t]);
            arrow_args.extend(["--logtype", t]);
        }
        let glue: serde_json::Value = serde_json::from_slice(&sluice(&glue_args).stdout).expect("glue json");
        let arrow = String::from_utf8(sluice(&arrow_args).stdout).expect("utf8");
        let glue_cols = glue["Columns"].as_array().expect("Columns");
        let arrow_lines: Vec<&str> = arrow.lines().collect();
        assert_eq!(glue_cols.len(), arrow_lines.len(), "{logtype:?}");
        for (g, a) in glue_cols.iter().zip(arrow_lines) {
            let (name, ty) = a.split_once(": ").expect("name: type");
            assert_eq!(g["Name"].as_str(), Some(name));
            let hive = g["Type"].as_str().expect("type");
            let compatible = match hive {
                "string" => ty.starts_with("Utf8"),
                "bigint" => ty.starts_with("Int64"),
                "boolean" => ty.starts_with("Boolean"),
                "timestamp" => ty.starts_with("Timestamp(µs, \"UTC\")"),
                h if h.starts_with("array<struct<") => ty.starts_with("List(Struct("),
                other => panic!("unexpected Glue type {other}"),
            };
            assert!(compatible, "{name}: glue {hive} vs arrow {ty}");
        }
        let parts: Vec<&str> =
            glue["PartitionKeys"].as_array().expect("keys").iter().filter_map(|k| k["Name"].as_str()).collect();
        assert_eq!(parts, ["environment", "organization", "logtype", "year", "month", "day", "hour"]);
    }
}

#[test]
fn schema_json_schema_is_json_and_unknown_logtype_is_a_clear_error() {
    let v: serde_json::Value = serde_json::from_slice(&sluice(&["schema", "json-schema"]).stdout).expect("json");
    assert_eq!(v["required"], serde_json::json!(["organizationID", "environment", "logType"]));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["schema", "arrow", "--logtype", "billing"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid values are agw, app"));
}

#[test]
fn firehose_invoke_prints_the_fixture_response() {
    let dir = root().join("sample-data/firehose");
    for name in ["plain", "sns", "mixed"] {
        let event = dir.join(format!("{name}.json"));
        let out = sluice(&["firehose-invoke", event.to_str().expect("utf8 path")]);
        let expected = std::fs::read(dir.join(format!("{name}.expected.json"))).expect("expected");
        assert_eq!(out.stdout, expected, "{name}");
    }
    // From standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["firehose-invoke", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        &std::fs::read(dir.join("plain.json")).expect("read"),
    )
    .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.stdout, std::fs::read(dir.join("plain.expected.json")).expect("expected"));
}

#[test]
fn generate_is_deterministic_and_writes_files() {
    let args = ["generate", "--records", "500", "--seed", "9", "--orgs", "3", "--hours", "5", "--bad-fraction", "0.05"];
    let a = sluice(&args).stdout;
    let b = sluice(&args).stdout;
    assert_eq!(a, b);
    assert_eq!(a.iter().filter(|b| **b == b'\n').count(), 500);
    let dir = std::env::temp_dir().join(format!("sluice-e2e-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("out.ndjson");
    sluice(&[&args[..], &["-o", file.to_str().expect("utf8")]].concat());
    assert_eq!(std::fs::read(&file).expect("read"), a);
    std::fs::remove_dir_all(&dir).ok();
    // The committed sample is what the README says regenerates it.
    let sample = sluice(&["generate", "--records", "3000", "--seed", "1", "--orgs", "4", "--hours", "48"]).stdout;
    assert_eq!(sample, std::fs::read(Path::new(&root()).join("sample-data/records.ndjson")).expect("sample"));
}
