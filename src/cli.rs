//! The `sluice` command line: the commands and their flags, and where each goes.

use std::{io, path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{cmd, runtime::registry};

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
    Demo(cmd::demo::DemoArgs),
    /// Run the embedded pipeline: ingest API, write-ahead log, partitioned Parquet lake.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Send NDJSON records to a running `sluice serve`.
    Publish(cmd::publish::PublishArgs),
    /// Backfill NDJSON or CSV files straight into the lake (no server needed).
    Import(cmd::import::ImportArgs),
    /// Merge the small files of closed hours into files of a target size (default 128 MiB).
    Compact(cmd::compact::CompactArgs),
    /// Re-ingest the records of the error output (after a log type was added, say).
    Replay(cmd::replay::ReplayArgs),
    /// Run SQL over the lake (tables logs, logs_<type>, events), like datafusion-cli.
    Query(cmd::query::QueryArgs),
    /// Export a query or a search as CSV, here or through a server's export API.
    Export(cmd::export::ExportArgs),
    /// Mint a bearer token for `sluice serve` with its HS256 secret (SLUICE_JWT_SECRET).
    Token(cmd::token::TokenArgs),
    /// Print the lake schema: Arrow, Glue columns or a JSON Schema for producers.
    Schema(cmd::schema::SchemaArgs),
    /// Run the Firehose transform Lambda's handler on an event file and print its response.
    FirehoseInvoke(cmd::firehose_invoke::FirehoseInvokeArgs),
    /// Write deterministic sample records (NDJSON) in the seed's shape.
    Generate(cmd::generate::GenerateArgs),
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

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let registry = registry(cli.schemas.as_ref())?;
    match cli.command {
        Command::Demo(a) => cmd::demo::run(a, registry),
        Command::Serve(a) => cmd::serve::run(*a, registry, cli.schemas),
        Command::Publish(a) => cmd::publish::run(a, registry),
        Command::Import(a) => cmd::import::run(a, registry),
        Command::Compact(a) => cmd::compact::run(a, registry),
        Command::Replay(a) => cmd::replay::run(a, registry),
        Command::Query(a) => cmd::query::run(a, registry),
        Command::Export(a) => cmd::export::run(a, registry),
        Command::Token(a) => cmd::token::run(a),
        Command::Schema(a) => cmd::schema::run(a, registry),
        Command::FirehoseInvoke(a) => cmd::firehose_invoke::run(a, registry),
        Command::Generate(a) => cmd::generate::run(a),
    }
}
