//! `sluice query`: SQL over the lake, following datafusion-cli's conventions (`-c`, `-f`,
//! `--format`, `--maxrows`, an interactive prompt when neither `-c` nor `-f` is given).

use std::{
    io::{self, BufRead, IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    time::Instant,
};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use datafusion::arrow::{record_batch::RecordBatch, util::pretty::pretty_format_batches};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use sluice_query::{Engine, EngineConfig, athena::Athena, format::CsvWriter};
use sluice_schemas::Registry;

use crate::{
    config::DEFAULT_LAKE,
    runtime::{AthenaArgs, EngineKind, runtime},
};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    Table,
    /// RFC 4180 CSV.
    Csv,
    /// Tab-separated values.
    Tsv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Flags of `sluice query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// SQL to run (several may be given, separated by `;`).
    #[arg(short = 'c', long = "command", value_name = "SQL", conflicts_with = "file")]
    command: Vec<String>,
    /// A file of SQL statements separated by `;`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Vec<PathBuf>,
    /// Lake URL.
    #[arg(long, env = "SLUICE_LAKE", default_value = DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Most rows shown in table format (`inf` for no limit).
    #[arg(long, default_value = "40", value_name = "N|inf")]
    maxrows: String,
    /// Prefix CSV cells that could start a spreadsheet formula with `'`.
    #[arg(long)]
    protect_formulas: bool,
    /// Memory per query, MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory_limit: usize,
    /// Print nothing but results.
    #[arg(short, long)]
    quiet: bool,
    /// Where the SQL runs: DataFusion here over --lake, or Athena (AWS mode) over the Glue table.
    #[arg(long, value_enum, default_value_t = EngineKind::Datafusion, env = "SLUICE_ENGINE")]
    engine: EngineKind,
    #[command(flatten)]
    athena: AthenaArgs,
}

/// An engine `sluice query` runs statements on.
enum QueryEngine {
    DataFusion(Box<Engine>),
    Athena(Athena),
}

impl QueryEngine {
    async fn execute(&self, sql: &str, quiet: bool) -> Result<SendableRecordBatchStream> {
        match self {
            Self::DataFusion(e) => Ok(e.execute(sql).await?),
            Self::Athena(a) => {
                let id = a.start(sql).await?;
                if !quiet {
                    eprintln!("Athena query {id} in workgroup {}", a.config().workgroup);
                }
                let waited = tokio::select! {
                    r = a.wait(&id, |_| {}) => r,
                    _ = tokio::signal::ctrl_c() => {
                        a.stop(&id).await?;
                        anyhow::bail!("cancelled: Athena query {id} stopped");
                    }
                };
                let finished = waited?;
                if !quiet {
                    eprintln!(
                        "Athena scanned {}; results in {}",
                        indicatif::HumanBytes(finished.bytes_scanned),
                        finished.output_location
                    );
                }
                Ok(a.result_batches(&finished).await?)
            }
        }
    }
}

/// Splits SQL text into statements at `;` outside quotes and comments.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for c2 in chars.by_ref() {
                        if c2 == '\n' {
                            cur.push('\n');
                            break;
                        }
                    }
                }
                ';' => {
                    if !cur.trim().is_empty() {
                        out.push(cur.trim().to_owned());
                    }
                    cur.clear();
                }
                _ => cur.push(c),
            },
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

