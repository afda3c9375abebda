//! The embedded pipeline end to end, as a user runs it: `sluice serve` over HTTP, kill -9 crashes,
//! the error output, `publish`, `import`, `replay`, `demo`, and the lake read by DuckDB.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::Write,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde_json::Value;
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, Registry, record_id_at};

use crate::support::*;

fn records(path: &str) -> Vec<Vec<u8>> {
    std::fs::read(root().join(path))
        .expect("sample")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn records_in_land_in_the_right_partitions_field_by_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &["--buffer-interval", "900"]);
    let good = records("sample-data/records.ndjson");
    let bad = records("sample-data/bad-records.ndjson");
    // Good and bad interleaved in one request.
    let mut all: Vec<Vec<u8>> = Vec::new();
    for (i, g) in good.iter().enumerate() {
        all.push(g.clone());
        if let Some(b) = bad.get(i) {
            all.push(b.clone());
        }
    }
    let body = all.join(&b'\n');
    let r = post_ndjson(&serve.addr, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer = r.json();
    assert_eq!(answer["accepted"], good.len());
    assert_eq!(answer["rejected"], bad.len());
    let codes: BTreeSet<&str> =
        answer["errors"].as_array().expect("errors").iter().filter_map(|e| e["code"].as_str()).collect();
    assert_eq!(codes.len(), 8, "every reason code: {codes:?}");
    for e in answer["errors"].as_array().expect("errors") {
        let i = e["index"].as_u64().expect("index") as usize;
        assert!(bad.contains(&all[i]), "index {i} points at a bad record");
    }
    flush(&serve.addr);
    let wal_id = std::fs::read_to_string(dir.path().join("_wal/id")).expect("log id");
    serve.terminate();

    // Expected: the transform of each input with the id of its log position and its arrival time.
    let p = Partitioner::default();
    let by_id: HashMap<String, (String, Value)> = lake_rows(dir.path())
        .into_iter()
        .map(|(part, row)| (row["record_id"].as_str().expect("id").to_owned(), (part, row)))
        .collect();
    assert_eq!(by_id.len(), good.len(), "one row per accepted record, no duplicates");
    let registry = Registry::builtin();
    let mut checked = 0;
    for (seq, raw) in all.iter().enumerate() {
        let id = record_id_at(wal_id.trim(), seq as u64);
        let Some((part, row)) = by_id.get(&id) else {
            assert!(bad.contains(raw), "record {seq} is missing from the lake");
            continue;
        };
        let ingested = row["ingested_at"].as_str().expect("ingested_at");
        let arrival = chrono::DateTime::parse_from_rfc3339(ingested).expect("time").timestamp_micros();
        let Outcome::Ok { partition, row: packed } =
            p.transform(raw, &Context { record_id: id.clone(), arrival_micros: arrival })
        else {
            panic!("record {seq} is in the lake but the transform rejects it")
        };
        assert_eq!(part, &partition.path());
        let expected: Value = serde_json::from_slice(&packed.to_row().to_json_line(&registry)).expect("json");
        assert_eq!(row, &expected, "record {seq}: Parquet row differs from the transform's row");
        checked += 1;
    }
    assert_eq!(checked, good.len());
    assert!(by_id.values().any(|(_, r)| r["events"].as_array().is_some_and(|e| !e.is_empty())));
    assert!(by_id.values().any(|(_, r)| r["attributes"].is_string()));

    // Every rejected record is in errors/ with its code and original bytes.
    let errors = error_records(dir.path());
    assert_eq!(errors.len(), bad.len());
    let mut seen = BTreeSet::new();
    for e in &errors {
        let raw = BASE64.decode(e["rawData"].as_str().expect("rawData")).expect("base64");
        assert!(bad.contains(&raw));
        seen.insert(e["errorCode"].as_str().expect("code").to_owned());
        assert_eq!(e["attemptsMade"], 1);
        assert!(e["arrivalTimestamp"].is_i64() && e["errorMessage"].is_string());
    }
    assert_eq!(seen.len(), 8);
    assert!(dir.path().join("errors/processing-failed").is_dir());
}

