//! The shippers' protocols (DESIGN.md §9) against `sluice serve` as users run them: the
//! OpenTelemetry Python SDK's OTLP/HTTP exporter, the official Elasticsearch Python client, and
//! Firehose HTTP endpoint delivery with requests shaped as AWS documents them.

use std::{io::Write as _, process::Command};

use serde_json::{Value, json};

use crate::{
    auth::{AUDIENCE, secret_env, token},
    support::{Serve, duckdb_python, error_records, http, lake_rows, root},
};

/// Runs a client script of `tests/e2e/clients/` with the test Python (which `scripts/test.sh`
/// gives the clients from PyPI) and returns the JSON it prints.
fn client(script: &str, args: &[&str]) -> Value {
    let out = Command::new(duckdb_python())
        .arg(root().join("tests/e2e/clients").join(script))
        .args(args)
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

fn flush_as(addr: &str, token: &str) {
    let auth = format!("Bearer {token}");
    let r = http(addr, "POST", "/v1/flush", &[("Authorization", &auth)], b"").expect("flush");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// The rows of the lake with their partition values (`organization=acme/…` of the path) as
/// columns.
fn rows(lake: &std::path::Path) -> Vec<Value> {
    lake_rows(lake)
        .into_iter()
        .map(|(part, mut row)| {
            for kv in part.split('/') {
                if let Some((k, v)) = kv.split_once('=') {
                    row[k] = Value::String(v.to_owned());
                }
            }
            row
        })
        .collect()
}

/// The rows of the lake whose `key` is `value`.
fn rows_where(lake: &std::path::Path, key: &str, value: &str) -> Vec<Value> {
    rows(lake).into_iter().filter(|r| r[key] == value).collect()
}

fn attributes(row: &Value) -> Value {
    serde_json::from_str(row["attributes"].as_str().unwrap_or("{}")).expect("attributes are JSON")
}

#[test]
fn opentelemetry_sdk_exports_land_with_the_documented_mapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let serve = Serve::start_with(lake.to_str().expect("utf8"), &["--jwt-audience", AUDIENCE], &secret_env());
    let writer = token("otel-svc", "acme", "logs:write");
    let seen = client("otlp.py", &[&serve.url(), &writer]);
    assert_eq!(seen["exporter_results"], json!(["SUCCESS", "SUCCESS", "SUCCESS"]), "{seen}");
    // Partial success as the client library reads it, in both encodings.
    for enc in ["protobuf", "json"] {
        let r = &seen[enc];
        assert_eq!(r["status"], 200, "{enc}: {r}");
        assert_eq!(r["rejected"], 1, "{enc}: {r}");
        let message = r["message"].as_str().expect("message");
        assert!(message.contains("missing_field") && message.contains("environment"), "{enc}: {message}");
    }
    assert_eq!(seen["protobuf"]["content_type"], "application/x-protobuf");
    assert_eq!(seen["json"]["content_type"], "application/json");
    assert_eq!(seen["garbage"]["status"], 400);
    // An operator's flush writes the error output too (a tenant's flushes its organizations).
    flush_as(&serve.addr, &token("ops", "*", "admin"));

    // The exporter's three records: the token's organization, the resource's environment, the
    // registered-type fallback `otel`, severity and ids in columns, every attribute kept.
    let checkout = rows_where(&lake, "service_name", "checkout");
    assert_eq!(checkout.len(), 3, "{checkout:?}");
    let warn = checkout.iter().find(|r| r["severity_text"] == "WARN").expect("the warning");
    assert_eq!(warn["organization"], "acme");
    assert_eq!(warn["environment"], "prod");
    assert_eq!(warn["logtype"], "otel");
    assert_eq!(warn["server"], "web-1");
    assert_eq!(warn["description"], "order o-1 failed");
    assert_eq!(warn["severity_number"], 13);
    assert_eq!(warn["scope_name"], "shop.orders");
    assert_eq!(warn["transaction_id"], seen["trace_id"]);
    assert_eq!(warn["span_id"], seen["span_id"]);
    let attrs = attributes(warn);
    assert_eq!(attrs["attributes"]["order.id"], "o-1");
    assert_eq!(attrs["attributes"]["amount"], 12.5);
    assert_eq!(attrs["resource"]["service.name"], "checkout");
    assert_eq!(attrs["resource"]["telemetry.sdk.language"], "python");
    assert!(attrs["observedTime"].is_string(), "{attrs}");
    let map_body = checkout.iter().find(|r| r["description"].is_null()).expect("the map body");
    let detail: Value = serde_json::from_str(map_body["detail"].as_str().expect("detail")).expect("JSON");
    assert_eq!(detail, json!({"cart": {"items": 3}, "paid": true}));

    // The encoded batch, twice (protobuf and JSON): the staging record each time, the record
    // without an environment in the error output with its reason code.
    let billing = rows_where(&lake, "service_name", "billing");
    assert_eq!(billing.len(), 2, "{billing:?}");
    assert!(billing.iter().all(|r| r["environment"] == "staging" && r["severity_text"] == "ERROR"));
    let errors = error_records(&lake);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e["errorCode"] == "missing_field"), "{errors:?}");

    let metrics =
        String::from_utf8(http(&serve.addr, "GET", "/metrics", &[], b"").expect("metrics").body).expect("utf8");
    assert!(metrics.contains("sluice_protocol_records_total{protocol=\"otlp\",outcome=\"accepted\"} 5"), "{metrics}");
    assert!(metrics.contains("sluice_protocol_records_total{protocol=\"otlp\",outcome=\"rejected\"} 2"), "{metrics}");
}

