//! `sluice compact`: merge the small files of closed hours.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_lake::{
    Lake,
    compact::{CompactOptions, compact},
};
use sluice_schemas::Registry;

use crate::{
    config::DEFAULT_LAKE,
    runtime::{init_logs, mib, runtime},
};

/// Flags of `sluice compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Lake URL: a folder, file:///path or s3://bucket/prefix.
    #[arg(long, env = "SLUICE_LAKE", default_value = DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Compact only hours that ended at least this long ago (late records may still arrive in
    /// younger ones): 90m, 2h, 1d.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    older_than: String,
    /// Size of a merged file, MiB: files are merged until their total reaches it.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    target_size: u64,
    /// How long replaced files stay after the swap, for queries that listed them before it.
    /// The default outlasts a query of `sluice serve` (300 s at most by default); give `0s`
    /// when no sluice reader is running.
    #[arg(long, default_value = "330s", value_name = "DURATION")]
    grace: String,
    /// Print what would be merged; write and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// `sluice compact`.
pub fn run(args: CompactArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    let duration = |flag: &str, v: &str| sluice_auth::token::parse_duration(v).map_err(|e| anyhow!("--{flag}: {e}"));
    if args.target_size == 0 {
        return Err(anyhow!("--target-size must be at least 1 (MiB)"));
    }
    let opts = CompactOptions {
        older_than: duration("older-than", &args.older_than)?,
        target_bytes: args.target_size << 20,
        grace: duration("grace", &args.grace)?,
        dry_run: args.dry_run,
    };
    let rt = runtime()?;
    let lake = rt.block_on(Lake::open(&args.lake))?;
    let pb = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    pb.set_style(
        ProgressStyle::with_template("{spinner} compacting [{bar:30}] {pos}/{len} folders, {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = rt.block_on(compact(&lake, &registry, &opts, |p| {
        pb.set_length(p.folders);
        pb.set_position(p.folders_done);
        pb.set_message(format!("{} merged; {}", mib(p.bytes_merged), p.phase));
    }))?;
    pb.finish_and_clear();
    let verb = if args.dry_run { "would merge" } else { "merged" };
    println!(
        "{} folders, {} with closed hours; {verb} files in {} of them ({} rows rewritten)",
        report.folders, report.closed, report.compacted, report.rows
    );
    println!("            files  size");
    println!("  before {:>9}  {}", report.files_before, mib(report.bytes_before));
    let after_bytes = if args.dry_run { "(not measured in a dry run)".to_owned() } else { mib(report.bytes_after) };
    println!("  after  {:>9}  {after_bytes}", report.files_after);
    if report.deleted > 0 {
        let verb = if args.dry_run { "would delete" } else { "deleted" };
        println!("{verb} {} replaced files", report.deleted);
    }
    for (folder, reason) in &report.skipped {
        eprintln!("left as it was: {folder}: {reason}");
    }
    Ok(if report.skipped.iter().any(|(_, r)| r != "not a partition folder") {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