#[test]
fn body_shapes_limits_health_and_metrics() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &["--max-body", "1"]);
    let one = br#"{"organizationID":7,"environment":"dev","logType":"web","time":"2025-01-01T00:00:00Z"}"#;
    // One object, pretty-printed; a JSON array.
    let pretty = b"{\n  \"organizationID\": 7,\n  \"environment\": \"dev\",\n  \"logType\": \"web\",\n  \"time\": 1735689600000\n}\n";
    let r = http(&serve.addr, "POST", "/v1/logs", &[("Content-Type", "application/json")], pretty).expect("post");
    assert_eq!((r.status, r.json()["accepted"].as_u64()), (200, Some(1)));
    let arr = format!("[{}, 5, {}]", String::from_utf8_lossy(one), String::from_utf8_lossy(one));
    let r =
        http(&serve.addr, "POST", "/v1/logs", &[("Content-Type", "application/json")], arr.as_bytes()).expect("post");
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(r.json()["errors"][0]["index"], 1);
    assert_eq!(r.json()["errors"][0]["code"], "not_an_object");
    // gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[one.as_slice(), b"\n", one.as_slice()].concat()).expect("gzip");
    let r = http(&serve.addr, "POST", "/v1/logs", &[("Content-Encoding", "gzip")], &gz.finish().expect("gzip"))
        .expect("post");
    assert_eq!(r.json()["accepted"], 2);
    // Oversize body: 413.
    let big = vec![b' '; 2 << 20];
    let r = http(&serve.addr, "POST", "/v1/logs", &[], &big).expect("post");
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "body_too_large");
    // A gzip bomb: 100 MiB of zeros in ~100 KiB; capped while streaming: 413.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..100 {
        gz.write_all(&zeros).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20);
    let r = http(&serve.addr, "POST", "/v1/logs", &[("Content-Encoding", "gzip")], &bomb).expect("post");
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("decompressed")));
    // Unsupported encoding and an invalid array: 415 and 400 with codes.
    let r = http(&serve.addr, "POST", "/v1/logs", &[("Content-Encoding", "br")], b"x").expect("post");
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (415, Some("unsupported_encoding")));
    let r = http(&serve.addr, "POST", "/v1/logs", &[], b"[1, 2").expect("post");
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_body")));
    // Health and metrics.
    let r = http(&serve.addr, "GET", "/healthz", &[], b"").expect("get");
    assert_eq!(r.status, 200);
    flush(&serve.addr);
    let m = String::from_utf8(http(&serve.addr, "GET", "/metrics", &[], b"").expect("get").body).expect("utf8");
    for needle in [
        "sluice_records_accepted_total 5",
        "sluice_records_rejected_total{reason=\"not_an_object\"} 1",
        "sluice_bytes_in_total",
        "sluice_files_written_total",
        "sluice_file_bytes_written_total",
        "sluice_flush_seconds_bucket",
        "sluice_wal_bytes",
        "sluice_buffered_bytes 0",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
    // The defaults: a budget of an eighth of the memory, 256 MiB to 4 GiB, and a log 1 GiB larger.
    let gauge = |name: &str| -> u64 {
        let line = m.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}:\n{m}"));
        line[name.len() + 1..].parse().expect("a number")
    };
    let budget = gauge("sluice_memory_budget_bytes");
    assert!((256 << 20..=4 << 30).contains(&budget), "budget {budget}");
    assert_eq!(gauge("sluice_wal_max_bytes"), budget + (1 << 30));
    let r = http(&serve.addr, "GET", "/nope", &[], b"").expect("get");
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("not_found")));
    serve.terminate();
}

