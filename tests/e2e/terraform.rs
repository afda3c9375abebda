//! The Terraform deployment checked against the code it deploys, without a terraform binary:
//! the HCL parses (python-hcl2), the Firehose prefix is the embedded writer's layout, the Glue
//! columns are the Arrow schema's, and the generated column file is fresh.

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use sluice_schemas::{Registry, arrow_schema, partition_columns};

use crate::support::{root, sluice_bin};

fn module_dir() -> PathBuf {
    root().join("terraform/modules/sluice")
}

/// The Python with python-hcl2 that `scripts/test.sh` installs (or `SLUICE_HCL_PYTHON`).
fn hcl_python() -> PathBuf {
    let p = std::env::var_os("SLUICE_HCL_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sluice/venv-hcl2/bin/python")
    });
    assert!(
        p.exists(),
        "python-hcl2's Python is not at {}: run ./scripts/test.sh (it installs python-hcl2 from PyPI into a virtualenv) or set SLUICE_HCL_PYTHON",
        p.display()
    );
    p
}

/// Every `.tf` file of a folder, parsed: `{file name: HCL as JSON}`.
fn parse_hcl(dir: &std::path::Path) -> Value {
    let script = "import glob, hcl2, json, os, sys\n\
                  out = {os.path.basename(f): hcl2.load(open(f)) for f in sorted(glob.glob(os.path.join(sys.argv[1], '*.tf')))}\n\
                  print(json.dumps(out))";
    let out = Command::new(hcl_python()).args(["-c", script]).arg(dir).output().expect("python-hcl2");
    assert!(out.status.success(), "HCL does not parse: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A string attribute as written (python-hcl2 keeps the quotes).
fn unquote(v: &Value) -> String {
    v.as_str().expect("string").trim_matches('"').to_owned()
}

/// The one block `kind.name` (resource or data) across the parsed files.
fn block<'a>(files: &'a Value, section: &str, kind: &str, name: &str) -> &'a Value {
    let kind = format!("\"{kind}\"");
    let name = format!("\"{name}\"");
    files
        .as_object()
        .expect("files")
        .values()
        .filter_map(|f| f[section].as_array())
        .flatten()
        .find_map(|b| b.get(&kind).and_then(|k| k.get(&name)))
        .unwrap_or_else(|| panic!("no {section} {kind}.{name} in terraform/"))
}

fn local<'a>(files: &'a Value, name: &str) -> &'a Value {
    files
        .as_object()
        .expect("files")
        .values()
        .filter_map(|f| f["locals"].as_array())
        .flatten()
        .find_map(|l| l.get(name))
        .unwrap_or_else(|| panic!("no local.{name} in terraform/"))
}

#[test]
fn glue_column_file_is_fresh() {
    let path = module_dir().join("schema.tf.json");
    let out = Command::new(sluice_bin()).args(["schema", "glue", "--format", "tf-json"]).output().expect("sluice");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &out.stdout).expect("write");
    }
    let committed = std::fs::read(&path).expect("terraform/modules/sluice/schema.tf.json");
    assert!(
        committed == out.stdout,
        "terraform/modules/sluice/schema.tf.json is stale: run `cargo run -- schema glue --format tf-json > terraform/modules/sluice/schema.tf.json`"
    );
}

