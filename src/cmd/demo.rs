//! `sluice demo`: a tour of the embedded pipeline on this machine.

use std::{io, process::ExitCode, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use sluice_auth::token;
use sluice_producer::http::{PublishOptions, Publisher};
use sluice_query::{Engine, EngineConfig};
use sluice_schemas::Registry;

use crate::{
    config::{DEFAULT_LAKE, DEFAULT_LISTEN, Partial},
    runtime::{bar, init_logs, partitioner, runtime},
    server::{Server, query_routes, shutdown_signal},
};

/// The queries `sluice demo` runs.
const DEMO_QUERIES: &[(&str, &str)] = &[
    ("records by log type", "SELECT logtype, count(*) AS records FROM logs GROUP BY logtype ORDER BY records DESC"),
    (
        "error rate by organization",
        "SELECT organization, count(*) AS records, \
         round(100.0 * avg(CASE WHEN success = false THEN 1 ELSE 0 END), 1) AS failed_pct \
         FROM logs GROUP BY organization ORDER BY organization",
    ),
    (
        "slowest connectors (agw)",
        "SELECT connector, count(*) AS calls, max(duration_ms) AS slowest_ms FROM logs_agw \
         WHERE connector IS NOT NULL GROUP BY connector ORDER BY slowest_ms DESC LIMIT 5",
    ),
    (
        "a request's timeline across servers (events)",
        "SELECT time, server, action, success FROM events WHERE transaction_id = \
         (SELECT transaction_id FROM events ORDER BY time DESC LIMIT 1) ORDER BY time",
    ),
];

/// Flags of `sluice demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Lake folder.
    #[arg(long, default_value = DEFAULT_LAKE, value_name = "DIR")]
    lake: String,
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// How many sample records to publish.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Leave after the tour instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

/// The organizations a tenant's token sees through the search API since `from`.
async fn tenant_view(url: &str, token: &str, from: chrono::DateTime<chrono::Utc>) -> Result<Vec<String>> {
    let from = from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/search?page_size=1000&from={from}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = r.status();
    let v: serde_json::Value = serde_json::from_str(&r.text().await?)?;
    if !status.is_success() {
        bail!("the search as a tenant failed: {status} {v}");
    }
    let mut orgs: Vec<String> = v["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["organization"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    orgs.sort();
    orgs.dedup();
    Ok(orgs)
}

/// `sluice demo`.
pub fn run(args: DemoArgs, registry: Registry) -> Result<ExitCode> {
    init_logs("warn");
    // The demo serves with authentication on, like `sluice serve`: with SLUICE_JWT_SECRET when
    // set, otherwise with a secret made up for this run.
    let secret = std::env::var("SLUICE_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()));
    let settings = Partial {
        lake: Some(args.lake.clone()),
        listen: Some(args.listen.clone()),
        buffer_interval_secs: Some(5),
        jwt_secret: Some(secret.clone()),
        ..Partial::default()
    }
    .validate()?;
    let hour = Duration::from_secs(3600);
    let mint = |sub: &str, org: &str, roles: &[&str]| -> Result<String> {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let claims = token::claims(sub, &[org.to_owned()], &roles, 12 * hour)?;
        sluice_auth::token::mint(secret.as_bytes(), &claims).map_err(anyhow::Error::from)
    };
    let operator = mint("demo-operator", "*", &["admin"])?;
    let tenant_org = "1000";
    let tenant = mint("demo-analyst-1000", tenant_org, &["logs:read", "exports:write"])?;
    let p = partitioner(registry.clone(), None);
    runtime()?.block_on(async {
        println!("sluice demo — the embedded pipeline on this machine\n");
        let server = Server::start(&settings, p, query_routes(&settings, registry.clone(), None).await?).await?;
        let url = format!("http://{}", server.addr);
        println!("1. serving the ingest API at {url} (write-ahead log in {})", settings.wal_dir.display());

        let hours = 6;
        let now = chrono::Utc::now();
        let start = now - chrono::Duration::hours(hours) - chrono::Duration::minutes(1);
        let mut data = Vec::new();
        let counts = sluice_sample_data::generate(
            sluice_sample_data::Options {
                records: args.records,
                seed: now.timestamp() as u64,
                orgs: 4,
                hours: hours as u32,
                start,
                bad_fraction: 0.01,
            },
            &mut data,
        )?;
        println!(
            "2. generated {} sample records over the last {hours} hours ({} deliberately bad)",
            counts.good + counts.bad,
            counts.bad
        );

        let publisher =
            Publisher::new(PublishOptions { url: url.clone(), token: Some(operator.clone()), ..PublishOptions::default() })?;
        let pb = bar(Some(data.len() as u64), false, "publishing");
        let summary = publisher
            .publish(io::Cursor::new(data), |s| {
                pb.set_position(s.bytes);
                pb.set_message(format!("{} accepted", s.accepted));
            })
            .await?;
        pb.finish_and_clear();
        println!(
            "3. published them with POST /v1/logs and an operator token: {} accepted, {} rejected with reason codes:",
            summary.accepted,
            summary.rejected_total()
        );
        for (code, n) in &summary.rejected {
            println!("     {code:<26} {n}");
        }

        let t = std::time::Instant::now();
        server.pipeline.flush().await?;
        println!("4. flushed the buffers to Parquet in {:.1} s", t.elapsed().as_secs_f64());
        let stats = server.pipeline.lake().stats().await?;
        let lake = server.pipeline.lake().url().to_owned();
        println!("\nThe lake at {lake}:");
        println!("   {:<10} {:>6} {:>9}", "logtype", "files", "rows");
        for (lt, (files, rows)) in &stats.by_logtype {
            println!("   {lt:<10} {files:>6} {rows:>9}");
        }
        println!(
            "   errors/processing-failed: {} rejected records in {} files (replay them with `sluice replay --lake {lake}`)",
            stats.error_records, stats.error_files
        );
        let engine = Engine::open(&lake, registry, EngineConfig::default()).await?;
        println!("\nExample queries (sluice query --lake {lake} -c '…'):");
        for (title, sql) in DEMO_QUERIES {
            println!("\n-- {title}\n{sql};");
            let batches = engine.query(sql, Some(20)).await?;
            println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
        }
        let seen = tenant_view(&url, &tenant, start).await?;
        println!(
            "\nTenant isolation: a token for organization {tenant_org} (roles logs:read, exports:write) searches the\n\
             same hours through GET /v1/search and sees organizations {seen:?} only."
        );
        println!("\nTokens for this run (signed with {}):", if std::env::var("SLUICE_JWT_SECRET").is_ok() { "SLUICE_JWT_SECRET" } else { "a secret made up for this run" });
        println!("   export OPERATOR='{operator}'");
        println!("   export ANALYST='{tenant}'   # organization {tenant_org} only");
        println!("\nTry it:");
        println!("   curl -s {url}/metrics | grep sluice_records");
        println!(
            "   echo '{{\"organizationID\":\"1000\",\"environment\":\"dev\",\"logType\":\"web\",\"time\":\"{}\",\"description\":\"hello\"}}' | \\\n     curl -s -H \"authorization: Bearer $OPERATOR\" -H 'content-type: application/x-ndjson' --data-binary @- {url}/v1/logs",
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        println!("   sluice generate --records 1000 --start {} | sluice publish --to {url} --token \"$OPERATOR\"", start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        println!("   sluice query --lake {lake}            # an interactive SQL prompt (local files: no token)");
        println!(
            "   curl -s -X POST {url}/v1/exports -H \"authorization: Bearer $ANALYST\" -H 'content-type: application/json' -d '{{\"sql\": \"SELECT * FROM logs_agw\"}}'"
        );
        println!(
            "   curl -s -H \"authorization: Bearer $ANALYST\" '{url}/v1/search?q=timeout&from={}'",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        println!("   SLUICE_JWT_SECRET=… sluice token --org 1001 --roles logs:read --ttl 8h   # more tokens");
        if args.exit {
            server.stop().await?;
            println!("\nstopped (--exit).");
        } else {
            println!("\nServing until Ctrl-C…");
            shutdown_signal().await;
            println!("\nshutting down, flushing buffers…");
            server.stop().await?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
