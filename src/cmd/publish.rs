//! `sluice publish`: send NDJSON records to a running `sluice serve`, or to the SNS topic of an
//! AWS deployment.

use std::{
    fs,
    io::{self, BufRead, BufReader},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use sluice_producer::{
    http::{PublishOptions, Publisher, Summary},
    sns::{SnsOptions, SnsPublisher, topic_of_url},
};
use sluice_schemas::{Contract, Limits, Registry};

use crate::runtime::{bar, runtime};

/// Flags of `sluice publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// NDJSON files to send, or `-` for standard input [default: -]
    files: Vec<PathBuf>,
    /// Where to send: the URL of a `sluice serve`, or `sns://TOPIC_ARN` for the SNS topic of an
    /// AWS deployment (AWS settings from the environment: AWS_REGION, AWS_PROFILE, …).
    #[arg(long, env = "SLUICE_URL", default_value = "http://127.0.0.1:8400", value_name = "URL")]
    to: String,
    /// With `sns://`: send records as they are, without checking them against the record
    /// contract first (the transform Lambda still checks them).
    #[arg(long)]
    no_validate: bool,
    /// Records per request.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// Bytes per request (before compression).
    #[arg(long, default_value_t = 4 << 20)]
    batch_bytes: usize,
    /// Compress requests with gzip.
    #[arg(long)]
    gzip: bool,
    /// Requests in flight at once [default: 4; `PublishBatch` calls with `sns://`: 8]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: Option<u16>,
    /// Bearer token for servers that require one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn print_summary(s: &Summary) {
    eprintln!(
        "sent {} records: {} accepted, {} rejected ({} retries)",
        s.sent,
        s.accepted,
        s.rejected_total(),
        s.retries
    );
    for (code, n) in &s.rejected {
        eprintln!("  {code:<26} {n}");
    }
    for e in s.examples.iter().take(5) {
        eprintln!("  line {}: {}: {}", e.line, e.code, e.message);
    }
}

/// Where `sluice publish` sends records.
enum Producer {
    Http(Publisher),
    Sns(SnsPublisher),
}

/// Publishes one input and returns its summary.
async fn publish_input(producer: &Producer, file: &PathBuf, quiet: bool) -> Result<Summary> {
    let (reader, len): (Box<dyn BufRead + Send>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(BufReader::new(io::stdin())), None)
    } else {
        let f = fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, f)), len)
    };
    let pb = bar(len, quiet, &file.display().to_string());
    let progress = |s: &Summary| {
        pb.set_position(s.bytes);
        pb.set_message(format!("{} accepted, {} rejected", s.accepted, s.rejected_total()));
    };
    let s = match producer {
        Producer::Http(p) => p.publish(reader, progress).await?,
        Producer::Sns(p) => p.publish(reader, progress).await?,
    };
    pb.finish_and_clear();
    Ok(s)
}

/// `sluice publish`.
pub fn run(args: PublishArgs, registry: Registry) -> Result<ExitCode> {
    let rt = runtime()?;
    let producer = if let Some(topic) = topic_of_url(&args.to) {
        let mut opts = SnsOptions::new(topic);
        if let Some(n) = args.concurrency {
            opts.concurrency = n.into();
        }
        if !args.no_validate {
            opts.contract = Some(Contract { registry, limits: Limits::default() });
        }
        Producer::Sns(rt.block_on(SnsPublisher::new(opts))?)
    } else if args.to.starts_with("http://") || args.to.starts_with("https://") {
        Producer::Http(Publisher::new(PublishOptions {
            url: args.to.clone(),
            batch_records: args.batch_records,
            batch_bytes: args.batch_bytes,
            gzip: args.gzip,
            concurrency: args.concurrency.map_or(PublishOptions::default().concurrency, usize::from),
            token: args.token.clone(),
            ..PublishOptions::default()
        })?)
    } else {
        bail!("--to {:?} must be the http:// URL of a sluice server or sns://TOPIC_ARN", args.to);
    };
    let files = if args.files.is_empty() { vec![PathBuf::from("-")] } else { args.files.clone() };
    let total = rt.block_on(async {
        let mut total = Summary::default();
        for f in &files {
            total.merge(publish_input(&producer, f, args.quiet).await?);
        }
        Ok::<_, anyhow::Error>(total)
    })?;
    print_summary(&total);
    Ok(if total.rejected_total() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
