//! `sluice export`: a query or a search to a CSV file, in this process over the lake or on a
//! server through the export API, with a progress bar either way.

use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sluice_query::{Engine, EngineConfig, api::SearchParams, format::CsvWriter};
use sluice_schemas::Registry;

use crate::runtime::{api_json, follow_events};

/// Flags of `sluice export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// SQL of the export.
    #[arg(short = 'c', long = "command", value_name = "SQL", conflicts_with_all = ["file", "search"])]
    command: Option<String>,
    /// A file holding the SQL of the export.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with = "search")]
    file: Option<PathBuf>,
    /// Export the records a text search finds (in description, action, caller and detail).
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// Search: start of the time range (RFC 3339) [default: 24 hours before --to].
    #[arg(long, value_name = "TIME", requires = "search")]
    from: Option<String>,
    /// Search: end of the time range, exclusive (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME", requires = "search")]
    to: Option<String>,
    /// Search: only this environment.
    #[arg(long, requires = "search")]
    environment: Option<String>,
    /// Search: only this organization.
    #[arg(long, requires = "search")]
    organization: Option<String>,
    /// Search: only this log type.
    #[arg(long, requires = "search")]
    logtype: Option<String>,
    /// The CSV file to write (`-` for standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE.csv")]
    output: PathBuf,
    /// Run the export on this server's export API instead of in this process.
    #[arg(long, env = "SLUICE_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Bearer token for --server (a token with exports:write).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Lake URL (when not using --server).
    #[arg(long, env = "SLUICE_LAKE", default_value = crate::config::DEFAULT_LAKE, value_name = "URL")]
    lake: String,
    /// Leave cells that start with `=`, `+`, `-`, `@`, tab or carriage return as they are
    /// (by default they are prefixed with `'` so that spreadsheets do not run them as formulas).
    #[arg(long)]
    no_formula_protection: bool,
    /// Memory for the query, MiB (when not using --server).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory_limit: usize,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl ExportArgs {
    fn search_params(&self) -> Option<SearchParams> {
        self.search.as_ref().map(|q| SearchParams {
            q: Some(q.clone()),
            from: self.from.clone(),
            to: self.to.clone(),
            environment: self.environment.clone(),
            organization: self.organization.clone(),
            logtype: self.logtype.clone(),
            ..SearchParams::default()
        })
    }

    fn sql(&self) -> Result<Option<String>> {
        match (&self.command, &self.file) {
            (Some(c), _) => Ok(Some(c.clone())),
            (None, Some(f)) => {
                Ok(Some(std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?))
            }
            (None, None) => Ok(None),
        }
    }
}

