//! Issue 31's reproductions, as a user (or a misfortune) would cause them, against the real
//! `sluice serve`: restarts with nothing in between then kill -9, two servers on one lake, floods
//! of bad lines, queries that allocate without limit, a full disk, slow uploads, redirecting
//! webhooks, records far from their hour, flushes of other tenants' buffers, leftovers of earlier
//! servers, connection floods.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{Response, Serve, flush, http, lake_rows, post_ndjson, sluice_bin, wait_done};

fn record(test_id: u64) -> String {
    format!(
        r#"{{"organizationID":"o{}","environment":"rel","logType":"app","time":"2025-06-01T{:02}:00:00Z","testId":{test_id}}}"#,
        test_id % 3,
        test_id % 24
    )
}

fn send(addr: &str, ids: std::ops::Range<u64>) {
    let body: Vec<String> = ids.clone().map(record).collect();
    let r = post_ndjson(addr, body.join("\n").as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], ids.end - ids.start);
}

/// The test ids in the lake, each once, and no record id standing for two records.
fn lake_test_ids(lake: &std::path::Path) -> BTreeSet<u64> {
    let mut by_record_id: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (_, row) in lake_rows(lake) {
        let attrs: Value = serde_json::from_str(row["attributes"].as_str().expect("attributes")).expect("json");
        let id = attrs["testId"].as_u64().expect("testId");
        let rid = row["record_id"].as_str().expect("record_id").to_owned();
        if let Some(prev) = by_record_id.insert(rid.clone(), id) {
            assert_eq!(prev, id, "record id {rid} stands for two records: a sequence number was used twice");
        }
        ids.insert(id);
    }
    ids
}

/// Issue 31, item 1: a stop with nothing sent, then a restart, left the log's writer in a file
/// the first trim deleted; a kill -9 then lost everything acknowledged since, and the next start
/// numbered records from an old checkpoint again, overwriting delivered files.
#[test]
fn restarts_with_nothing_sent_then_kill9_lose_nothing_and_reuse_no_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let args = ["--buffer-interval", "1", "--buffer-size", "1"];
    let serve = Serve::start(dir.path(), &args);
    send(&serve.addr, 0..1201);
    flush(&serve.addr);
    serve.terminate();
    // Restart after restart with nothing in between: a clean stop, then a kill -9.
    Serve::start(dir.path(), &args).terminate();
    Serve::start(dir.path(), &args).kill9();
    let serve = Serve::start(dir.path(), &args);
    send(&serve.addr, 1201..2201);
    flush(&serve.addr);
    send(&serve.addr, 2201..3201);
    // Let delivery trim the log past the first of these, then crash.
    std::thread::sleep(Duration::from_millis(2500));
    serve.kill9();
    Serve::start(dir.path(), &args).kill9();
    let serve = Serve::start(dir.path(), &args);
    flush(&serve.addr);
    serve.terminate();
    let ids = lake_test_ids(dir.path());
    let missing: Vec<u64> = (0..3201).filter(|i| !ids.contains(i)).take(10).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?} ({} of 3201 in the lake)", ids.len());
}

