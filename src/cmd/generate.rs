//! `sluice generate`: deterministic sample records (NDJSON) in the seed's shape.

use std::{fs, io, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::Args;

/// Flags of `sluice generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
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
}

/// `sluice generate`.
pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let GenerateArgs { records, seed, orgs, hours, start, bad_fraction, output } = args;
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
    Ok(ExitCode::SUCCESS)
}
