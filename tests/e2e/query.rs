//! The query side as a user runs it: the HTTP API of `sluice serve` (queries, search, trace,
//! exports with server-sent events, webhooks and expiry), `sluice query` against DuckDB, and
//! `sluice export`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{
    Response, Serve, duckdb_python, flush, http, http_sink, post_ndjson, root, sluice_bin, wait_done,
};

/// A lake holding the committed sample (3,000 records), made once with `sluice import`.
fn sample_lake() -> &'static Path {
    static LAKE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LAKE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tmp");
            let lake = dir.path().join("lake");
            let out = Command::new(sluice_bin())
                .args(["import", "--quiet", "--lake", lake.to_str().expect("utf8")])
                .arg(root().join("sample-data/records.ndjson"))
                .output()
                .expect("import");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            (dir, lake)
        })
        .1
}

fn get(addr: &str, path: &str) -> Response {
    http(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn post_json(addr: &str, path: &str, body: &Value) -> Response {
    http(addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn start_query(addr: &str, sql: &str) -> String {
    let r = post_json(addr, "/v1/queries", &json!({ "sql": sql }));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().expect("id").to_owned()
}

/// All rows of a finished query, page by page; also returns the number of pages.
fn all_pages(addr: &str, id: &str, page_size: usize) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/queries/{id}/results?page_size={page_size}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = get(addr, &path);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        let got = page["rows"].as_array().expect("rows");
        assert!(got.len() <= page_size);
        rows.extend(got.iter().cloned());
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (rows, pages),
        }
    }
}

fn error_code(r: &Response) -> String {
    r.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn query_api_runs_pages_stably_and_cancels() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let addr = &serve.addr;
    let id = start_query(addr, "SELECT record_id, logtype, time, events FROM logs ORDER BY record_id");
    let status = wait_done(addr, &format!("/v1/queries/{id}"));
    assert_eq!(status["state"], "SUCCEEDED", "{status}");
    assert_eq!(status["rows"], 3000);
    assert!(status["bytes_scanned"].as_u64().unwrap_or(0) > 0, "{status}");
    assert_eq!(status["files_scanned"], 1980, "{status}");
    assert!(status["elapsed_ms"].is_u64());
    assert_eq!(status["columns"][0], json!({"name": "record_id", "type": "Utf8"}));

    let (rows, pages) = all_pages(addr, &id, 700);
    assert_eq!(pages, 5);
    assert_eq!(rows.len(), 3000);
    let ids: Vec<&str> = rows.iter().map(|r| r["record_id"].as_str().expect("record_id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "rows out of order or repeated across pages");
    assert!(rows.iter().any(|r| r["events"].is_array()), "nested columns come back as JSON");
    // The result is kept: paging again gives the same rows, whatever page size.
    let (again, _) = all_pages(addr, &id, 1000);
    assert_eq!(again, rows);

    // A cursor is opaque and bound to its query.
    let other = start_query(addr, "SELECT 1 AS x");
    wait_done(addr, &format!("/v1/queries/{other}"));
    let first = get(addr, &format!("/v1/queries/{id}/results?page_size=10")).json();
    let c = first["next_cursor"].as_str().expect("cursor");
    let r = get(addr, &format!("/v1/queries/{other}/results?cursor={c}"));
    assert_eq!((r.status, error_code(&r).as_str()), (400, "invalid_request"));
    let r = get(addr, &format!("/v1/queries/{id}/results?cursor=garbage"));
    assert_eq!(r.status, 400);
    assert_eq!(get(addr, "/v1/queries/0123456789abcdef/results").status, 404);

    // Cancellation of a long query.
    let slow = start_query(addr, "SELECT sum(value) FROM generate_series(1, 100000000000)");
    std::thread::sleep(Duration::from_millis(200));
    let r = http(addr, "DELETE", &format!("/v1/queries/{slow}"), &[], b"").expect("DELETE");
    assert_eq!(r.status, 200);
    let s = wait_done(addr, &format!("/v1/queries/{slow}"));
    assert_eq!(s["state"], "CANCELLED", "{s}");
    assert_eq!(s["error"]["code"], "cancelled");
    let r = get(addr, &format!("/v1/queries/{slow}/results"));
    assert_eq!(r.status, 409);
}

#[test]
fn query_api_answers_bad_and_hostile_sql_with_400() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let addr = &serve.addr;
    let cases = [
        ("SELEC 1", "invalid_sql", "SELEC"),
        ("SELECT nope FROM logs", "invalid_sql", "nope"),
        ("DROP TABLE logs", "rejected", "Only queries"),
        ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "rejected", "Only queries"),
        ("COPY (SELECT 1) TO '/tmp/sluice-e2e-copy.csv'", "rejected", "Only queries"),
        ("INSERT INTO logs SELECT * FROM logs", "rejected", "Only queries"),
        ("SET datafusion.execution.batch_size = 1", "rejected", "Only queries"),
        ("SELECT * FROM '/etc/passwd'", "invalid_sql", "passwd"),
    ];
    for (sql, code, message) in cases {
        for path in ["/v1/queries", "/v1/exports"] {
            let r = post_json(addr, path, &json!({ "sql": sql }));
            assert_eq!(r.status, 400, "{sql}: {}", String::from_utf8_lossy(&r.body));
            let e = r.json();
            assert_eq!(e["error"]["code"], code, "{sql}: {e}");
            assert!(e["error"]["message"].as_str().unwrap_or_default().contains(message), "{sql}: {e}");
        }
    }
    assert!(!Path::new("/tmp/sluice-e2e-copy.csv").exists());
    let huge = format!("SELECT {} FROM logs", (0..5000).map(|i| i.to_string()).collect::<Vec<_>>().join(" + "));
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let unions = (0..3000).map(|i| format!("SELECT {i}")).collect::<Vec<_>>().join(" UNION ALL ");
    let long = format!("SELECT 1 -- {}", "x".repeat(100_000));
    for sql in [huge, deep, unions, long] {
        let r = post_json(addr, "/v1/queries", &json!({ "sql": sql }));
        assert_eq!((r.status, error_code(&r).as_str()), (400, "rejected"), "{}", String::from_utf8_lossy(&r.body));
    }
    // Not JSON, or not the right JSON: 400 with a code, not a bare text.
    let r = http(addr, "POST", "/v1/queries", &[("Content-Type", "application/json")], b"{\"sql\": 1}").expect("post");
    assert_eq!((r.status, error_code(&r).as_str()), (400, "invalid_request"));
    let r = post_json(addr, "/v1/exports", &json!({"sql": "SELECT 1", "search": {"q": "x"}}));
    assert_eq!((r.status, error_code(&r).as_str()), (400, "invalid_request"));
    // The server is still up.
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn search_is_newest_first_paged_and_safe_with_hostile_text() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let addr = &serve.addr;
    let range = "from=2025-01-01T00:00:00Z&to=2025-01-03T00:00:00Z";
    let mut rows = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = get(addr, &format!("/v1/search?q=RETRYING&{range}&page_size=100{cursor}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        rows.extend(page["rows"].as_array().expect("rows").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    // The same count as SQL over the four searched columns, case-insensitively.
    let n = query_json(
        "SELECT count(*) AS n FROM logs WHERE description ILIKE '%retrying%' OR action ILIKE '%retrying%' \
         OR caller ILIKE '%retrying%' OR detail ILIKE '%retrying%'",
    );
    assert_eq!(rows.len() as u64, n[0]["n"].as_u64().expect("n"));
    assert!(rows.len() > 100, "the search must span pages to test paging");
    let times: Vec<&str> = rows.iter().map(|r| r["time"].as_str().expect("time")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "not newest first");
    // Page by page, window by window (the newest hour first, then wider ones), the rows are the
    // one query's rows in the one query's order.
    let ordered = query_json(
        "SELECT record_id FROM logs WHERE description ILIKE '%retrying%' OR action ILIKE '%retrying%' \
         OR caller ILIKE '%retrying%' OR detail ILIKE '%retrying%' ORDER BY time DESC, record_id",
    );
    let expected: Vec<&str> = ordered.iter().map(|r| r["record_id"].as_str().expect("id")).collect();
    let got: Vec<&str> = rows.iter().map(|r| r["record_id"].as_str().expect("id")).collect();
    assert_eq!(got, expected);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["record_id"].as_str().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rows.len(), "a record appeared on two pages");

    // Filters.
    let r = get(addr, &format!("/v1/search?q=retrying&{range}&logtype=agw&environment=prod&page_size=1000")).json();
    let filtered = r["rows"].as_array().expect("rows");
    assert!(!filtered.is_empty());
    assert!(filtered.iter().all(|r| r["logtype"] == "agw" && r["environment"] == "prod"));

    // Hostile text is text: quotes, LIKE wildcards, SQL.
    for q in ["%27%20OR%201%3D1%20--", "%25", "_", "%5C", "'); DROP TABLE logs; --"] {
        let r = get(addr, &format!("/v1/search?q={}&{range}", q.replace(' ', "%20").replace(';', "%3B")));
        assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["rows"].as_array().map(Vec::len), Some(0), "{q} matched records");
    }
    let r = get(addr, "/v1/search?q=x&from=yesterday");
    assert_eq!((r.status, error_code(&r).as_str()), (400, "invalid_request"));
}

#[test]
fn trace_returns_a_transaction_across_log_types_in_time_order() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let addr = &serve.addr;
    // The transaction with the most records.
    let top = query_json(
        "SELECT transaction_id, count(*) AS n, count(DISTINCT logtype) AS types FROM logs \
         WHERE transaction_id IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    );
    let tx = top[0]["transaction_id"].as_str().expect("tx");
    assert!(top[0]["types"].as_u64() > Some(1), "the sample should have cross-type transactions");
    let r = get(addr, &format!("/v1/trace/{tx}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let t = r.json();
    let records = t["records"].as_array().expect("records");
    assert_eq!(records.len() as u64, top[0]["n"].as_u64().expect("n"));
    let times: Vec<&str> = records.iter().map(|r| r["time"].as_str().expect("time")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "records not in time order");
    let events = t["events"].as_array().expect("events");
    let times: Vec<&str> = events.iter().map(|r| r["time"].as_str().expect("time")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "events not in time order");
    assert_eq!(get(addr, "/v1/trace/no-such-transaction").status, 404);
    assert_eq!(get(addr, "/v1/trace/'%20OR%20'1'%3D'1").status, 404);
}

/// A one-shot HTTP receiver of a webhook: the body of the first POST.
/// Parses CSV (RFC 4180) into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(row.is_empty() && field.is_empty(), "CSV does not end with CRLF");
    out
}

/// A JSON value as the CSV renders it.
fn as_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn export_csv_matches_the_query_and_arrives_by_events_and_webhook() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let addr = &serve.addr;
    let sql = "SELECT record_id, time, organization, logtype, description, success, status_code, events, attributes \
               FROM logs ORDER BY record_id";
    let (hook, hook_rx) = http_sink();
    let r = post_json(addr, "/v1/exports", &json!({"sql": sql, "notify": {"webhook_url": hook}}));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_owned();

    // Server-sent events: progress, then one `complete` with the final status; then the stream ends.
    let sse = get(addr, &format!("/v1/exports/{id}/events"));
    assert_eq!(sse.headers.get("content-type").map(String::as_str), Some("text/event-stream"));
    let text = String::from_utf8(sse.body).expect("utf8");
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).expect("event JSON")))
        })
        .collect();
    let (last, done) = events.last().expect("events");
    assert_eq!(*last, "complete", "{text}");
    assert_eq!(done["state"], "SUCCEEDED");
    assert_eq!(done["progress"], 1.0);
    assert!(events[..events.len() - 1].iter().all(|(n, _)| *n == "progress"));

    let status = get(addr, &format!("/v1/exports/{id}")).json();
    assert_eq!(status["rows"], 3000);
    assert_eq!(status["download_url"], format!("/v1/exports/{id}/download"));
    let expires =
        chrono::DateTime::parse_from_rfc3339(status["expires_at"].as_str().expect("expires_at")).expect("time");
    let ttl = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(ttl > chrono::Duration::hours(23) && ttl <= chrono::Duration::hours(24), "default TTL is 24 h: {ttl}");

    let hooked = hook_rx.recv_timeout(Duration::from_secs(30)).expect("the webhook arrived");
    assert_eq!(hooked["id"], id.as_str());
    assert_eq!(hooked["state"], "SUCCEEDED");
    assert_eq!(hooked["download_url"], status["download_url"]);

    let d = get(addr, &format!("/v1/exports/{id}/download"));
    assert_eq!(d.status, 200);
    assert!(d.headers["content-type"].starts_with("text/csv"));
    assert!(d.headers["content-disposition"].contains("attachment"));
    assert_eq!(d.body.len() as u64, status["bytes"].as_u64().expect("bytes"));
    let csv = parse_csv(&String::from_utf8(d.body).expect("utf8"));

    // The same query's rows from the query API, rendered as cells, are the CSV's rows.
    let q = start_query(addr, sql);
    wait_done(addr, &format!("/v1/queries/{q}"));
    let (rows, _) = all_pages(addr, &q, 1000);
    let header: Vec<&str> = sql["SELECT ".len()..sql.find(" FROM").expect("FROM")].split(", ").map(str::trim).collect();
    assert_eq!(csv[0], header);
    assert_eq!(csv.len() - 1, rows.len());
    for (cells, row) in csv[1..].iter().zip(&rows) {
        for (cell, name) in cells.iter().zip(&header) {
            let want = as_cell(&row[*name]);
            // Formula protection prefixes text cells that a spreadsheet would run with `'`.
            let risky = row[*name].is_string() && want.starts_with(['=', '+', '-', '@', '\t', '\r']);
            let expected = if risky { format!("'{want}") } else { want };
            assert_eq!(*cell, expected, "{name}");
        }
        assert!(cells[1].ends_with('Z') && cells[1].contains('T'), "ISO 8601 UTC time: {}", cells[1]);
    }
    // Not an export: 404; not finished: 409.
    assert_eq!(get(addr, &format!("/v1/exports/{q}")).status, 404);
    assert_eq!(get(addr, "/v1/exports/nope/download").status, 404);
}