/// The standard error of a `sluice` command that must fail, and its exit status.
fn fails(args: &[&str]) -> String {
    let out = Command::new(sluice_bin())
        .args(args)
        .env_remove("SLUICE_JWT_SECRET")
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice");
    assert!(!out.status.success(), "`sluice {}` should have refused", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 31, item 2: a second server on a lake (or on a log folder) used the same log and
/// overwrote the first one's files; it refuses now, saying who holds it; a crashed holder's
/// lock lapses with its process.
#[test]
fn a_second_server_on_one_lake_or_log_folder_refuses_and_a_dead_ones_lock_lapses() {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = dir.path().join("lake");
    let l = lake.to_str().expect("utf8");
    let first = Serve::start(&lake, &[]);
    let pid = first.child.id();
    let other_log = dir.path().join("other-wal");
    let msg = fails(&[
        "serve",
        "--auth",
        "none",
        "--listen",
        "127.0.0.1:0",
        "--lake",
        l,
        "--wal-dir",
        other_log.to_str().expect("utf8"),
    ]);
    assert!(msg.contains("in use by another sluice process") && msg.contains(&format!("pid {pid}")), "{msg}");
    assert!(msg.contains("`sluice serve`"), "{msg}");
    let other_lake = dir.path().join("other-lake");
    let same_log = lake.join("_wal");
    let msg = fails(&[
        "serve",
        "--auth",
        "none",
        "--listen",
        "127.0.0.1:0",
        "--lake",
        other_lake.to_str().expect("utf8"),
        "--wal-dir",
        same_log.to_str().expect("utf8"),
    ]);
    assert!(
        msg.contains("write-ahead log") && msg.contains(&format!("pid {pid}")) && msg.contains("--wal-dir"),
        "{msg}"
    );
    send(&first.addr, 0..10);
    first.kill9();
    let again = Serve::start(&lake, &[]);
    flush(&again.addr);
    again.terminate();
    assert_eq!(lake_test_ids(&lake).len(), 10);
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// Issue 31, item 3: 16 MB of two-byte bad lines drove the server to 6.3 GB and answered
/// 174 MiB repeating every error; a 2 KB gzip body did the same. Now a request holds at most
/// 100,000 records, its answer lists the first 100 rejections and counts the rest by reason
/// code, and its records are taken a chunk at a time.
#[test]
fn floods_of_bad_lines_are_refused_or_summarized_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &["--max-body", "32"]);
    let flood = b"x\n".repeat(8 << 20);
    let r = post_ndjson(&serve.addr, &flood);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "too_many_records");

    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&b"x\n".repeat(30 << 20)).expect("gzip");
        e.finish().expect("gzip")
    };
    assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
    let r = http(&serve.addr, "POST", "/v1/logs", &[("Content-Encoding", "gzip")], &bomb).expect("POST");
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));

    // Just under the limit: every record rejected, the answer stays small.
    let many = b"x\n".repeat(99_000);
    let r = post_ndjson(&serve.addr, &many);
    assert_eq!(r.status, 200);
    assert!(r.body.len() < 32 << 10, "an answer of {} bytes", r.body.len());
    let a = r.json();
    assert_eq!((a["accepted"].as_u64(), a["rejected"].as_u64()), (Some(0), Some(99_000)));
    assert_eq!(a["errors"].as_array().expect("errors").len(), 100);
    assert_eq!(a["errors_omitted"], 98_900);
    assert_eq!(a["error_counts"], json!({"invalid_json": 99_000}));
    for _ in 0..5 {
        assert_eq!(post_ndjson(&serve.addr, &many).status, 200);
    }
    let peak = peak_rss_mib(serve.child.id());
    eprintln!("floods: the server peaked at {peak} MiB");
    // Six requests of 99,000 rejected records: every one of them kept in the error output.
    flush(&serve.addr);
    serve.terminate();
    let errors: usize = crate::support::error_records(dir.path()).len();
    assert_eq!(errors, 6 * 99_000, "every rejected record is in the error output");
    assert!(peak < 600, "the server peaked at {peak} MiB");
}

fn post_sql(addr: &str, sql: &str) -> Response {
    http(
        addr,
        "POST",
        "/v1/queries",
        &[("Content-Type", "application/json")],
        json!({"sql": sql}).to_string().as_bytes(),
    )
    .expect("POST /v1/queries")
}

/// The state and error of a query execution, once it ended (or its refusal when it started).
fn run_sql(addr: &str, sql: &str) -> (u16, Value) {
    let r = post_sql(addr, sql);
    if r.status != 202 {
        return (r.status, r.json());
    }
    let id = r.json()["id"].as_str().expect("id").to_owned();
    (200, wait_done(addr, &format!("/v1/queries/{id}")))
}