/// While the lake cannot be written, the log fills and the API answers 503 with Retry-After;
/// nothing accepted is lost, and once the lake is back everything lands.
#[test]
fn a_full_log_answers_503_and_nothing_is_lost_while_the_lake_is_down() {
    let dir = tempfile::tempdir().expect("tmp");
    // A file where the `logs` folder should be: every data file write fails (even for root).
    std::fs::write(dir.path().join("logs"), b"in the way").expect("blocker");
    let serve = Serve::start(dir.path(), &["--wal-max", "16", "--buffer-interval", "1", "--buffer-size", "1"]);
    let line = |n: usize| {
        format!(
            r#"{{"organizationID":"1","environment":"dev","logType":"web","time":"2025-01-01T00:00:00Z","n":{n},"description":"{}"}}"#,
            "x".repeat(8000)
        )
    };
    let mut accepted = 0u64;
    let mut saw_503 = false;
    for round in 0..40 {
        let body: Vec<String> = (0..500).map(|i| line(round * 500 + i)).collect();
        let r = post_ndjson(&serve.addr, body.join("\n").as_bytes());
        if r.status == 503 {
            assert!(r.headers.contains_key("retry-after"));
            assert_eq!(r.json()["error"]["code"], "overloaded");
            saw_503 = true;
            break;
        }
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        accepted += r.json()["accepted"].as_u64().expect("accepted");
    }
    assert!(saw_503, "the log never reported full");
    let health = http(&serve.addr, "GET", "/healthz", &[], b"").expect("healthz");
    assert_eq!(health.status, 503);
    // The lake comes back: the retried writes land and ingest is accepted again.
    std::fs::remove_file(dir.path().join("logs")).expect("remove blocker");
    flush(&serve.addr);
    let r = post_ndjson(&serve.addr, line(999_999).as_bytes());
    assert_eq!(r.status, 200);
    accepted += 1;
    flush(&serve.addr);
    serve.terminate();
    assert_eq!(lake_rows(dir.path()).len() as u64, accepted);
}

/// kill -9 during sustained ingest, several rounds: every acknowledged record is in the lake,
/// none invented.
#[test]
fn crash_rounds_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let sent: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let mut next_id = 0u64;
    for round in 0..4 {
        let serve = Serve::start(dir.path(), &["--buffer-interval", "1", "--buffer-size", "1"]);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (addr, sent, acked, stop) = (serve.addr.clone(), sent.clone(), acked.clone(), stop.clone());
            let start = next_id;
            std::thread::spawn(move || {
                let mut id = start;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<u64> = (id..id + 100).collect();
                    id += 100;
                    let body: Vec<String> = batch
                        .iter()
                        .map(|n| {
                            format!(
                                r#"{{"organizationID":"o{}","environment":"crash","logType":"app","time":"2025-06-01T{:02}:00:00Z","testId":{n},"description":"round {round}"}}"#,
                                n % 3,
                                n % 24
                            )
                        })
                        .collect();
                    sent.lock().expect("lock").extend(&batch);
                    match http(
                        &addr,
                        "POST",
                        "/v1/logs",
                        &[("Content-Type", "application/x-ndjson")],
                        body.join("\n").as_bytes(),
                    ) {
                        Ok(r) if r.status == 200 => {
                            assert_eq!(r.json()["accepted"], 100);
                            acked.lock().expect("lock").extend(&batch);
                        }
                        _ => break,
                    }
                }
                id
            })
        };
        std::thread::sleep(Duration::from_millis(1200 + 300 * round));
        serve.kill9();
        stop.store(true, Ordering::Relaxed);
        next_id = sender.join().expect("sender");
        // Restart after restart with nothing sent in between: a clean stop, then a kill -9.
        Serve::start(dir.path(), &["--buffer-interval", "1", "--buffer-size", "1"]).terminate();
        Serve::start(dir.path(), &["--buffer-interval", "1", "--buffer-size", "1"]).kill9();
    }
    let serve = Serve::start(dir.path(), &[]);
    flush(&serve.addr);
    serve.terminate();
    let acked = acked.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    assert!(acked.len() >= 400, "the rounds acknowledged too little to test: {}", acked.len());
    let mut in_lake: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (_, row) in lake_rows(dir.path()) {
        let attrs: Value = serde_json::from_str(row["attributes"].as_str().expect("attributes")).expect("json");
        let test_id = attrs["testId"].as_u64().expect("testId");
        let rid = row["record_id"].as_str().expect("record_id").to_owned();
        if let Some(prev) = in_lake.insert(rid, test_id) {
            assert_eq!(prev, test_id, "one record_id, two records");
        }
        ids.insert(test_id);
    }
    let missing: Vec<_> = acked.difference(&ids).take(10).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?} ({} acknowledged)", acked.len());
    let invented: Vec<_> = ids.difference(&sent).take(10).collect();
    assert!(invented.is_empty(), "in the lake but never sent: {invented:?}");
}

