//! `sluice import`: backfill NDJSON or CSV files straight into the lake, no server needed; or,
//! with `--server`, upload them to a `sluice serve` as import jobs (`POST /v1/imports`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Args;
use sluice_ingest::import::{ImportOutcome, import_file};
use sluice_lake::Lake;
use sluice_schemas::Registry;

use crate::{
    config::DEFAULT_LAKE,
    runtime::{api_json, default_memory_budget_mib, follow_events, init_logs, partitioner, runtime, spinner},
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
    /// Upload the files to this server as import jobs instead of writing the lake from here
    /// (the server enforces the token's organizations; the same content twice is a no-op).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Bearer token for --server (a token with logs:write).
    #[arg(long, env = "SLUICE_TOKEN", value_name = "JWT")]
    token: Option<String>,
    /// With --server: a URL the server calls when each job ends.
    #[arg(long, value_name = "URL", requires = "server")]
    webhook: Option<String>,
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
    if let Some(server) = &args.server {
        return rt.block_on(upload_all(server, &args));
    }
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

/// Uploads each file as an import job, follows it to its end, and says what it did; exit 1 when
/// records were rejected (the report's URL is printed).
async fn upload_all(server: &str, args: &ImportArgs) -> Result<ExitCode> {
    let base = server.trim_end_matches('/');
    let client = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10)).build()?;
    let mut rejected = 0;
    for f in &args.files {
        let status = upload(&client, base, args, f).await.with_context(|| format!("uploading {}", f.display()))?;
        let status = if status["state"] == "SUCCEEDED" || status["state"] == "FAILED" {
            status
        } else {
            follow(&client, base, args, &status).await?
        };
        let n = |k: &str| status[k].as_u64().unwrap_or(0);
        if status["state"] != "SUCCEEDED" {
            anyhow::bail!(
                "{}: the import job {} failed: {}",
                f.display(),
                status["id"].as_str().unwrap_or_default(),
                status["error"].as_str().unwrap_or("no reason given")
            );
        }
        eprintln!(
            "{}: job {}: {} records ({} accepted, {} rejected) into {} files",
            f.display(),
            status["id"].as_str().unwrap_or_default(),
            n("records_read"),
            n("accepted"),
            n("rejected"),
            n("files")
        );
        if n("rejected") > 0 {
            eprintln!(
                "  rejected rows (line, code, message): GET {base}{}",
                status["report_url"].as_str().unwrap_or_default()
            );
        }
        rejected += n("rejected");
    }
    Ok(if rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Streams one file to `POST /v1/imports` with a progress bar; the job's first status.
async fn upload(
    client: &reqwest::Client,
    base: &str,
    args: &ImportArgs,
    path: &std::path::Path,
) -> Result<serde_json::Value> {
    use futures::StreamExt as _;
    let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata().await?.len();
    let pb = crate::runtime::bar(Some(len), args.quiet, "uploading");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
    let lower = name.to_ascii_lowercase();
    let format = if lower.ends_with(".csv") || lower.ends_with(".csv.gz") { "csv" } else { "ndjson" };
    let sent = pb.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |c| {
        if let Ok(c) = c {
            sent.inc(c.len() as u64);
        }
    });
    let mut query = vec![("name", name.clone()), ("format", format.to_owned())];
    if let Some(w) = &args.webhook {
        query.push(("webhook_url", w.clone()));
    }
    let mut req = client
        .post(format!("{base}/v1/imports"))
        .query(&query)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    if lower.ends_with(".gz") {
        req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.with_context(|| format!("cannot reach {base}; is `sluice serve` running there?"))?;
    pb.finish_and_clear();
    let first = r.status() == reqwest::StatusCode::OK;
    let status = api_json(r).await?;
    if first {
        eprintln!(
            "{}: the same content was uploaded before (job {}); nothing to do",
            path.display(),
            status["id"].as_str().unwrap_or_default()
        );
    }
    Ok(status)
}

/// Follows a job's server-sent events to its end, with a spinner of the records read.
async fn follow(
    client: &reqwest::Client,
    base: &str,
    args: &ImportArgs,
    status: &serde_json::Value,
) -> Result<serde_json::Value> {
    let id = status["id"].as_str().context("the server did not return a job id")?;
    let pb = spinner(args.quiet, "{spinner} importing {pos} records");
    let get = |url: String| match &args.token {
        Some(t) => client.get(url).bearer_auth(t),
        None => client.get(url),
    };
    let r = get(format!("{base}/v1/imports/{id}/events")).send().await?;
    if !r.status().is_success() {
        return api_json(r).await;
    }
    let done =
        follow_events(r, |s| pb.set_position(s["records_read"].as_u64().unwrap_or(0))).await.with_context(|| {
            format!(
                "lost {base} while following the import job {id}; see GET {base}/v1/imports/{id}, or run the same \
             `sluice import --server` again (a job cut off by a restart is taken again, counting nothing twice)"
            )
        })?;
    pb.finish_and_clear();
    if let Some(s) = done {
        return Ok(s);
    }
    // The stream ended early (a proxy timeout, say): ask once more.
    api_json(get(format!("{base}/v1/imports/{id}")).send().await?).await
}