/// Issue 31, item 4: `repeat`, `lpad` and a scalar `generate_series` allocated outside the
/// query's memory pool and took the whole server down; user errors such as `1/0` came back as
/// 500. Each is a `limit_exceeded` (or `invalid_sql`) error now, and the server goes on; a
/// caller runs a few queries at once and is told to wait past that.
#[test]
fn queries_cannot_take_the_servers_memory_or_every_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &["--max-queries-per-caller", "2"]);
    // A refusal at planning is a 400; a failure while running shows in the execution's state.
    let error = |(status, v): (u16, Value)| {
        assert!(status == 200 || status == 400, "{status} {v}");
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    };
    for sql in [
        "SELECT repeat('x', 2000000000)",
        "SELECT length(repeat(description, 100000000)) FROM (VALUES ('abcdefgh')) AS t(description)",
        "SELECT lpad('x', 2000000000)",
        "SELECT rpad('x', 2000000000, 'ab')",
        "SELECT range(0, 1000000000000)",
        "SELECT generate_series(0, 1000000000000)",
        "SELECT array_repeat('abc', 1000000000)",
        "SELECT replace(repeat('a', 1000000), '', repeat('b', 1000))",
    ] {
        assert_eq!(error(run_sql(&serve.addr, sql)), "limit_exceeded", "{sql}");
    }
    // A user's mistake, not the server's failure (it was `internal`, a 500, logged at ERROR).
    assert_eq!(error(run_sql(&serve.addr, "SELECT 1/0")), "invalid_sql");
    assert_eq!(error(run_sql(&serve.addr, "SELECT CAST('x' AS INT)")), "invalid_sql");
    // Two long queries of this caller run; a third is refused with 429 until one ends.
    let slow = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let a = post_sql(&serve.addr, slow);
    let b = post_sql(&serve.addr, slow);
    assert_eq!((a.status, b.status), (202, 202));
    let c = post_sql(&serve.addr, slow);
    assert_eq!(c.status, 429, "{}", String::from_utf8_lossy(&c.body));
    assert_eq!(c.json()["error"]["code"], "too_many_queries");
    assert!(c.headers.contains_key("retry-after"));
    let search = http(&serve.addr, "GET", "/v1/search?q=x", &[], b"").expect("search");
    assert_eq!(search.status, 429, "searches count too");
    for r in [a, b] {
        let id = r.json()["id"].as_str().expect("id").to_owned();
        assert_eq!(http(&serve.addr, "DELETE", &format!("/v1/queries/{id}"), &[], b"").expect("cancel").status, 200);
    }
    // The places come back once the cancelled queries' tasks have ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while post_sql(&serve.addr, "SELECT 1").status != 202 {
        assert!(Instant::now() < deadline, "no place free again after the queries were cancelled");
        std::thread::sleep(Duration::from_millis(50));
    }
    send(&serve.addr, 0..10);
    serve.terminate();
}

/// Issue 31, item 7: the body permit was taken before the body was read, so eight slow uploads
/// held every one and starved all ingest for the body timeout (60 s). Bodies are read first
/// now, at most eight of one token at a time: another tenant's records are answered at once.
#[test]
fn slow_uploads_of_one_tenant_do_not_stall_anothers_ingest() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = "reliability-secret-reliability-secret-0123";
    let env = [("SLUICE_JWT_SECRET".to_owned(), secret.to_owned())];
    let serve = Serve::start_with(dir.path().to_str().expect("utf8"), &[], &env);
    let token = |org: &str| {
        let out = Command::new(sluice_bin())
            .args(["token", "--org", org, "--roles", "logs:write", "--ttl", "10m"])
            .env("SLUICE_JWT_SECRET", secret)
            .output()
            .expect("sluice token");
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    };
    let (a, b) = (token("a"), token("b"));
    // Tenant a opens twelve uploads and sends one byte of each.
    let slow: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = TcpStream::connect(&serve.addr).expect("connect");
            let head = format!(
                "POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{{"
            );
            s.write_all(head.as_bytes()).expect("send");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let auth = format!("Bearer {b}");
    let r = http(
        &serve.addr,
        "POST",
        "/v1/logs",
        &[("Authorization", &auth), ("Content-Type", "application/x-ndjson")],
        br#"{"organizationID":"b","environment":"prod","logType":"web","time":"2025-06-01T00:00:00Z"}"#,
    )
    .expect("POST");
    let waited = started.elapsed();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(waited < Duration::from_secs(10), "another tenant waited {waited:?} behind slow uploads");
    // Past its eight, tenant a's uploads are refused at once, with a time to retry.
    let mut refused = 0;
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).contains(" 429 ")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 4, "twelve uploads of one token: eight read, four refused");
    serve.terminate();
}

/// An HTTP server on loopback answering every request with `status` and `extra` headers;
/// counts the requests.
fn answering(status: &str, extra: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let (count, status) = (Arc::clone(&hits), status.to_owned());
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).ok();
            count.fetch_add(1, Ordering::SeqCst);
            let answer = format!("HTTP/1.1 {status}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(answer.as_bytes()).ok();
        }
    });
    (addr, hits)
}