#[test]
fn export_neutralises_formulas_unless_told_not_to_and_expires() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &["--export-ttl", "2"]);
    let addr = &serve.addr;
    let risky = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-3", "@SUM(A1)", "\tcmd", "\rcmd", "plain"];
    let body: String = risky
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({"organizationID": 7, "environment": "prod", "logType": "app", "time": format!("2025-03-01T10:00:0{i}Z"),
                   "description": d, "server": "s"})
            .to_string()
                + "\n"
        })
        .collect();
    let r = post_ndjson(addr, body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    flush(addr);
    let sql = "SELECT description, -1 AS n FROM logs ORDER BY time";
    let export = |protect: Option<bool>| {
        let mut req = json!({ "sql": sql });
        if let Some(p) = protect {
            req["protect_formulas"] = json!(p);
        }
        let r = post_json(addr, "/v1/exports", &req);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let id = r.json()["id"].as_str().expect("id").to_owned();
        assert_eq!(wait_done(addr, &format!("/v1/exports/{id}"))["state"], "SUCCEEDED");
        let d = get(addr, &format!("/v1/exports/{id}/download"));
        (id, parse_csv(&String::from_utf8(d.body).expect("utf8")))
    };
    let (id, protected) = export(None);
    let cells: Vec<&str> = protected[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(cells, ["'=HYPERLINK(\"http://evil\",\"x\")", "'+1+2", "'-3", "'@SUM(A1)", "'\tcmd", "'\rcmd", "plain"]);
    assert!(protected[1..].iter().all(|r| r[1] == "-1"), "numbers are not text and stay as they are");
    let (_, raw) = export(Some(false));
    let cells: Vec<&str> = raw[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(cells, risky);

    // Expiry: after the TTL the file is gone and the export is unknown.
    // Each server keeps its results in a folder of its own under the results folder.
    let results = dir.path().join("_results");
    let file = std::fs::read_dir(&results)
        .expect("results folder")
        .flatten()
        .map(|server| server.path().join(format!("{id}.csv")))
        .find(|f| f.exists())
        .unwrap_or_else(|| panic!("{id}.csv missing under {}", results.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while file.exists() {
        assert!(Instant::now() < deadline, "the export outlived its TTL");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(addr, &format!("/v1/exports/{id}")).status, 404);
    assert_eq!(get(addr, &format!("/v1/exports/{id}/download")).status, 404);
}

/// Peak resident memory of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

#[test]
fn export_memory_does_not_grow_with_rows() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let addr = &serve.addr;
    let run = |copies: u32| {
        let sql = format!("SELECT l.*, g.value AS copy FROM logs l CROSS JOIN generate_series(1, {copies}) g");
        let r = post_json(addr, "/v1/exports", &json!({ "sql": sql }));
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let id = r.json()["id"].as_str().expect("id").to_owned();
        let s = wait_done(addr, &format!("/v1/exports/{id}"));
        assert_eq!(s["state"], "SUCCEEDED", "{s}");
        assert_eq!(s["rows"], 3000 * u64::from(copies));
        s["bytes"].as_u64().expect("bytes")
    };
    let small = run(4);
    let after_small = peak_rss_kib(serve.child.id());
    let big = run(48);
    let after_big = peak_rss_kib(serve.child.id());
    assert!(big > 120 << 20, "the big export must be big to prove anything: {big} bytes");
    let grew = after_big.saturating_sub(after_small) * 1024;
    // A result held in memory would grow the peak by at least the extra CSV bytes (more as Arrow
    // or JSON); a streamed one grows it by what the allocator and DataFusion's pools keep, which
    // on these machines is 20-27% of the 119 MiB extra here. Half tells the two apart with room.
    assert!(
        grew < (big - small) / 2,
        "peak RSS grew by {grew} bytes for {} more bytes of CSV: memory follows the result size",
        big - small
    );
}

/// `sluice query --format json` output.
fn query_json(sql: &str) -> Vec<Value> {
    let out = Command::new(sluice_bin())
        .args(["query", "--quiet", "--format", "json", "--lake", sample_lake().to_str().expect("utf8"), "-c", sql])
        .output()
        .expect("sluice query");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Analyst queries written in SQL that DataFusion and DuckDB both speak.
const ANALYST_QUERIES: &[&str] = &[
    "SELECT logtype, count(*) AS n FROM logs GROUP BY logtype ORDER BY logtype",
    "SELECT organization, environment, count(*) AS n, sum(CASE WHEN success THEN 0 ELSE 1 END) AS failures \
     FROM logs GROUP BY organization, environment ORDER BY organization, environment",
    "SELECT record_id, logtype, server, action FROM logs \
     WHERE organization = '1001' AND year = 2025 AND month = 1 AND day = 1 AND hour = 7 ORDER BY record_id",
    "SELECT caller, count(*) AS n FROM logs WHERE caller IS NOT NULL GROUP BY caller ORDER BY n DESC, caller LIMIT 5",
    "SELECT count(*) AS n FROM logs WHERE description LIKE '%retrying%' OR caller LIKE '%transfer.ts%'",
    "SELECT hour, count(DISTINCT transaction_id) AS tx FROM logs WHERE day = 1 GROUP BY hour ORDER BY hour",
    "SELECT server, max(length(description)) AS longest, min(record_id) AS first FROM logs GROUP BY server ORDER BY server",
    "SELECT logtype, count(*) AS n FROM logs WHERE time >= '2025-01-01T10:00:00Z' AND time < '2025-01-01T12:30:00Z' \
     GROUP BY logtype ORDER BY logtype",
    "SELECT logtype, sum(array_length(events)) AS events FROM logs GROUP BY logtype ORDER BY logtype",
    "SELECT environment, day, avg(status_code) AS avg_status FROM logs WHERE status_code IS NOT NULL \
     GROUP BY environment, day ORDER BY environment, day",
    // Equalities on every leading partition column, the integer ones included (their folders
    // are zero-padded: `month=01`), and pinned hours that the scan lists folder by folder.
    "SELECT logtype, count(*) AS n FROM logs WHERE environment = 'prod' AND organization = '1001' \
     AND logtype = 'agw' AND year = 2025 AND month = 1 GROUP BY logtype",
    "SELECT logtype, count(*) AS n FROM logs WHERE organization = '1000' AND hour IN (7, 10, 11, 12) AND day = 1 \
     AND logtype <> 'hub' GROUP BY logtype ORDER BY logtype",
    "SELECT count(*) AS n FROM logs WHERE 2025 = year AND 1 = month AND day = 1 AND hour = 99",
];

#[test]
fn analyst_queries_answer_as_duckdb_does() {
    let python = duckdb_python();
    let lake = sample_lake();
    let script = format!(
        "import duckdb, json, sys\n\
         con = duckdb.connect()\n\
         con.sql(\"SET TimeZone = 'UTC'\")\n\
         con.sql(\"CREATE VIEW logs AS SELECT * FROM read_parquet('{}/logs/**/*.parquet', hive_partitioning = true, \
         hive_types = {{'environment': 'VARCHAR', 'organization': 'VARCHAR', 'logtype': 'VARCHAR', 'year': 'BIGINT', \
         'month': 'BIGINT', 'day': 'BIGINT', 'hour': 'BIGINT'}})\")\n\
         out = []\n\
         for q in json.load(sys.stdin):\n\
         \x20   r = con.sql(q)\n\
         \x20   out.append([dict(zip(r.columns, row)) for row in r.fetchall()])\n\
         print(json.dumps(out, default=str))",
        lake.display()
    );
    let mut child = Command::new(&python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().expect("stdin").write_all(json!(ANALYST_QUERIES).to_string().as_bytes()).expect("write");
    let out = child.wait_with_output().expect("duckdb");
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<Vec<Value>> = serde_json::from_slice(&out.stdout).expect("json");
    for (sql, want) in ANALYST_QUERIES.iter().zip(theirs) {
        let got = query_json(sql);
        assert!(!want.is_empty(), "{sql}: DuckDB found nothing; the comparison would prove nothing");
        assert_eq!(got.len(), want.len(), "{sql}");
        for (g, w) in got.iter().zip(&want) {
            let (g, w) = (g.as_object().expect("object"), w.as_object().expect("object"));
            assert_eq!(g.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>(), "{sql}");
            for (k, gv) in g {
                let wv = &w[k];
                let same = match (gv.as_f64(), wv.as_f64()) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                    _ => gv == wv,
                };
                assert!(same, "{sql}: column {k}: sluice {gv} vs DuckDB {wv}");
            }
        }
    }
}

#[test]
fn export_command_writes_the_same_csv_here_and_through_a_server() {
    let serve = Serve::start(sample_lake(), &["--query-only"]);
    let dir = tempfile::tempdir().expect("tmp");
    let sql = "SELECT record_id, time, description, events FROM logs WHERE logtype = 'web' ORDER BY record_id";
    let export = |extra: &[&str], name: &str| {
        let path = dir.path().join(name);
        let out = Command::new(sluice_bin())
            .args(["export", "--quiet", "--lake", sample_lake().to_str().expect("utf8"), "-c", sql, "-o"])
            .arg(&path)
            .args(extra)
            .output()
            .expect("sluice export");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&path).expect("csv")
    };
    let here = export(&[], "here.csv");
    let there = export(&["--server", &serve.url()], "there.csv");
    assert_eq!(here, there);
    let n = query_json("SELECT count(*) AS n FROM logs WHERE logtype = 'web'")[0]["n"].as_u64().expect("n");
    assert_eq!(parse_csv(&here).len() as u64, n + 1);

    // A search export, through the server.
    let path = dir.path().join("search.csv");
    let out = Command::new(sluice_bin())
        .args(["export", "--quiet", "--search", "retrying", "--from", "2025-01-01T00:00:00Z"])
        .args(["--to", "2025-01-03T00:00:00Z", "--logtype", "agw", "--server", &serve.url(), "-o"])
        .arg(&path)
        .output()
        .expect("sluice export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = parse_csv(&std::fs::read_to_string(&path).expect("csv"));
    assert!(rows.len() > 1);
    let logtype = rows[0].iter().position(|c| c == "logtype").expect("logtype column");
    assert!(rows[1..].iter().all(|r| r[logtype] == "agw"));

    // Bad SQL: a clear error, exit status 1, no file left behind.
    let path = dir.path().join("bad.csv");
    let out = Command::new(sluice_bin())
        .args(["export", "--quiet", "-c", "SELEC 1", "--server", &serve.url(), "-o"])
        .arg(&path)
        .output()
        .expect("sluice export");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SELEC"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!path.exists() && !path.with_extension("csv.part").exists());
}