async fn run_one(engine: &QueryEngine, sql: &str, args: &QueryArgs, out: &mut dyn Write) -> Result<()> {
    let started = Instant::now();
    let mut stream = engine.execute(sql, args.quiet).await?;
    let mut rows = 0u64;
    match args.format {
        Format::Table => {
            let max = if args.maxrows == "inf" {
                usize::MAX
            } else {
                args.maxrows.parse().with_context(|| format!("--maxrows {:?} must be a number or inf", args.maxrows))?
            };
            let mut shown: Vec<RecordBatch> = Vec::new();
            let mut kept = 0usize;
            let mut schema = None;
            while let Some(b) = stream.next().await {
                let b = b.map_err(sluice_query::Error::from)?;
                schema.get_or_insert_with(|| b.schema());
                rows += b.num_rows() as u64;
                if kept < max {
                    let take = (max - kept).min(b.num_rows());
                    kept += take;
                    shown.push(b.slice(0, take));
                }
            }
            if shown.is_empty()
                && let Some(s) = schema
            {
                shown.push(RecordBatch::new_empty(s));
            }
            writeln!(out, "{}", pretty_format_batches(&shown)?)?;
            if !args.quiet {
                let more = if rows as usize > kept {
                    format!(" ({kept} shown; --maxrows inf for all)")
                } else {
                    String::new()
                };
                eprintln!("{rows} row(s) fetched{more}. Elapsed {:.3} seconds.", started.elapsed().as_secs_f64());
            }
        }
        Format::Csv | Format::Tsv => {
            let mut w = if args.format == Format::Csv {
                CsvWriter::csv(&mut *out, args.protect_formulas)
            } else {
                CsvWriter::tsv(&mut *out)
            };
            let mut wrote_header = false;
            while let Some(b) = stream.next().await {
                let b = b.map_err(sluice_query::Error::from)?;
                w.write(&b)?;
                wrote_header = true;
            }
            if !wrote_header {
                let schema = stream.schema();
                w.write_header(schema.fields().iter().map(|f| f.name().as_str()))?;
            }
            rows = w.rows;
            w.finish()?;
        }
        Format::Json | Format::Ndjson => {
            let ndjson = args.format == Format::Ndjson;
            if !ndjson {
                out.write_all(b"[")?;
            }
            while let Some(b) = stream.next().await {
                let b = b.map_err(sluice_query::Error::from)?;
                for v in sluice_query::format::batch_objects(&b) {
                    if !ndjson && rows > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, &v)?;
                    if ndjson {
                        out.write_all(b"\n")?;
                    }
                    rows += 1;
                }
            }
            if !ndjson {
                out.write_all(b"]\n")?;
            }
        }
    }
    out.flush()?;
    if !args.quiet && args.format != Format::Table {
        eprintln!("{rows} row(s). Elapsed {:.3} seconds.", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `sluice query`.
pub fn run(args: QueryArgs, registry: Registry) -> Result<ExitCode> {
    let mut statements = Vec::new();
    for c in &args.command {
        statements.extend(split_statements(c));
    }
    for f in &args.file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        statements.extend(split_statements(&text));
    }
    let mut config = EngineConfig { memory_limit: args.memory_limit << 20, ..EngineConfig::default() };
    if statements.len() == 1 {
        // One query reads each footer once: keeping them would only cost their measuring.
        config.footer_cache_bytes = 0;
    }
    let rt = runtime()?;
    let engine = match args.engine {
        EngineKind::Datafusion => QueryEngine::DataFusion(Box::new(
            rt.block_on(Engine::open(&args.lake, registry, config))
                .with_context(|| format!("cannot open the lake {:?}; give it with --lake", args.lake))?,
        )),
        EngineKind::Athena => QueryEngine::Athena(rt.block_on(args.athena.engine())),
    };
    let stdout = io::stdout();
    if !statements.is_empty() {
        for sql in &statements {
            rt.block_on(run_one(&engine, sql, &args, &mut stdout.lock()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Interactive: statements end with `;`; `\q` or end of input leaves.
    let interactive = io::stdin().is_terminal();
    if interactive {
        match args.engine {
            EngineKind::Datafusion => eprintln!(
                "sluice query over {} — tables: logs, logs_<type>, events. End statements with ';', \\q to quit.",
                args.lake
            ),
            EngineKind::Athena => eprintln!(
                "sluice query on Athena (workgroup {}, database {}) — table: logs. End statements with ';', \\q to quit.",
                args.athena.workgroup, args.athena.database
            ),
        }
    }
    let mut buf = String::new();
    let mut failed = false;
    let prompt = |cont: bool| {
        if interactive {
            eprint!("{}", if cont { "     -> " } else { "sluice> " });
            io::stderr().flush().ok();
        }
    };
    prompt(false);
    for line in io::stdin().lock().lines() {
        let line = line?;
        if buf.trim().is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        buf.push_str(&line);
        buf.push('\n');
        if line.trim_end().ends_with(';') {
            for sql in split_statements(&buf) {
                if let Err(e) = rt.block_on(run_one(&engine, &sql, &args, &mut stdout.lock())) {
                    eprintln!("error: {e:#}");
                    failed = true;
                }
            }
            buf.clear();
        }
        prompt(!buf.is_empty());
    }
    for sql in split_statements(&buf) {
        if let Err(e) = rt.block_on(run_one(&engine, &sql, &args, &mut stdout.lock())) {
            eprintln!("error: {e:#}");
            failed = true;
        }
    }
    Ok(if failed && !interactive { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_split_outside_quotes_and_comments() {
        assert_eq!(
            super::split_statements("select ';' as a; -- a comment; here\nselect 2;;"),
            vec!["select ';' as a".to_owned(), "select 2".to_owned()]
        );
    }
}
