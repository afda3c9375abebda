//! `sluice import`: backfill NDJSON or CSV files straight into the lake, no server needed.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Args;
use sluice_ingest::import::{ImportOutcome, import_file};
use sluice_lake::Lake;
use sluice_schemas::Registry;

use crate::{
    config::DEFAULT_LAKE,
    runtime::{default_memory_budget_mib, init_logs, partitioner, runtime, spinner},
};

/// Flags of `sluice import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NDJSON (.ndjson, .json, .jsonl, optionally .gz) or CSV (.csv, .csv.gz) files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Lake URL.
    #[arg(long, env = "SLUICE_LAKE", default_value = DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Memory for buffered rows, MiB [default: an eighth of the memory, 256-4096]
    #[arg(long, value_name = "MIB")]
    memory_budget: Option<u64>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// `sluice import`.
pub fn run(args: ImportArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    let rt = runtime()?;
    let lake = rt.block_on(Lake::open(&args.lake))?;
    let p = partitioner(registry, None);
    let mut rejected = 0;
    rt.block_on(async {
        // What an import or a server that crashed staged and never renamed (invisible to readers).
        let sweeper = lake.clone();
        let swept = tokio::task::spawn_blocking(move || sweeper.sweep_staged(sluice_lake::write::STAGED_SWEEP_AGE));
        for f in &args.files {
            let pb = spinner(args.quiet, "{spinner} {prefix} {pos} records");
            pb.set_prefix(f.display().to_string());
            let budget = args.memory_budget.unwrap_or_else(default_memory_budget_mib) << 20;
            let imported = import_file(&lake, &p, f, budget, |n| pb.set_position(n)).await.with_context(|| {
                format!(
                    "importing {} stopped; fix the cause and run the same import again: it writes the same \
                     files again and counts nothing twice",
                    f.display()
                )
            })?;
            match imported {
                ImportOutcome::Imported(e) => {
                    pb.finish_and_clear();
                    eprintln!(
                        "{}: imported {} records ({} accepted, {} rejected to errors/) into {} files",
                        f.display(),
                        e.records,
                        e.accepted,
                        e.rejected,
                        e.files
                    );
                    rejected += e.rejected;
                }
                ImportOutcome::AlreadyImported(e) => {
                    pb.finish_and_clear();
                    eprintln!(
                        "{}: already imported on {} (same content as {}, sha256 {}); nothing to do",
                        f.display(),
                        e.imported_at,
                        e.path,
                        &e.sha256[..12]
                    );
                }
            }
        }
        let swept = swept.await?;
        if swept > 0 {
            eprintln!("deleted {swept} staged files that a crashed writer left in the lake");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(if rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
