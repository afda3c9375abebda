//! `sluice replay`: re-ingest the records of the error output (after a log type was added, say).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use sluice_ingest::replay::replay;
use sluice_lake::Lake;
use sluice_schemas::Registry;

use crate::{
    config::DEFAULT_LAKE,
    runtime::{default_memory_budget_mib, init_logs, partitioner, runtime, spinner},
};

/// Flags of `sluice replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Lake URL.
    #[arg(long, env = "SLUICE_LAKE", default_value = DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Memory for buffered rows, MiB [default: an eighth of the memory, 256-4096]
    #[arg(long, value_name = "MIB")]
    memory_budget: Option<u64>,
}

/// `sluice replay`.
pub fn run(args: ReplayArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    let rt = runtime()?;
    let lake = rt.block_on(Lake::open(&args.lake))?;
    let p = partitioner(registry, None);
    let pb = spinner(false, "{spinner} replaying errors/: {msg}");
    let report =
        rt.block_on(replay(&lake, &p, args.memory_budget.unwrap_or_else(default_memory_budget_mib) << 20, |r| {
            pb.set_message(format!("{} files, {} records, {} delivered", r.files, r.records, r.delivered))
        }))?;
    pb.finish_and_clear();
    let failing: u64 = report.still_failing.values().sum();
    eprintln!(
        "replayed {} error records from {} files: {} delivered to the lake, {} still failing",
        report.records, report.files, report.delivered, failing
    );
    for (code, n) in &report.still_failing {
        eprintln!("  {code:<26} {n}");
    }
    if report.unreadable > 0 {
        eprintln!("  {} lines are not error records and were left as they are", report.unreadable);
    }
    Ok(ExitCode::SUCCESS)
}
