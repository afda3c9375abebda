//! Golden results of analyst queries over the committed sample data. The expected outputs are in
//! `tests/query/golden/*.csv`; regenerate with `SLUICE_BLESS=1 cargo test -p sluice-query` and
//! review the diff.

use std::path::PathBuf;

use sluice_query::{Engine, EngineConfig, format::CsvWriter};
use sluice_schemas::Registry;

use crate::sample_lake;

/// The analyst queries: name and SQL. Every query orders its result fully.
pub const QUERIES: &[(&str, &str)] = &[
    ("count_by_type", "SELECT logtype, count(*) AS n FROM logs GROUP BY logtype ORDER BY logtype"),
    (
        "error_rate_by_org_hour",
        "SELECT organization, year, month, day, hour, count(*) AS n, \
         sum(CASE WHEN success = false THEN 1 ELSE 0 END) AS failures \
         FROM logs GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 LIMIT 20",
    ),
    (
        "one_org_one_hour",
        "SELECT record_id, time, logtype, server, action FROM logs \
         WHERE organization = '1001' AND year = 2025 AND month = 1 AND day = 1 AND hour = 7 ORDER BY record_id",
    ),
    (
        "time_range",
        "SELECT logtype, count(*) AS n FROM logs WHERE time >= TIMESTAMP '2025-01-01T10:00:00Z' \
         AND time < TIMESTAMP '2025-01-01T12:00:00Z' GROUP BY logtype ORDER BY logtype",
    ),
    (
        "text_search_like",
        "SELECT count(*) AS n FROM logs WHERE description LIKE '%retrying%' OR caller LIKE '%transfer.ts%'",
    ),
    (
        "top_callers",
        "SELECT caller, count(*) AS n FROM logs WHERE caller IS NOT NULL GROUP BY caller ORDER BY n DESC, caller LIMIT 5",
    ),
    (
        "agw_slow_calls",
        "SELECT connector, count(*) AS n, max(duration_ms) AS slowest FROM logs_agw \
         WHERE status_code >= 500 GROUP BY connector ORDER BY connector",
    ),
    (
        "events_by_server",
        "SELECT server, count(*) AS n, sum(CASE WHEN success THEN 1 ELSE 0 END) AS ok FROM events GROUP BY server ORDER BY server",
    ),
    (
        "transaction_trace",
        "SELECT logtype, time, server, action FROM logs WHERE transaction_id = \
         (SELECT transaction_id FROM logs WHERE transaction_id IS NOT NULL \
          GROUP BY transaction_id ORDER BY count(*) DESC, transaction_id LIMIT 1) \
         ORDER BY time, logtype",
    ),
    ("attributes_json_text", "SELECT count(*) AS n FROM logs WHERE attributes LIKE '%requestSize%'"),
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/query/golden")
}

/// Runs a query and renders it as CSV.
pub async fn csv_of(engine: &Engine, sql: &str) -> String {
    let batches = engine.query(sql, None).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut w = CsvWriter::csv(Vec::new(), false);
    for b in &batches {
        w.write(b).expect("csv");
    }
    String::from_utf8(w.finish().expect("csv")).expect("utf8")
}

#[tokio::test]
async fn golden_results() {
    let engine = Engine::open(sample_lake().to_str().expect("utf8"), Registry::builtin(), EngineConfig::default())
        .await
        .expect("engine");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    std::fs::create_dir_all(golden_dir()).expect("mkdir");
    for (name, sql) in QUERIES {
        let got = csv_of(&engine, sql).await;
        let path = golden_dir().join(format!("{name}.csv"));
        if bless {
            std::fs::write(&path, &got).expect("bless");
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with SLUICE_BLESS=1", path.display()));
        assert_eq!(got, want, "{name}: result differs from {}", path.display());
        assert!(got.lines().count() > 1, "{name} returned no rows; the golden test would prove nothing");
    }
}

#[tokio::test]
async fn tables_and_columns() {
    let engine = Engine::open(sample_lake().to_str().expect("utf8"), Registry::builtin(), EngineConfig::default())
        .await
        .expect("engine");
    let tables =
        csv_of(&engine, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'lake' ORDER BY 1")
            .await;
    assert_eq!(
        tables,
        "table_name\r\nevents\r\nlogs\r\nlogs_agw\r\nlogs_app\r\nlogs_connector\r\nlogs_container\r\nlogs_hub\r\nlogs_otel\r\nlogs_web\r\n"
    );
    let cols = csv_of(
        &engine,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'logs' AND column_name IN \
         ('environment', 'year', 'time', 'events') ORDER BY 1",
    )
    .await;
    assert!(cols.contains("environment,Utf8"), "{cols}");
    assert!(cols.contains("year,Int64"), "{cols}");
    assert!(cols.contains("time,\"Timestamp(µs, \"\"UTC\"\")\""), "{cols}");
    let n = csv_of(&engine, "SELECT count(*) AS n FROM logs").await;
    assert_eq!(n, "n\r\n3000\r\n");
    let web = csv_of(&engine, "SELECT count(*) AS n FROM logs_web WHERE logtype <> 'web'").await;
    assert_eq!(web, "n\r\n0\r\n");
}
