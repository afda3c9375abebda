//! Untrusted SQL: queries only, limits, and pathological SQL answered with an error, never a crash.

use sluice_query::{Engine, EngineConfig, Error, Limit, Rejection};
use sluice_schemas::Registry;

use crate::sample_lake;

async fn engine(config: EngineConfig) -> Engine {
    Engine::open(sample_lake().to_str().expect("utf8"), Registry::builtin(), config).await.expect("engine")
}

async fn err(engine: &Engine, sql: &str) -> Error {
    match engine.query(sql, None).await {
        Ok(b) => panic!("{sql:.80} was allowed and returned {} batches", b.len()),
        Err(e) => e,
    }
}

#[tokio::test]
async fn only_queries_are_allowed() {
    let e = engine(EngineConfig::default()).await;
    for (sql, named) in [
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
        ("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'", "CREATE EXTERNAL"),
        ("DROP TABLE logs", "DROP TABLE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("INSERT INTO logs SELECT * FROM logs", "INSERT INTO"),
        ("COPY (SELECT 1) TO '/tmp/sluice-copy-test.csv'", "COPY (SELECT"),
        ("SET datafusion.execution.batch_size = 1", "SET DATAFUSION.EXECUTION.BATCH_SIZE"),
        ("BEGIN TRANSACTION", "BEGIN TRANSACTION"),
        ("EXPLAIN DROP TABLE logs", "DROP TABLE"),
    ] {
        let error = err(&e, sql).await;
        assert!(error.is_user_error(), "{sql}: {error:?}");
        let Error::Rejected(Rejection::NotAQuery { statement }) = &error else {
            panic!("{sql} was not refused as a statement that is not a query: {error:?}")
        };
        assert!(statement.starts_with(named), "{sql}: refused as {statement:?}");
    }
    let error = err(&e, "SELECT 1; DROP TABLE logs").await;
    assert!(matches!(error, Error::Rejected(Rejection::Statements { count: 2 })), "{error:?}");
    assert!(!std::path::Path::new("/tmp/sluice-copy-test.csv").exists());
    // File paths and URLs are not tables.
    for sql in
        ["SELECT * FROM '/etc/passwd'", "SELECT * FROM 'file:///etc/passwd'", "SELECT * FROM 's3://bucket/x.parquet'"]
    {
        let error = err(&e, sql).await;
        assert!(matches!(error, Error::Sql(_)), "{sql}: {error:?}");
    }
}

#[tokio::test]
async fn bad_sql_is_a_user_error_with_the_engines_message() {
    let e = engine(EngineConfig::default()).await;
    let error = err(&e, "SELEC 1").await;
    assert!(matches!(&error, Error::Sql(_)) && error.to_string().contains("SELEC"), "{error:?}");
    let error = err(&e, "SELECT nope FROM logs").await;
    assert!(matches!(&error, Error::Sql(_)) && error.to_string().contains("nope"), "{error:?}");
    let error = err(&e, "SELECT 1/0").await;
    assert!(matches!(&error, Error::Sql(_)) && error.is_user_error(), "{error:?}");
    let error = err(&e, "").await;
    assert!(matches!(error, Error::Rejected(Rejection::Empty)), "{error:?}");
}

#[tokio::test]
async fn limits_on_size_memory_and_time() {
    let e = engine(EngineConfig { max_sql_bytes: 100, ..EngineConfig::default() }).await;
    let error = err(&e, &format!("SELECT 1 {}", " ".repeat(200))).await;
    assert!(matches!(error, Error::Rejected(Rejection::TooLong { limit: 100, .. })), "{error:?}");
    // A tiny memory limit: a clean error, not a crash.
    let e = engine(EngineConfig { memory_limit: 64 * 1024, ..EngineConfig::default() }).await;
    let error =
        err(&e, "SELECT a.record_id, b.record_id FROM logs a JOIN logs b ON a.server = b.server ORDER BY 1, 2").await;
    assert!(matches!(error, Error::Limit(Limit::Memory { .. })), "{error:?}");
    // A timeout.
    let e = engine(EngineConfig { timeout: std::time::Duration::from_millis(1), ..EngineConfig::default() }).await;
    let error = err(&e, "SELECT count(*) FROM logs a, logs b").await;
    assert!(matches!(error, Error::Limit(Limit::Time { .. })), "{error:?}");
}

#[tokio::test]
async fn pathological_sql_is_an_error_not_a_crash() {
    let e = engine(EngineConfig { max_sql_bytes: 1 << 20, ..EngineConfig::default() }).await;
    let long_expr = format!("SELECT {} FROM logs", (0..5000).map(|i| i.to_string()).collect::<Vec<_>>().join(" + "));
    let error = err(&e, &long_expr).await;
    assert!(matches!(error, Error::Rejected(Rejection::TooManyOperators { .. })), "{error:?}");
    let nested = format!("SELECT {}1{} AS x", "(".repeat(5000), ")".repeat(5000));
    let error = err(&e, &nested).await;
    assert!(matches!(error, Error::Rejected(Rejection::TooDeep { .. })), "{error:?}");
    let unions = (0..3000).map(|i| format!("SELECT {i} AS x")).collect::<Vec<_>>().join(" UNION ALL ");
    let error = err(&e, &unions).await;
    assert!(matches!(error, Error::Rejected(Rejection::TooManyOperators { .. })), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_just_under_the_limits_runs() {
    let e = engine(EngineConfig { max_sql_bytes: 1 << 20, ..EngineConfig::default() }).await;
    // A long chain over a column is evaluated per row, not folded away at planning.
    let chain = format!("SELECT count(*) FROM logs WHERE {}", vec!["length(server) > 0"; 330].join(" AND "));
    let batches = e.query(&chain, None).await.expect("a long chain of conditions");
    assert_eq!(batches[0].num_rows(), 1);
    let sum = format!("SELECT sum(0 {}) AS s FROM logs", " + length(server)".repeat(990));
    e.query(&sum, None).await.expect("a long sum");
    let unions = (0..900).map(|i| format!("SELECT {i} AS x")).collect::<Vec<_>>().join(" UNION ALL ");
    let rows: usize = e.query(&unions, None).await.expect("900 unions").iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 900);
    let nested = format!("SELECT {}1{} AS x", "(".repeat(60), ")".repeat(60));
    e.query(&nested, None).await.expect("60 parentheses");
}