#[test]
fn elasticsearch_client_bulk_lands_and_hears_of_each_rejection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let serve = Serve::start_with(lake.to_str().expect("utf8"), &["--jwt-audience", AUDIENCE], &secret_env());
    let writer = token("filebeat", "acme", "logs:write");
    let seen = client("es.py", &[&serve.url(), &writer]);
    assert_eq!((&seen["version"], &seen["license"]), (&json!("8.19.0"), &json!("active")));
    assert_eq!(seen["bulk_ok"], 2, "{seen}");
    let errors = seen["bulk_errors"].as_array().expect("errors");
    let by_id: Vec<(String, u64, String)> = errors
        .iter()
        .map(|e| {
            let (_, item) = e.as_object().and_then(|o| o.iter().next()).expect("one action");
            (
                item["_id"].as_str().unwrap_or_default().to_owned(),
                item["status"].as_u64().unwrap_or_default(),
                item["error"]["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        by_id,
        [
            ("d3".to_owned(), 400, "missing_field".to_owned()),
            ("d4".to_owned(), 403, "forbidden_organization".to_owned()),
            ("d5".to_owned(), 400, "missing_field".to_owned()),
        ],
        "{seen}"
    );
    assert_eq!(seen["mapped"], json!({"errors": false, "status": 201}));
    // An operator's flush writes the error output too (a tenant's flushes its organizations).
    flush_as(&serve.addr, &token("ops", "*", "admin"));

    let rows = rows(&lake);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let hello = rows.iter().find(|r| r["description"] == "hello from filebeat").expect("first document");
    assert_eq!(hello["organization"], "acme");
    assert_eq!(hello["logtype"], "app");
    assert_eq!(hello["time"], "2026-12-01T10:00:00.000000Z");
    assert_eq!(hello["user_id"], "u-1");
    assert_eq!(attributes(hello)["host"]["name"], "web-1");
    let second = rows.iter().find(|r| r["description"] == "second").expect("the created document");
    assert_eq!(second["status_code"], 200);
    let mapped = rows.iter().find(|r| r["description"] == "mapped").expect("mapped document");
    assert_eq!((&mapped["environment"], &mapped["logtype"]), (&json!("dev"), &json!("web")));
    assert_eq!(error_records(&lake).len(), 3);
}

/// Firehose's headers for a delivery of `body` (gzip) with `key`.
fn firehose_post(addr: &str, key: &str, request_id: &str, body: &[u8]) -> (u16, Value) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("X-Amz-Firehose-Protocol-Version", "1.0"),
        ("X-Amz-Firehose-Request-Id", request_id),
        ("X-Amz-Firehose-Source-Arn", "arn:aws:firehose:us-east-1:123456789012:deliverystream/sluice"),
        ("X-Amz-Firehose-Access-Key", key),
        ("X-Amz-Firehose-Common-Attributes", r#"{"commonAttributes":{"organization":"acme"}}"#),
    ];
    let r = http(addr, "POST", "/firehose", &headers, &gz).expect("POST /firehose");
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

#[test]
fn firehose_deliveries_land_once_and_a_retry_after_kill_9_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let key = "firehose-key-of-thirty-two-chars";
    let keys = dir.path().join("firehose-keys.toml");
    std::fs::write(&keys, format!("[[key]]\nname = \"orders\"\nkey = \"{key}\"\norgs = [\"acme\"]\n")).expect("keys");
    let args = ["--jwt-audience", AUDIENCE, "--firehose-keys", keys.to_str().expect("utf8")];
    let fixtures = root().join("sample-data/firehose-http");
    let first = std::fs::read(fixtures.join("first.json")).expect("fixture");
    let second = std::fs::read(fixtures.join("second.json")).expect("fixture");
    let id = |body: &[u8]| {
        serde_json::from_slice::<Value>(body).expect("fixture")["requestId"].as_str().expect("id").to_owned()
    };
    let (first_id, second_id) = (id(&first), id(&second));

    let serve = Serve::start_with(lake.to_str().expect("utf8"), &args, &secret_env());
    // A wrong key, and a token instead of a key, are refused.
    let (status, _) = firehose_post(&serve.addr, "not-the-key-not-the-key-not-the-key", &first_id, &first);
    assert_eq!(status, 401);
    let (status, _) = firehose_post(&serve.addr, &token("x", "acme", "logs:write"), &first_id, &first);
    assert_eq!(status, 401);

    let (status, answer) = firehose_post(&serve.addr, key, &first_id, &first);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["requestId"], first_id.as_str());
    assert!(answer["timestamp"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{answer}");
    assert!(answer.get("errorMessage").is_none(), "{answer}");
    let (status, answer) = firehose_post(&serve.addr, key, &second_id, &second);
    assert_eq!((status, answer["requestId"].as_str()), (200, Some(second_id.as_str())));
    // Acknowledged, then killed before anything reached the lake.
    serve.kill9();

    let serve = Serve::start_with(lake.to_str().expect("utf8"), &args, &secret_env());
    // Firehose retries the second delivery (its answer lost, say): answered, not taken twice.
    let (status, answer) = firehose_post(&serve.addr, key, &second_id, &second);
    assert_eq!((status, answer["requestId"].as_str()), (200, Some(second_id.as_str())));
    flush_as(&serve.addr, &token("ops", "*", "admin"));
    let mut txns: Vec<String> = lake_rows(&lake)
        .into_iter()
        .map(|(_, r)| r["transaction_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    txns.sort();
    let mut expected: Vec<String> = (0..5).chain(10..15).map(|i| format!("fh-{i}")).collect();
    expected.sort();
    assert_eq!(txns, expected);
    let errors = error_records(&lake);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["errorCode"], "invalid_json");
}

/// The server's peak resident memory so far, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

#[test]
fn an_upload_job_takes_a_100_mb_csv_once_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let serve = Serve::start_with(lake.to_str().expect("utf8"), &["--jwt-audience", AUDIENCE], &secret_env());
    let writer = token("backfill", "acme", "logs:write");
    // 100 MB of CSV, as a spreadsheet or another tool exports it, with two rows the contract or
    // the token refuse.
    let csv = dir.path().join("backfill.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
    writeln!(out, "organizationID,environment,logType,time,transactionId,server,action,description,statusCode")
        .expect("w");
    let (mut rows, mut size) = (0u64, 0usize);
    while size < 100 << 20 {
        let env = ["prod", "dev", "test"][rows as usize % 3];
        let line = format!(
            "acme,{env},app,2026-11-{:02}T{:02}:{:02}:00Z,up-{rows:09},web-{},handled request,\"request {rows}, handled in {} ms, with more words to make it longer\",200\n",
            1 + rows % 28,
            rows % 24,
            rows % 60,
            rows % 7,
            rows % 1000
        );
        size += line.len();
        out.write_all(line.as_bytes()).expect("w");
        rows += 1;
    }
    writeln!(out, "acme,prod,nope,2026-11-01T00:00:00Z,bad-1,web-1,x,y,200").expect("w");
    writeln!(out, "globex,prod,app,2026-11-01T00:00:00Z,bad-2,web-1,x,y,200").expect("w");
    drop(out);

    // A gzip NDJSON upload with a webhook (an operator's: loopback hooks are for operators),
    // first: it also brings the code of a job into memory before the peak is read.
    let (hook, calls) = crate::support::http_sink();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..10 {
        writeln!(
            gz,
            r#"{{"organizationID":"acme","environment":"prod","logType":"web","time":"2026-11-02T00:00:0{i}Z"}}"#
        )
        .expect("gz");
    }
    let body = gz.finish().expect("gz");
    let admin = format!("Bearer {}", token("ops", "*", "admin"));
    let path = format!("/v1/imports?name=more.ndjson.gz&webhook_url={hook}");
    let r = http(&serve.addr, "POST", &path, &[("Authorization", &admin), ("Content-Encoding", "gzip")], &body)
        .expect("upload");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let called = calls.recv_timeout(std::time::Duration::from_secs(120)).expect("the webhook is called");
    assert_eq!((called["state"].as_str(), called["accepted"].as_u64()), (Some("SUCCEEDED"), Some(10)), "{called}");

    // And a small CSV of the same shape, so that the code the big one runs is in memory too.
    let small = dir.path().join("small.csv");
    let head: String =
        std::fs::read_to_string(&csv).expect("csv").lines().take(2_000).map(|l| format!("{l}\n")).collect();
    std::fs::write(&small, head).expect("small csv");
    let warm = Command::new(crate::support::sluice_bin())
        .args(["import", "--quiet", "--server", &serve.url(), "--token", &writer])
        .arg(&small)
        .output()
        .expect("sluice import --server");
    assert!(warm.status.success(), "{}", String::from_utf8_lossy(&warm.stderr));
    let pid = serve.child.id();
    let before = peak_rss_mib(pid);
    let upload = || {
        Command::new(crate::support::sluice_bin())
            .args(["import", "--quiet", "--server", &serve.url(), "--token", &writer])
            .arg(&csv)
            .output()
            .expect("sluice import --server")
    };
    let first = upload();
    let said = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(first.status.code(), Some(1), "rejected rows exit 1: {said}");
    let after = peak_rss_mib(pid);
    eprintln!("serve peak RSS {before:.0} MiB before the upload, {after:.0} MiB after it");
    assert!(after - before < 64.0, "an upload grew the server by {:.0} MiB", after - before);
    let id = said.split("job ").nth(1).and_then(|s| s.split(':').next()).expect("a job id").to_owned();
    assert!(said.contains(&format!("{} records ({rows} accepted, 2 rejected)", rows + 2)), "{said}");

    // The same content again: nothing imported, the first job answers.
    let again = upload();
    let said_again = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(said_again.contains(&format!("uploaded before (job {id})")), "{said_again}");

    let auth = format!("Bearer {writer}");
    let status =
        http(&serve.addr, "GET", &format!("/v1/imports/{id}"), &[("Authorization", &auth)], b"").expect("status");
    let status = status.json();
    assert_eq!((status["state"].as_str(), status["accepted"].as_u64()), (Some("SUCCEEDED"), Some(rows)), "{status}");
    let events = http(&serve.addr, "GET", &format!("/v1/imports/{id}/events"), &[("Authorization", &auth)], b"")
        .expect("events");
    assert!(String::from_utf8_lossy(&events.body).contains("event: complete"));
    let report = http(&serve.addr, "GET", &format!("/v1/imports/{id}/rejected.csv"), &[("Authorization", &auth)], b"")
        .expect("report");
    let report = String::from_utf8(report.body).expect("utf8");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "line,code,message");
    assert!(lines[1].starts_with(&format!("{},unknown_log_type,", rows + 2)), "{report}");
    assert!(lines[2].starts_with(&format!("{},forbidden_organization,", rows + 3)), "{report}");
    // Another tenant sees no such job.
    let other = format!("Bearer {}", token("other", "globex", "logs:write"));
    assert_eq!(
        http(&serve.addr, "GET", &format!("/v1/imports/{id}"), &[("Authorization", &other)], b"").expect("x").status,
        404
    );

    let count = Command::new(crate::support::sluice_bin())
        .args([
            "query",
            "--lake",
            lake.to_str().expect("utf8"),
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM logs",
        ])
        .output()
        .expect("sluice query");
    let metrics =
        String::from_utf8(http(&serve.addr, "GET", "/metrics", &[], b"").expect("metrics").body).expect("utf8");
    let uploaded =
        format!("sluice_protocol_records_total{{protocol=\"upload\",outcome=\"accepted\"}} {}", rows + 10 + 1_999);
    assert!(metrics.contains(&uploaded), "{metrics}");
    // Rows of the small CSV were imported again by the big one (other content, same rows): the
    // lake holds both.
    assert_eq!(String::from_utf8_lossy(&count.stdout).lines().nth(1), Some((rows + 10 + 1_999).to_string().as_str()));
}

#[test]
fn an_upload_job_cut_off_by_kill_9_is_taken_again_counting_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let csv = dir.path().join("cut.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
    writeln!(out, "organizationID,environment,logType,time,transactionId,description").expect("w");
    let rows = 300_000u64;
    for i in 0..rows {
        writeln!(out, "acme,prod,web,2026-11-{:02}T{:02}:00:00Z,cut-{i},row {i} of a job cut off", 1 + i % 28, i % 24)
            .expect("w");
    }
    drop(out);
    let upload = |serve: &Serve| {
        Command::new(crate::support::sluice_bin())
            .args(["import", "--quiet", "--server", &serve.url()])
            .arg(&csv)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sluice import --server")
    };
    let serve = Serve::start(&lake, &[]);
    let mut first = upload(&serve);
    // Killed once the job has read some records and before it ends.
    let imports = lake.join("_imports");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let id = loop {
        assert!(std::time::Instant::now() < deadline, "the job never started");
        let job = std::fs::read_dir(&imports).ok().and_then(|d| {
            d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).find(|n| n.ends_with(".json"))
        });
        if let Some(name) = job {
            let id = name.trim_end_matches(".json").to_owned();
            let s = http(&serve.addr, "GET", &format!("/v1/imports/{id}"), &[], b"").expect("status").json();
            if s["state"] == "RUNNING" && s["records_read"].as_u64().unwrap_or(0) > 0 {
                break id;
            }
            assert_ne!(s["state"], "SUCCEEDED", "the job ended before it could be cut off: make the file larger");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    serve.kill9();
    assert!(!first.wait().expect("wait").success(), "the client hears the server went away");

    // A restart, a restart with nothing in between, then the same upload again.
    Serve::start(&lake, &[]).kill9();
    let serve = Serve::start(&lake, &[]);
    let s = http(&serve.addr, "GET", &format!("/v1/imports/{id}"), &[], b"").expect("status").json();
    assert_eq!(s["state"], "FAILED", "{s}");
    let again = upload(&serve).wait_with_output().expect("upload again");
    assert!(again.status.success());
    let count = Command::new(crate::support::sluice_bin())
        .args(["query", "--lake", lake.to_str().expect("utf8"), "--format", "csv", "-c"])
        .arg("SELECT count(*) AS n, count(DISTINCT transaction_id) AS t, count(DISTINCT record_id) AS r FROM logs")
        .output()
        .expect("sluice query");
    assert_eq!(String::from_utf8_lossy(&count.stdout).lines().nth(1), Some(format!("{rows},{rows},{rows}").as_str()));
}