/// Issue 31, item 8: a webhook answered `302 → an internal address` and reqwest followed it
/// past the public-address check. Redirects are never followed now.
#[test]
fn export_webhooks_never_follow_redirects() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &[]);
    send(&serve.addr, 0..5);
    flush(&serve.addr);
    let (internal, internal_hits) = answering("200 OK", String::new());
    let (redirect, redirect_hits) = answering("302 Found", format!("location: http://{internal}/latest/meta-data\r\n"));
    let body =
        json!({"sql": "SELECT count(*) FROM logs", "notify": {"webhook_url": format!("http://{redirect}/hook")}});
    let r =
        http(&serve.addr, "POST", "/v1/exports", &[("Content-Type", "application/json")], body.to_string().as_bytes())
            .expect("export");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(wait_done(&serve.addr, &format!("/v1/exports/{id}"))["state"], "SUCCEEDED");
    let deadline = Instant::now() + Duration::from_secs(20);
    while redirect_hits.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the webhook was never called");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(internal_hits.load(Ordering::SeqCst), 0, "the redirect was followed to another host");
    serve.terminate();
}

/// Issue 31, item 9: the contract lets `year/month/day/hour` choose the hour, but reads by
/// `time` assumed ±14 h and missed the records further away. Files holding such records are
/// marked and always read.
#[test]
fn a_time_filter_finds_records_whose_hour_fields_are_far_from_their_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &[]);
    let far = r#"{"organizationID":"o1","environment":"rel","logType":"web","time":"2025-03-10T12:00:00Z","year":2025,"month":3,"day":1,"hour":0,"description":"far from its hour"}"#;
    let near = r#"{"organizationID":"o1","environment":"rel","logType":"web","time":"2025-03-10T12:30:00Z","description":"near"}"#;
    assert_eq!(post_ndjson(&serve.addr, format!("{far}\n{near}").as_bytes()).status, 200);
    flush(&serve.addr);
    let (_, v) = run_sql(
        &serve.addr,
        "SELECT count(*) AS n FROM logs WHERE time >= TIMESTAMP '2025-03-10T00:00:00Z' AND time < TIMESTAMP '2025-03-11T00:00:00Z'",
    );
    assert_eq!(v["state"], "SUCCEEDED", "{v}");
    let id = v["id"].as_str().expect("id");
    let rows = http(&serve.addr, "GET", &format!("/v1/queries/{id}/results"), &[], b"").expect("results").json();
    assert_eq!(rows["rows"][0]["n"], 2, "{rows}");
    let search =
        http(&serve.addr, "GET", "/v1/search?q=far&from=2025-03-10T00:00:00Z&to=2025-03-11T00:00:00Z", &[], b"")
            .expect("search")
            .json();
    assert_eq!(search["rows"].as_array().map(Vec::len), Some(1), "{search}");
    serve.terminate();
}

