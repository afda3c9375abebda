//! `sluice firehose-invoke`: the Firehose transform Lambda's handler on an event file.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Args;
use sluice_partitioner::Partitioner;
use sluice_schemas::{Contract, Limits, Registry};

use crate::runtime::read_input;

/// Flags of `sluice firehose-invoke`.
#[derive(Debug, Args)]
pub struct FirehoseInvokeArgs {
    /// A Firehose data-transformation event (JSON), or `-` for standard input.
    file: PathBuf,
}

/// `sluice firehose-invoke`.
pub fn run(args: FirehoseInvokeArgs, registry: Registry) -> Result<ExitCode> {
    let event = read_input(&args.file)?;
    let p = Partitioner::new(Contract { registry, limits: Limits::default() });
    let out = p.handle_json(&event).with_context(|| {
        format!("{} is not a Firehose data-transformation event (see sample-data/firehose/)", args.file.display())
    })?;
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