#[test]
fn terraform_parses_and_agrees_with_the_lake_layout_and_schema() {
    let files = parse_hcl(&module_dir());
    parse_hcl(&root().join("terraform/examples/complete"));
    // The Firehose HTTP endpoint example sends to `POST /firehose` with gzip and the access key
    // from Secrets Manager, as docs/firehose.md says.
    let http = parse_hcl(&root().join("terraform/examples/firehose-http-endpoint"));
    let stream = block(&http, "resource", "aws_kinesis_firehose_delivery_stream", "sluice");
    assert_eq!(unquote(&stream["destination"]), "http_endpoint");
    let endpoint = &stream["http_endpoint_configuration"][0];
    assert_eq!(unquote(&endpoint["request_configuration"][0]["content_encoding"]), "GZIP");
    assert_eq!(unquote(&endpoint["secrets_manager_configuration"][0]["secret_arn"]), "${var.access_key_secret_arn}");

    // The Firehose prefix, filled with the transform's partition keys, is the embedded writer's key.
    let stream = block(&files, "resource", "aws_kinesis_firehose_delivery_stream", "logs");
    let s3 = &stream["extended_s3_configuration"][0];
    assert_eq!(unquote(&s3["prefix"]), "${local.logs_prefix}");
    let prefix = unquote(local(&files, "logs_prefix"));
    let errors = unquote(local(&files, "errors_prefix"));
    assert_eq!(unquote(&s3["file_extension"]), ".parquet");
    assert_eq!(s3["dynamic_partitioning_configuration"][0]["enabled"], true);
    assert_eq!(s3["data_format_conversion_configuration"][0]["enabled"], true);
    let lambda = &s3["processing_configuration"][0]["processors"][0];
    assert_eq!(unquote(&lambda["type"]), "Lambda");

    let event = std::fs::read(root().join("sample-data/firehose/plain.json")).expect("event");
    let response: Value = serde_json::from_str(
        &sluice_partitioner::Partitioner::default().handle_json(&event).expect("a Firehose event"),
    )
    .expect("JSON");
    let mut checked = 0;
    for r in response["records"].as_array().expect("records") {
        let Some(keys) = r["metadata"]["partitionKeys"].as_object() else { continue };
        let mut firehose_key = prefix.clone();
        for (k, v) in keys {
            firehose_key = firehose_key.replace(&format!("!{{partitionKeyFromLambda:{k}}}"), v.as_str().expect("str"));
        }
        assert!(!firehose_key.contains("!{"), "a key the transform does not return: {firehose_key}");
        let partition = sluice_schemas::Partition {
            environment: sluice_schemas::PartitionValue::new(keys["environment"].as_str().expect("env"))
                .expect("valid"),
            organization: sluice_schemas::PartitionValue::new(keys["organization"].as_str().expect("org"))
                .expect("valid"),
            logtype: sluice_schemas::PartitionValue::new(keys["logtype"].as_str().expect("type")).expect("valid"),
            year: keys["year"].as_str().expect("y").parse().expect("year"),
            month: keys["month"].as_str().expect("m").parse().expect("month"),
            day: keys["day"].as_str().expect("d").parse().expect("day"),
            hour: keys["hour"].as_str().expect("h").parse().expect("hour"),
        };
        let lake =
            sluice_lake::Lake::with_store(std::sync::Arc::new(object_store::memory::InMemory::new()), "", "memory://");
        let embedded = lake.data_key(&partition, "f.parquet").to_string();
        assert_eq!(format!("{firehose_key}f.parquet"), embedded);
        checked += 1;
    }
    assert!(checked > 0);
    assert!(errors.starts_with("errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"));

    // The Glue table takes its columns and partition keys from the generated locals, which match
    // the Arrow schema of the Parquet files name for name and type for type.
    let table = block(&files, "resource", "aws_glue_catalog_table", "logs");
    assert_eq!(table["storage_descriptor"][0]["dynamic"][0]["\"columns\""]["for_each"], "${local.sluice_columns}");
    assert_eq!(table["dynamic"][0]["\"partition_keys\""]["for_each"], "${local.sluice_partition_keys}");
    let generated: Value =
        serde_json::from_slice(&std::fs::read(module_dir().join("schema.tf.json")).expect("schema.tf.json"))
            .expect("JSON");
    let registry = Registry::builtin();
    let arrow = arrow_schema(&registry.lake_columns());
    let glue = generated["locals"]["sluice_columns"].as_array().expect("columns");
    assert_eq!(glue.len(), arrow.fields().len());
    for (g, f) in glue.iter().zip(arrow.fields()) {
        assert_eq!(g["name"], f.name().as_str());
        assert_eq!(g["type"], hive_of_arrow(f.data_type()), "column {}", f.name());
    }
    let keys: Vec<&str> = generated["locals"]["sluice_partition_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    let want: Vec<String> = partition_columns().into_iter().map(|c| c.name).collect();
    assert_eq!(keys, want);
    assert_eq!(sluice_schemas::PARTITION_COLUMNS.as_slice(), keys.as_slice());
    // Every partition key is projected, and the path template is the Firehose prefix.
    let params = table["parameters"].as_str().expect("parameters expression");
    for k in ["logtype", "year", "month", "day", "hour"] {
        assert!(params.contains(&format!("projection.{k}.type")), "{k} is not projected");
    }
    let mut template = prefix.replacen("logs/", "${local.lake_root}/", 1);
    for k in sluice_schemas::PARTITION_COLUMNS {
        template = template.replace(&format!("!{{partitionKeyFromLambda:{k}}}"), &format!("$${{{k}}}"));
    }
    assert!(
        params.contains(&template),
        "storage.location.template differs from the Firehose prefix: {template} in {params}"
    );
    let types = generated["locals"]["sluice_log_types"].as_array().expect("log types");
    assert_eq!(types.iter().filter_map(Value::as_str).collect::<Vec<_>>(), registry.names());
}

/// The Hive type of an Arrow type, written independently of `schemas/` to cross-check it.
fn hive_of_arrow(t: &arrow_schema::DataType) -> String {
    use arrow_schema::DataType::*;
    match t {
        Utf8 => "string".into(),
        Int64 => "bigint".into(),
        Float64 => "double".into(),
        Boolean => "boolean".into(),
        Timestamp(_, _) => "timestamp".into(),
        List(f) => format!("array<{}>", hive_of_arrow(f.data_type())),
        Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_of_arrow(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => panic!("no Hive type for {other}"),
    }
}