/// Issue 31, item 10: any producer's flush wrote every tenant's buffers (15,000 rows became
/// 15,000 files). A producer's flush writes its own organizations' buffers only.
#[test]
fn a_producers_flush_writes_only_its_own_organizations_buffers() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = "reliability-secret-reliability-secret-0123";
    let env = [("SLUICE_JWT_SECRET".to_owned(), secret.to_owned())];
    let serve = Serve::start_with(dir.path().to_str().expect("utf8"), &[], &env);
    let token = |org: &str, roles: &str| {
        let out = Command::new(sluice_bin())
            .args(["token", "--org", org, "--roles", roles, "--ttl", "10m"])
            .env("SLUICE_JWT_SECRET", secret)
            .output()
            .expect("sluice token");
        format!("Bearer {}", String::from_utf8(out.stdout).expect("utf8").trim())
    };
    let (a, b, op) = (token("a", "logs:write"), token("b", "logs:write"), token("*", "admin"));
    let post = |auth: &str, org: &str| {
        let body: Vec<String> = (0..24)
            .map(|h| format!(r#"{{"organizationID":"{org}","environment":"prod","logType":"web","time":"2025-06-01T{h:02}:00:00Z"}}"#))
            .collect();
        let r = http(&serve.addr, "POST", "/v1/logs", &[("Authorization", auth)], body.join("\n").as_bytes())
            .expect("POST");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    post(&b, "b");
    post(&a, "a");
    let flushed = http(&serve.addr, "POST", "/v1/flush", &[("Authorization", &a)], b"").expect("flush");
    assert_eq!(flushed.status, 200);
    let orgs: BTreeSet<String> = crate::support::data_files(dir.path())
        .into_iter()
        .filter_map(|(part, _)| part.split('/').find_map(|p| p.strip_prefix("organization=")).map(str::to_owned))
        .collect();
    assert_eq!(orgs, BTreeSet::from(["a".to_owned()]), "tenant a's flush wrote only its own files");
    assert_eq!(http(&serve.addr, "POST", "/v1/flush", &[("Authorization", &op)], b"").expect("flush").status, 200);
    assert_eq!(crate::support::data_files(dir.path()).len(), 48, "an operator's flush writes every buffer");
    serve.terminate();
}

/// Issue 31, item 10: result files of a server that stopped were never deleted (26 GB on the
/// benchmark lake), and staged files a crash left in the lake were never swept.
#[test]
fn a_starting_server_sweeps_what_an_earlier_one_left() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &[]);
    send(&serve.addr, 0..5);
    flush(&serve.addr);
    let (_, v) = run_sql(&serve.addr, "SELECT * FROM logs");
    assert_eq!(v["state"], "SUCCEEDED");
    let results = dir.path().join("_results");
    let folders = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map_or(Vec::new(), |r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
    };
    let before = folders(&results);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(folders(&results.join(&before[0])).len(), 2, "the result file and the folder's lock");
    let (part, file) = crate::support::data_files(dir.path()).into_iter().next().expect("a data file");
    serve.kill9();
    // A writer that crashed between staging a file and renaming it.
    let staged = file.with_file_name(format!("{}#7", file.file_name().expect("name").to_string_lossy()));
    std::fs::write(&staged, b"torn").expect("staged");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&staged).expect("open").set_modified(old).expect("mtime");
    let fresh = file.with_file_name("import-abc.parquet#1");
    std::fs::write(&fresh, b"being written").expect("staged");
    let serve = Serve::start(dir.path(), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while staged.exists() {
        assert!(Instant::now() < deadline, "the staged file in {part} was not swept");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fresh.exists(), "a staged file written just now may be another writer's: it stays");
    let after = folders(&results);
    assert!(!after.contains(&before[0]), "the earlier server's results are gone: {after:?}");
    serve.terminate();
}

/// Issue 31, item 10: tokens minted without `--sub` shared one subject, so one tenant's
/// requests used up another's rate. Each token is its own subject now, and rates count per
/// subject and organizations.
#[test]
fn tokens_minted_without_a_subject_do_not_share_a_rate() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = "reliability-secret-reliability-secret-0123";
    let env = [("SLUICE_JWT_SECRET".to_owned(), secret.to_owned())];
    let serve = Serve::start_with(dir.path().to_str().expect("utf8"), &["--ingest-rate", "1"], &env);
    let token = |org: &str| {
        let out = Command::new(sluice_bin())
            .args(["token", "--org", org, "--roles", "logs:write", "--ttl", "10m"])
            .env("SLUICE_JWT_SECRET", secret)
            .output()
            .expect("sluice token");
        format!("Bearer {}", String::from_utf8(out.stdout).expect("utf8").trim())
    };
    let (a, b) = (token("a"), token("b"));
    let body = |org: &str| {
        format!(r#"{{"organizationID":"{org}","environment":"p","logType":"web","time":"2025-06-01T00:00:00Z"}}"#)
    };
    let post = |auth: &str, org: &str| {
        http(&serve.addr, "POST", "/v1/logs", &[("Authorization", auth)], body(org).as_bytes()).expect("POST").status
    };
    let statuses: Vec<u16> = (0..3).map(|_| post(&a, "a")).collect();
    assert_eq!(statuses, [200, 200, 429], "a burst of two, then the rate");
    assert_eq!(post(&b, "b"), 200, "another tenant's token has a rate of its own");
    serve.terminate();
}