fn progress(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1000).with_style(
        ProgressStyle::with_template("{spinner} exporting [{bar:30}] {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn show(bar: &ProgressBar, rows: u64, bytes: u64, share: f64) {
    bar.set_position((share.clamp(0.0, 1.0) * 1000.0) as u64);
    bar.set_message(format!("{rows} rows, {}", indicatif::HumanBytes(bytes)));
}

/// Writes to `path` through a temporary file renamed into place at the end, so that a failed
/// export leaves no half file behind (`-` writes to standard output).
struct Target {
    path: PathBuf,
    tmp: Option<PathBuf>,
}

impl Target {
    fn open(path: &Path) -> Result<(Self, Box<dyn Write + Send>)> {
        if path.as_os_str() == "-" {
            return Ok((Self { path: path.to_owned(), tmp: None }, Box::new(std::io::stdout())));
        }
        let tmp = path.with_extension("csv.part");
        let f = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok((Self { path: path.to_owned(), tmp: Some(tmp) }, Box::new(f)))
    }

    fn commit(self) -> Result<()> {
        if let Some(tmp) = &self.tmp {
            std::fs::rename(tmp, &self.path).with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        Ok(())
    }

    fn abandon(&self) {
        if let Some(tmp) = &self.tmp {
            std::fs::remove_file(tmp).ok();
        }
    }
}

/// `sluice export`.
pub fn run(args: ExportArgs, registry: Registry) -> Result<ExitCode> {
    let sql = args.sql()?;
    let search = args.search_params();
    if sql.is_none() && search.is_none() {
        bail!("say what to export: -c SQL, -f FILE or --search TEXT");
    }
    let rt = crate::runtime::runtime()?;
    let (target, out) = Target::open(&args.output)?;
    let bar = progress(args.quiet);
    let result = rt.block_on(async {
        match &args.server {
            Some(server) => remote(server, sql, search, &args, &bar, out).await,
            None => local(&args, registry, sql, search, &bar, out).await,
        }
    });
    bar.finish_and_clear();
    match result {
        Ok((rows, bytes)) => {
            target.commit()?;
            if !args.quiet {
                eprintln!("exported {rows} rows ({}) to {}", indicatif::HumanBytes(bytes), args.output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            target.abandon();
            Err(e)
        }
    }
}

/// Runs the export here: the query's batches are written as they come, so memory stays bounded.
async fn local(
    args: &ExportArgs,
    registry: Registry,
    sql: Option<String>,
    search: Option<SearchParams>,
    bar: &ProgressBar,
    out: Box<dyn Write + Send>,
) -> Result<(u64, u64)> {
    let sql = match (sql, search) {
        (Some(sql), _) => sql,
        (None, Some(p)) => sluice_query::api::search_sql(&p, None, 10_000_000).map_err(|e| anyhow::anyhow!("{e}"))?,
        (None, None) => unreachable!("checked by export"),
    };
    // One query: footers are read once each, so none are kept.
    let config =
        EngineConfig { memory_limit: args.memory_limit << 20, footer_cache_bytes: 0, ..EngineConfig::default() };
    let engine = Engine::open(&args.lake, registry, config)
        .await
        .with_context(|| format!("cannot open the lake {:?}; give it with --lake", args.lake))?;
    let (plan, task) = engine.plan(&sql).await?;
    let schema = plan.schema();
    let mut stream = datafusion::physical_plan::execute_stream(plan, task)?;
    let mut w = CsvWriter::csv(BufWriter::with_capacity(1 << 20, out), !args.no_formula_protection);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(sluice_query::Error::from)?;
        w.write(&batch)?;
        // The number of rows is not known beforehand: the bar shows rows and bytes as they grow.
        show(bar, w.rows, w.bytes, 0.0);
    }
    if w.rows == 0 {
        w.write_header(schema.fields().iter().map(|f| f.name().as_str()))?;
    }
    let (rows, bytes) = (w.rows, w.bytes);
    w.finish()?.flush()?;
    Ok((rows, bytes))
}

/// Runs the export on a server: start it, follow its server-sent events, download the CSV.
async fn remote(
    server: &str,
    sql: Option<String>,
    search: Option<SearchParams>,
    args: &ExportArgs,
    bar: &ProgressBar,
    out: Box<dyn Write + Send>,
) -> Result<(u64, u64)> {
    let base = server.trim_end_matches('/');
    let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
    // The token goes to the server only, never to a presigned S3 URL (S3 refuses two kinds of auth).
    let authed = |r: reqwest::RequestBuilder| match &args.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let mut body = json!({"protect_formulas": !args.no_formula_protection});
    match (sql, search) {
        (Some(sql), _) => body["sql"] = json!(sql),
        (None, Some(p)) => {
            body["search"] = json!({
                "q": p.q, "from": p.from, "to": p.to, "environment": p.environment,
                "organization": p.organization, "logtype": p.logtype,
            });
            // Absent filters are left out rather than sent as null.
            if let Some(o) = body["search"].as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
        }
        (None, None) => unreachable!("checked by export"),
    }
    let r = authed(client.post(format!("{base}/v1/exports")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach {base}; is `sluice serve` running there?"))?;
    let started = api_json(r).await?;
    let id = started["id"].as_str().context("the server did not return an export id")?.to_owned();
    let status = follow(&client, base, &id, args.token.as_deref(), bar).await?;
    if status["state"] != "SUCCEEDED" {
        let e = &status["error"];
        bail!(
            "the export {} ({}): {}",
            status["state"].as_str().unwrap_or("failed"),
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or_default()
        );
    }
    let url = status["download_url"].as_str().context("the finished export has no download_url")?;
    let mut r = if url.starts_with("http") {
        client.get(url).send().await?
    } else {
        authed(client.get(format!("{base}{url}"))).send().await?
    };
    if !r.status().is_success() {
        api_json(r).await?;
        bail!("the download failed");
    }
    let total = status["bytes"].as_u64().unwrap_or(0);
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut got = 0u64;
    bar.set_message("downloading");
    while let Some(chunk) = r.chunk().await? {
        out.write_all(&chunk)?;
        got += chunk.len() as u64;
        if let Some(share) = (got * 1000).checked_div(total) {
            bar.set_position(share);
        }
    }
    out.flush()?;
    if total > 0 && got != total {
        bail!("the download ended after {got} of {total} bytes; run the export again");
    }
    Ok((status["rows"].as_u64().unwrap_or(0), got))
}

/// Follows the export's server-sent events until the `complete` event, showing progress; returns
/// the final status.
async fn follow(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    token: Option<&str>,
    bar: &ProgressBar,
) -> Result<Value> {
    let get = |url: String| match token {
        Some(t) => client.get(url).bearer_auth(t),
        None => client.get(url),
    };
    let r = get(format!("{base}/v1/exports/{id}/events")).send().await?;
    if !r.status().is_success() {
        return api_json(r).await;
    }
    let done = follow_events(r, |s| {
        show(
            bar,
            s["rows"].as_u64().unwrap_or(0),
            s["bytes"].as_u64().unwrap_or(0),
            s["progress"].as_f64().unwrap_or(0.0),
        )
    })
    .await?;
    if let Some(s) = done {
        return Ok(s);
    }
    // The stream ended early (a proxy timeout, say): ask once more.
    api_json(get(format!("{base}/v1/exports/{id}")).send().await?).await
}