#[test]
fn duckdb_reads_the_same_row_count_per_partition() {
    let python = duckdb_python();
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(sluice_bin())
        .args(["import", "--quiet", "--lake", dir.path().to_str().expect("utf8")])
        .arg(root().join("sample-data/records.ndjson"))
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    for (part, _) in lake_rows(dir.path()) {
        *ours.entry(part).or_default() += 1;
    }
    let script = format!(
        "import duckdb, json\n\
         rows = duckdb.sql(\"SELECT 'environment=' || environment || '/organization=' || organization || '/logtype=' || logtype || \
         '/year=' || year || '/month=' || month || '/day=' || day || '/hour=' || hour AS p, count(*) FROM \
         read_parquet('{}/logs/**/*.parquet', hive_partitioning=true, hive_types_autocast=false) GROUP BY ALL\").fetchall()\n\
         print(json.dumps({{p: n for p, n in rows}}))",
        dir.path().display()
    );
    let out = Command::new(&python).args(["-c", &script]).output().expect("python");
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: BTreeMap<String, u64> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ours.values().sum::<u64>(), 3000);
    assert_eq!(theirs, ours);
}

#[test]
fn publish_reports_rejections_and_exits_nonzero() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &[]);
    let ok = Command::new(sluice_bin())
        .args(["publish", "--quiet", "--batch-records", "700", "--gzip", "--to", &serve.url()])
        .arg(root().join("sample-data/records.ndjson"))
        .output()
        .expect("publish");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stderr).contains("sent 3000 records: 3000 accepted, 0 rejected"));
    let bad = Command::new(sluice_bin())
        .args(["publish", "--quiet", "--to", &serve.url()])
        .arg(root().join("sample-data/bad-records.ndjson"))
        .output()
        .expect("publish");
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stderr);
    for code in sluice_schemas::ReasonCode::CONTRACT {
        assert!(text.contains(code.as_str()), "{code} missing from the summary:\n{text}");
    }
    assert!(text.contains("line 1: invalid_json"), "{text}");
    // A request a record, eight in flight: the same summary, rejected lines in input order.
    let many = Command::new(sluice_bin())
        .args(["publish", "--quiet", "--batch-records", "1", "--concurrency", "8", "--to", &serve.url()])
        .arg(root().join("sample-data/bad-records.ndjson"))
        .output()
        .expect("publish");
    assert_eq!(many.status.code(), Some(1));
    let many_text = String::from_utf8_lossy(&many.stderr);
    assert_eq!(many_text.lines().next(), text.lines().next(), "{many_text}");
    let lines: Vec<u64> =
        many_text.lines().filter_map(|l| l.trim().strip_prefix("line ")?.split(':').next()?.parse().ok()).collect();
    assert_eq!(lines.len(), 5, "{many_text}");
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{many_text}");
    // Nothing listening: a clear error after retries.
    serve.terminate();
    let none = Command::new(sluice_bin())
        .args(["publish", "--quiet", "--to", "http://127.0.0.1:9"])
        .arg(root().join("sample-data/bad-records.ndjson"))
        .env("SLUICE_LOG", "off")
        .output()
        .expect("publish");
    assert!(!none.status.success());
}