/// Issue 31, item 10: there was no cap on open connections. One address holds at most
/// `--max-connections-per-address`; past it, new connections are closed at once, and a place
/// given back is taken again.
#[test]
fn one_address_cannot_hold_every_connection() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start(dir.path(), &["--max-connections-per-address", "4"]);
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&serve.addr).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = http(&serve.addr, "GET", "/healthz", &[], b"");
    assert!(refused.is_err(), "a fifth connection is closed: {:?}", refused.map(|r| r.status));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http(&serve.addr, "GET", "/healthz", &[], b"") {
            Ok(r) if r.status == 200 => break,
            _ => assert!(Instant::now() < deadline, "no connection accepted after the others closed"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    serve.terminate();
}

/// Free bytes of the filesystem holding `path` (`stat -f`: the path is followed into the
/// mount it lies on).
fn free_bytes(path: &std::path::Path) -> u64 {
    let out = Command::new("stat").args(["-f", "-c", "%a %S"]).arg(path).output().expect("stat -f");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().expect("a number"));
    it.next().expect("blocks") * it.next().expect("block size")
}

/// Issue 31, item 5: a read-only tenant's result could fill the log's disk (up to 64 GiB),
/// stopping ingest for everyone; a failed partial result stayed for 24 h; and the log, once a
/// write had failed, never took appends again, even after the disk had room. The server runs
/// here on a disk of its own (a 128 MiB tmpfs in a mount namespace of its own, which the test
/// reaches through `/proc/PID/root`).
#[test]
fn results_never_fill_the_logs_disk_and_the_log_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tmp");
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).expect("mount point");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--map-root-user", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=128m tmpfs "$1" && exec "$2" serve --auth none --listen 127.0.0.1:0 --lake "$1/lake" --wal-max 16 --results-reserve 48 --buffer-interval 1 --buffer-size 1"#)
        .args(["sh", disk.to_str().expect("utf8"), sluice_bin()])
        .env_remove("SLUICE_JWT_SECRET")
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null());
    let serve = Serve::spawn(cmd);
    let inside = std::path::PathBuf::from(format!("/proc/{}/root{}", serve.child.id(), disk.display()));
    let mut accepted = 0u64;
    let mut batch = |serve: &Serve, n: u64| -> u16 {
        let body: Vec<String> = (accepted..accepted + n).map(record).collect();
        let r = post_ndjson(&serve.addr, body.join("\n").as_bytes());
        if r.status == 200 {
            accepted += n;
        }
        r.status
    };
    assert_eq!(batch(&serve, 2000), 200);
    flush(&serve.addr);
    let free_before = free_bytes(&inside);

    // An export far larger than the disk: it stops at the reserve, its partial file goes at
    // once, and ingest goes on.
    let body = json!({"sql": "SELECT l.*, g.value FROM logs l CROSS JOIN generate_series(1, 5000) g"});
    let r =
        http(&serve.addr, "POST", "/v1/exports", &[("Content-Type", "application/json")], body.to_string().as_bytes())
            .expect("export");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let done = wait_done(&serve.addr, &format!("/v1/exports/{id}"));
    assert_eq!(done["state"], "FAILED", "{done}");
    assert_eq!(done["error"]["code"], "limit_exceeded", "{done}");
    assert!(done["error"]["message"].as_str().expect("message").contains("free"), "{done}");
    assert!(free_bytes(&inside) + (4 << 20) >= free_before, "the failed export's file was deleted");
    assert_eq!(batch(&serve, 100), 200, "ingest goes on after a result hit the reserve");

    // The disk fills up (another program): the log's writes fail and ingest answers 503 …
    let filler = inside.join("filler");
    let status = Command::new("fallocate")
        .args(["-l", &(free_bytes(&inside) - (256 << 10)).to_string()])
        .arg(&filler)
        .status()
        .expect("fallocate");
    assert!(status.success());
    let statuses: Vec<u16> = (0..20).map(|_| batch(&serve, 500)).collect();
    assert!(statuses.contains(&503), "a full disk is a 503: {statuses:?}");
    // … until the disk has room again, when it recovers by itself.
    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = Instant::now() + Duration::from_secs(30);
    while batch(&serve, 100) != 200 {
        assert!(Instant::now() < deadline, "the log did not take appends again once the disk had room");
        std::thread::sleep(Duration::from_millis(200));
    }
    flush(&serve.addr);
    let (_, v) = run_sql(&serve.addr, "SELECT count(*) AS n FROM logs");
    let id = v["id"].as_str().expect("id");
    let rows = http(&serve.addr, "GET", &format!("/v1/queries/{id}/results"), &[], b"").expect("results").json();
    assert_eq!(rows["rows"][0]["n"].as_u64(), Some(accepted), "every acknowledged record is in the lake");
    serve.terminate();
}
