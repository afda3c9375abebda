//! The `sluice` command line.

use std::{
    fs,
    io::{self, Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sluice_partitioner::Partitioner;
use sluice_schemas::{Contract, Limits, Registry, arrow_schema, glue_columns, json_schema, partition_columns};

/// sluice: an event-sourced logging and analytics pipeline.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// A folder of extra log-type definitions (*.toml) besides the built-in ones.
    #[arg(long, global = true, env = "SLUICE_SCHEMAS_DIR", value_name = "DIR")]
    schemas: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tour the embedded pipeline: serve, generate and publish sample data, show the lake.
    Demo(crate::ingest_cmds::DemoArgs),
    /// Run the embedded pipeline: ingest API, write-ahead log, partitioned Parquet lake.
    Serve(Box<crate::ingest_cmds::ServeArgs>),
    /// Send NDJSON records to a running `sluice serve`.
    Publish(crate::ingest_cmds::PublishArgs),
    /// Backfill NDJSON or CSV files straight into the lake (no server needed).
    Import(crate::ingest_cmds::ImportArgs),
    /// Merge the small files of closed hours into files of a target size (default 128 MiB).
    Compact(crate::compact_cmd::CompactArgs),
    /// Re-ingest the records of the error output (after a log type was added, say).
    Replay(crate::ingest_cmds::ReplayArgs),
    /// Run SQL over the lake (tables logs, logs_<type>, events), like datafusion-cli.
    Query(crate::query_cmd::QueryArgs),
    /// Export a query or a search as CSV, here or through a server's export API.
    Export(crate::export_cmd::ExportArgs),
    /// Mint a bearer token for `sluice serve` with its HS256 secret (SLUICE_JWT_SECRET).
    Token(crate::token_cmd::TokenArgs),
    /// Print the lake schema: Arrow, Glue columns or a JSON Schema for producers.
    Schema {
        /// Which rendering.
        #[arg(value_enum)]
        format: SchemaFormat,
        /// Only this log type (the `logs_<type>` table); default: the whole `logs` table.
        #[arg(long, value_name = "T")]
        logtype: Option<String>,
        /// How to write the Glue columns: JSON in the shape of Glue's API, or a Terraform JSON
        /// file of locals (`terraform/modules/sluice/schema.tf.json` is this output).
        #[arg(long = "format", value_enum, default_value_t = GlueFormat::Json)]
        glue_format: GlueFormat,
    },
    /// Run the Firehose transform Lambda's handler on an event file and print its response.
    FirehoseInvoke {
        /// A Firehose data-transformation event (JSON), or `-` for standard input.
        file: PathBuf,
    },
    /// Write deterministic sample records (NDJSON) in the seed's shape.
    Generate {
        /// How many records.
        #[arg(long, default_value_t = 1000)]
        records: u64,
        /// The seed: the same seed always gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of organizations.
        #[arg(long, default_value_t = 4)]
        orgs: u32,
        /// Hours the records spread over.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Start of the first hour (RFC 3339); default 2025-01-01T00:00:00Z.
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// Fraction (0 to 1) of bad records, covering every reason code.
        #[arg(long, default_value_t = 0.0, value_name = "F")]
        bad_fraction: f64,
        /// Output file; default standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaFormat {
    /// The Arrow schema of the Parquet data files.
    Arrow,
    /// Glue columns and partition keys (the shape of Glue's `StorageDescriptor`).
    Glue,
    /// A JSON Schema (draft 2020-12) of the records producers send.
    JsonSchema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GlueFormat {
    /// `{"Columns": […], "PartitionKeys": […]}`, as Glue's API names them.
    Json,
    /// Terraform JSON: locals `sluice_columns`, `sluice_partition_keys` and `sluice_log_types`.
    TfJson,
}

/// Runs the command and turns errors into a message and exit status 1 (2 for usage errors).
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn registry(dir: Option<&PathBuf>) -> Result<Registry> {
    Ok(match dir {
        Some(d) => Registry::with_dir(d)?,
        None => Registry::builtin(),
    })
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let registry = registry(cli.schemas.as_ref())?;
    match cli.command {
        Command::Demo(a) => return crate::ingest_cmds::demo(a, registry),
        Command::Serve(a) => return crate::ingest_cmds::serve(*a, registry, cli.schemas),
        Command::Publish(a) => return crate::ingest_cmds::publish(a, registry),
        Command::Import(a) => return crate::ingest_cmds::import(a, registry),
        Command::Compact(a) => return crate::compact_cmd::run(a, registry),
        Command::Replay(a) => return crate::ingest_cmds::replay(a, registry),
        Command::Query(a) => return crate::query_cmd::query(a, registry),
        Command::Export(a) => return crate::export_cmd::export(a, registry),
        Command::Token(a) => return crate::token_cmd::run(a),
        Command::Schema { format, logtype, glue_format } => {
            if glue_format != GlueFormat::Json && !matches!(format, SchemaFormat::Glue) {
                bail!("--format applies to `sluice schema glue` only");
            }
            schema(&registry, format, glue_format, logtype.as_deref())?
        }
        Command::FirehoseInvoke { file } => {
            let event = read_input(&file)?;
            let p = Partitioner::new(Contract { registry, limits: Limits::default() });
            let out = p.handle_json(&event).with_context(|| {
                format!("{} is not a Firehose data-transformation event (see sample-data/firehose/)", file.display())
            })?;
            println!("{out}");
        }
        Command::Generate { records, seed, orgs, hours, start, bad_fraction, output } => {
            if !(0.0..=1.0).contains(&bad_fraction) {
                bail!("--bad-fraction {bad_fraction} must be between 0 and 1");
            }
            let start = match start {
                Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
                    .with_context(|| format!("--start {s:?} is not an RFC 3339 time, e.g. 2025-01-01T00:00:00Z"))?
                    .with_timezone(&chrono::Utc),
                None => sluice_sample_data::default_start(),
            };
            let opts = sluice_sample_data::Options { records, seed, orgs, hours, start, bad_fraction };
            let counts = match output {
                Some(path) => {
                    let f = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    sluice_sample_data::generate(opts, io::BufWriter::new(f))?
                }
                None => sluice_sample_data::generate(opts, io::stdout().lock())?,
            };
            eprintln!(
                "generated {} records ({} good, {} bad, {} bytes)",
                counts.good + counts.bad,
                counts.good,
                counts.bad,
                counts.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

fn schema(registry: &Registry, format: SchemaFormat, glue_format: GlueFormat, logtype: Option<&str>) -> Result<()> {
    let lt = match logtype {
        Some(name) => Some(registry.get(name).with_context(|| {
            format!("log type {name:?} is not registered; valid values are {}", registry.names().join(", "))
        })?),
        None => None,
    };
    let cols = match lt {
        Some(lt) => registry.logtype_columns(&lt.name).expect("registered"),
        None => registry.lake_columns(),
    };
    let mut out = io::stdout().lock();
    match format {
        SchemaFormat::Arrow => {
            let schema = arrow_schema(&cols);
            for f in schema.fields() {
                let null = if f.is_nullable() { "" } else { " NOT NULL" };
                writeln!(out, "{}: {}{null}", f.name(), f.data_type())?;
            }
        }
        SchemaFormat::Glue if glue_format == GlueFormat::TfJson => {
            let lower = |cols: Vec<sluice_schemas::GlueColumn>| -> Vec<serde_json::Value> {
                cols.into_iter()
                    .map(|c| serde_json::json!({ "name": c.name, "type": c.ty, "comment": c.comment }))
                    .collect()
            };
            let v = serde_json::json!({
                "//": "Generated by `sluice schema glue --format tf-json` from schemas/; do not edit. \
                       A test fails when this file is stale.",
                "locals": {
                    "sluice_columns": lower(glue_columns(&cols)),
                    "sluice_partition_keys": lower(glue_columns(&partition_columns())),
                    "sluice_log_types": registry.names(),
                },
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        SchemaFormat::Glue => {
            let v = serde_json::json!({
                "Columns": glue_columns(&cols),
                "PartitionKeys": glue_columns(&partition_columns()),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        SchemaFormat::JsonSchema => {
            writeln!(out, "{}", serde_json::to_string_pretty(&json_schema(registry, lt))?)?;
        }
    }
    Ok(())
}