#[test]
fn import_is_idempotent_and_reads_csv() {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = dir.path().join("lake");
    let import = |file: &std::path::Path| {
        Command::new(sluice_bin())
            .args(["import", "--quiet", "--lake", lake.to_str().expect("utf8")])
            .arg(file)
            .output()
            .expect("import")
    };
    let sample = root().join("sample-data/records.ndjson");
    let first = import(&sample);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let files = data_files(&lake);
    let second = import(&sample);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already imported"));
    assert_eq!(data_files(&lake), files, "a second import writes nothing");
    assert_eq!(lake_rows(&lake).len(), 3000);

    let csv = dir.path().join("backfill.csv");
    std::fs::write(
        &csv,
        "organizationID,environment,logType,time,success,statusCode,detail,note\n\
         42,prod,agw,2024-03-01T10:00:00Z,true,200,\"{\"\"k\"\":1}\",hello\n\
         42,prod,agw,1709287200000,false,,,\"with, comma\"\n\
         42,prod,nope,2024-03-01T10:00:00Z,,,,\n",
    )
    .expect("csv");
    let out = import(&csv);
    assert_eq!(out.status.code(), Some(1), "one rejected row: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = lake_rows(&lake)
        .into_iter()
        .filter(|(p, _)| p.starts_with("environment=prod/organization=42"))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(rows.len(), 2);
    let first = rows.iter().find(|r| r["success"] == true).expect("row 1");
    assert_eq!(first["status_code"], 200);
    assert_eq!(first["detail"], "{\"k\":1}");
    assert_eq!(first["attributes"], "{\"note\":\"hello\"}");
    assert!(
        rows.iter()
            .any(|r| r["attributes"] == "{\"note\":\"with, comma\"}" && r["time"] == "2024-03-01T10:00:00.000000Z")
    );
    assert_eq!(error_records(&lake).len(), 1);
}

#[test]
fn replay_delivers_after_a_log_type_is_added_and_a_second_replay_does_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = dir.path().join("lake");
    let ndjson = dir.path().join("in.ndjson");
    std::fs::write(
        &ndjson,
        "{\"organizationID\":\"1\",\"environment\":\"dev\",\"logType\":\"billing\",\"time\":\"2024-01-01T00:00:00Z\",\"amountCents\":\"1250\"}\n\
         {\"organizationID\":\"1\",\"environment\":\"dev\",\"logType\":\"billing\",\"time\":\"2024-01-01T01:00:00Z\"}\n\
         {\"organizationID\":\"1\",\"environment\":\"dev\",\"logType\":\"web\",\"time\":\"yesterday\"}\n",
    )
    .expect("write");
    let run = |args: &[&str]| Command::new(sluice_bin()).args(args).output().expect("run");
    let lake_s = lake.to_str().expect("utf8");
    let out = run(&["import", "--quiet", "--lake", lake_s, ndjson.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(error_records(&lake).len(), 3);
    // Without the log type, replay delivers nothing and changes nothing.
    let before = error_records(&lake);
    let out = run(&["replay", "--lake", lake_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(error_records(&lake), before);
    // Add the log type: the billing records are delivered; the bad time stays, with its reason.
    let schemas = dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).expect("mkdir");
    std::fs::write(
        schemas.join("billing.toml"),
        "name = \"billing\"\n[[columns]]\nfield = \"amountCents\"\ntype = \"bigint\"\n",
    )
    .expect("write");
    let out = run(&["--schemas", schemas.to_str().expect("utf8"), "replay", "--lake", lake_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 delivered"), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = lake_rows(&lake);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|(p, r)| p.contains("logtype=billing") && r["amount_cents"] == 1250));
    let left = error_records(&lake);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["errorCode"], "invalid_field");
    // A second replay does nothing.
    let files = data_files(&lake);
    let out = run(&["--schemas", schemas.to_str().expect("utf8"), "replay", "--lake", lake_s]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 delivered"));
    assert_eq!(data_files(&lake), files);
    assert_eq!(error_records(&lake), left);
}

#[test]
fn demo_tours_and_exits() {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = dir.path().join("lake");
    let out = Command::new(sluice_bin())
        .args([
            "demo",
            "--exit",
            "--records",
            "3000",
            "--listen",
            "127.0.0.1:0",
            "--lake",
            lake.to_str().expect("utf8"),
        ])
        .output()
        .expect("demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "serving the ingest API",
        "published them",
        "flushed the buffers to Parquet",
        "logtype",
        "errors/processing-failed",
        "Example queries",
        "+----",
        "/v1/exports",
        "an operator token",
        "sees organizations [\"1000\"] only",
        "export ANALYST=",
        "authorization: Bearer $ANALYST",
    ] {
        assert!(text.contains(needle), "demo output lacks {needle:?}:\n{text}");
    }
    let rows = lake_rows(&lake).len() as u64;
    let errors = error_records(&lake).len() as u64;
    assert_eq!(rows + errors, 3000);
}
