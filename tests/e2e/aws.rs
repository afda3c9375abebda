//! AWS mode without an account: S3 lakes against `s3s-fs` started inside this process, SNS and
//! Athena request shapes against moto server (from PyPI), and the Terraform checked against the
//! code it deploys.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{Serve, duckdb_python, flush, http, http_sink, post_ndjson, root, sluice_bin, wait_done};

const KEY: &str = "sluice-test-key";
const SECRET: &str = "sluice-test-secret";

/// The standard AWS settings pointing every client at `endpoint`, with static test credentials
/// and no profile files or instance metadata.
fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/sluice-test-config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/sluice-test-credentials"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `sluice ARGS` with `env`; returns its output.
fn sluice(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

// --- S3 lakes on s3s-fs --------------------------------------------------------------------------

/// An S3 server (`s3s-fs`, real S3 protocol with SigV4 authentication) over a temporary folder,
/// running on a runtime of its own inside the test process.
struct S3 {
    endpoint: String,
    root: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl S3 {
    fn start(buckets: &[&str]) -> Self {
        use hyper_util::{
            rt::{TokioExecutor, TokioIo},
            server::conn::auto::Builder,
        };
        let root = tempfile::tempdir().expect("tmp");
        for b in buckets {
            std::fs::create_dir(root.path().join(b)).expect("bucket");
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(KEY, SECRET));
        let service = b.build();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        rt.spawn(async move {
            let http = Builder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    conn.await.ok();
                });
            }
        });
        Self { endpoint, root, _rt: rt }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

fn post_json(addr: &str, path: &str, body: &Value) -> Value {
    let r =
        http(addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes()).expect("POST");
    assert!(r.status == 202 || r.status == 200, "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn s3_lake_ingest_query_export_import_and_replay() {
    // Short bucket and prefix names: s3s-fs keeps each object's metadata in one file named after
    // the base64 of bucket and key, which must fit the file system's 255-byte name limit.
    let s3 = S3::start(&["lake"]);
    // With an S3 lake the log and the results default to ./sluice-wal and ./sluice-results: the
    // test keeps them out of the working directory.
    let local = tempfile::tempdir().expect("tempdir");
    let mut env = aws_env(&s3.endpoint);
    for (var, dir) in [("SLUICE_WAL_DIR", "wal"), ("SLUICE_RESULTS_DIR", "results")] {
        env.push((var.to_owned(), local.path().join(dir).to_str().expect("utf8").to_owned()));
    }
    let records = std::fs::read_to_string(root().join("sample-data/records.ndjson")).expect("sample");
    let good: Vec<&str> = records.lines().take(400).collect();
    let bad =
        "{\"organizationID\":\"1\",\"environment\":\"dev\",\"logType\":\"nope\",\"time\":\"2025-01-01T00:00:00Z\"}";

    // serve → S3 lake → query API → export API.
    let serve = Serve::start_with("s3://lake/p", &[], &env);
    // One server a lake, on S3 too: a second one (its own log) finds the first one's lease.
    let mut other = env.clone();
    other.retain(|(k, _)| k != "SLUICE_WAL_DIR" && k != "SLUICE_RESULTS_DIR");
    other.push(("SLUICE_WAL_DIR".to_owned(), local.path().join("wal2").to_str().expect("utf8").to_owned()));
    let second = sluice(&["serve", "--auth", "none", "--listen", "127.0.0.1:0", "--lake", "s3://lake/p"], &other);
    assert!(!second.status.success(), "a second server on the S3 lake started");
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(
        msg.contains("in use by another sluice process") && msg.contains(&format!("pid {}", serve.child.id())),
        "{msg}"
    );
    let body = format!("{}\n{bad}\n", good.join("\n"));
    let r = post_ndjson(&serve.addr, body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], good.len());
    flush(&serve.addr);
    let parquet = files_ending(&s3.path("lake/p/logs"), ".parquet");
    assert!(!parquet.is_empty(), "no Parquet objects in the bucket");
    for p in &parquet {
        let rel = p.strip_prefix(s3.path("lake/p")).expect("under the prefix").to_string_lossy().into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        let keys: Vec<&str> = parts[1..8].iter().map(|p| p.split('=').next().unwrap_or_default()).collect();
        assert_eq!(keys, ["environment", "organization", "logtype", "year", "month", "day", "hour"], "{rel}");
    }
    let errors = files_ending(&s3.path("lake/p/errors/processing-failed"), "");
    assert_eq!(errors.len(), 1, "one error object: {errors:?}");

    let q = post_json(&serve.addr, "/v1/queries", &json!({"sql": "SELECT count(DISTINCT record_id) AS n FROM logs"}));
    let id = q["id"].as_str().expect("id");
    let done = wait_done(&serve.addr, &format!("/v1/queries/{id}"));
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let page = http(&serve.addr, "GET", &format!("/v1/queries/{id}/results"), &[], b"").expect("results").json();
    assert_eq!(page["rows"][0]["n"], good.len());

    let e = post_json(&serve.addr, "/v1/exports", &json!({"sql": "SELECT record_id FROM logs ORDER BY record_id"}));
    let eid = e["id"].as_str().expect("id");
    let done = wait_done(&serve.addr, &format!("/v1/exports/{eid}"));
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let csv = http(&serve.addr, "GET", &format!("/v1/exports/{eid}/download"), &[], b"").expect("download");
    assert_eq!(String::from_utf8_lossy(&csv.body).lines().count(), good.len() + 1);
    serve.terminate();

    // sluice replay over the S3 lake: the unknown log type is still unknown, so it stays an error.
    let out = sluice(&["replay", "--lake", "s3://lake/p"], &env);
    assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown_log_type"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // sluice import and sluice query and sluice export straight against S3.
    // (Only the log types of three letters: longer import keys make s3s-fs's metadata file names,
    // base64 of bucket and key, pass 255 bytes; S3 itself takes keys of 1,024 bytes.)
    let sample = short_log_type_records(&records);
    let file = sample.path().join("records.ndjson");
    ok(&sluice(&["import", "--quiet", "--lake", "s3://lake/i", file.to_str().expect("utf8")], &env));
    let out = ok(&sluice(
        &["query", "--lake", "s3://lake/i", "--format", "csv", "-c", "SELECT count(*) AS n FROM logs"],
        &env,
    ));
    let imported = records.lines().filter(|l| short_log_type(l)).count();
    assert_eq!(out.lines().nth(1), Some(imported.to_string().as_str()), "{out}");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("web.csv");
    ok(&sluice(
        &[
            "export",
            "--quiet",
            "--lake",
            "s3://lake/i",
            "-c",
            "SELECT record_id FROM logs_web ORDER BY record_id",
            "-o",
            file.to_str().expect("utf8"),
        ],
        &env,
    ));
    let web = ok(&sluice(
        &["query", "--lake", "s3://lake/i", "--format", "csv", "-c", "SELECT count(*) FROM logs_web"],
        &env,
    ));
    let n: usize = web.lines().nth(1).expect("count").parse().expect("number");
    assert_eq!(std::fs::read_to_string(&file).expect("csv").lines().count(), n + 1);

    // Wrong credentials: a clear error, not a hang.
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY".into(), "wrong".into()));
    let out = sluice(&["query", "--lake", "s3://lake/i", "-c", "SELECT count(*) FROM logs"], &wrong);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn short_log_type(line: &str) -> bool {
    ["web", "app", "agw", "hub"].iter().any(|t| line.contains(&format!("\"logType\":\"{t}\"")))
}

/// A folder holding `records.ndjson`: the sample records of the short log types.
fn short_log_type_records(records: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("records.ndjson");
    let kept: Vec<&str> = records.lines().filter(|l| short_log_type(l)).collect();
    std::fs::write(&file, kept.join("\n")).expect("write");
    dir
}

// --- moto server ---------------------------------------------------------------------------------

/// A moto server (PyPI) on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new(duckdb_python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto server (scripts/test.sh installs moto[server] into the test virtualenv)");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(&addr, "GET", "/moto-api/", &[], b"").is_err() {
            assert!(Instant::now() < deadline, "moto server did not start on {addr}");
            std::thread::sleep(Duration::from_millis(200));
        }
        Self { child, endpoint: format!("http://{addr}") }
    }

    fn addr(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    /// One call of an AWS query-protocol API (SNS); moto does not check signatures, but finds the
    /// service from the credential scope.
    fn query_api(&self, service: &str, params: &[(&str, &str)]) -> String {
        let body: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
        let auth = moto_auth(service);
        let r = http(
            self.addr(),
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", &auth)],
            body.join("&").as_bytes(),
        )
        .expect("moto");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 200, "{service} {params:?}: {text}");
        text
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {xml}")) + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).expect("closing tag") + start;
    xml[start..end].to_owned()
}

#[test]
fn sns_publish_sends_valid_records_in_batches_and_rejects_the_rest_first() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint);
    let topic = xml_value(&moto.query_api("sns", &[("Action", "CreateTopic"), ("Name", "sluice-logs")]), "TopicArn");
    let (sink, messages) = http_sink();
    moto.query_api("sns", &[("Action", "Subscribe"), ("TopicArn", &topic), ("Protocol", "http"), ("Endpoint", &sink)]);

    let records = std::fs::read_to_string(root().join("sample-data/records.ndjson")).expect("sample");
    let good: Vec<&str> = records.lines().take(45).collect();
    let too_large = format!(
        "{{\"organizationID\":\"1\",\"environment\":\"dev\",\"logType\":\"web\",\"time\":\"2025-01-01T00:00:00Z\",\"detail\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    let unknown = r#"{"organizationID":"1","environment":"dev","logType":"nope","time":"2025-01-01T00:00:00Z"}"#;
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, format!("{}\n{too_large}\n{unknown}\n", good.join("\n"))).expect("write");

    let out = sluice(&["publish", "--quiet", "--to", &format!("sns://{topic}"), input.to_str().expect("utf8")], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "rejections make exit 1: {stderr}");
    assert!(stderr.contains("sent 47 records: 45 accepted, 2 rejected"), "{stderr}");
    assert!(stderr.contains("record_too_large") && stderr.contains("line 46"), "{stderr}");
    assert!(stderr.contains("unknown_log_type") && stderr.contains("line 47"), "{stderr}");

    // Every accepted record reached the topic's subscriber, byte for byte.
    let mut got: Vec<String> = (0..good.len())
        .map(|_| {
            let n = messages.recv_timeout(Duration::from_secs(30)).expect("an SNS notification");
            assert_eq!(n["TopicArn"], topic.as_str());
            n["Message"].as_str().expect("Message").to_owned()
        })
        .collect();
    assert!(messages.recv_timeout(Duration::from_millis(500)).is_err(), "rejected records were not sent");
    let mut want: Vec<String> = good.iter().map(|s| (*s).to_owned()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // Without --no-validate the contract is checked; with it, the unknown type goes out as is.
    std::fs::write(&input, format!("{unknown}\n")).expect("write");
    let out = sluice(
        &["publish", "--quiet", "--no-validate", "--to", &format!("sns://{topic}"), input.to_str().expect("utf8")],
        &env,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n = messages.recv_timeout(Duration::from_secs(30)).expect("notification");
    assert_eq!(n["Message"], unknown);

    // A topic that does not exist: a clear error naming what to check.
    std::fs::write(&input, format!("{}\n", good[0])).expect("write");
    let out = sluice(
        &[
            "publish",
            "--quiet",
            "--to",
            "sns://arn:aws:sns:us-east-1:123456789012:missing",
            input.to_str().expect("utf8"),
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("topic ARN"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = sluice(&["publish", "--to", "sns://not-an-arn", input.to_str().expect("utf8")], &env);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an SNS topic ARN"));
}

#[test]
fn tracing_layer_ships_a_services_own_logs_as_valid_records() {
    use sluice_producer::sns::{ServiceIdentity, SnsOptions, SnsPublisher, sns_layer};
    use tracing_subscriber::layer::SubscriberExt as _;

    let moto = Moto::start();
    let topic = xml_value(&moto.query_api("sns", &[("Action", "CreateTopic"), ("Name", "service-logs")]), "TopicArn");
    let (sink, messages) = http_sink();
    moto.query_api("sns", &[("Action", "Subscribe"), ("TopicArn", &topic), ("Protocol", "http"), ("Endpoint", &sink)]);
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_sns::config::Credentials::new(KEY, SECRET, None, None, "test"))
        .build();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let publisher = SnsPublisher::with_client(aws_sdk_sns::Client::from_conf(config), SnsOptions::new(&topic));
    let identity = ServiceIdentity {
        environment: "dev".into(),
        organization: "42".into(),
        log_type: "app".into(),
        server: "billing".into(),
    };
    let (layer, shipper) = rt.block_on(async { sns_layer(publisher, identity, 1000) });
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(transaction_id = "t-1", user = "u-7", attempt = 2, "request received");
        tracing::error!(target: "billing::charge", "card declined");
        tracing::warn!(target: "aws_smithy_runtime", "never shipped: the SDK's own events would feed back");
    });
    let summary = rt.block_on(shipper.shutdown());
    assert_eq!((summary.sent, summary.accepted), (2, 2), "{summary:?}");

    let contract = sluice_schemas::Contract::default();
    let ctx = sluice_schemas::Context { record_id: "x".into(), arrival_micros: chrono::Utc::now().timestamp_micros() };
    let mut records: Vec<Value> = (0..2)
        .map(|_| {
            let n = messages.recv_timeout(Duration::from_secs(30)).expect("notification");
            let text = n["Message"].as_str().expect("Message").to_owned();
            contract.parse(text.as_bytes(), &ctx).unwrap_or_else(|r| panic!("the transform rejects {text}: {r}"));
            serde_json::from_str(&text).expect("JSON")
        })
        .collect();
    records.sort_by_key(|r| r["type"].as_str().unwrap_or_default().to_owned());
    let (error, info) = (&records[0], &records[1]);
    assert_eq!(info["description"], "request received");
    assert_eq!(info["transactionId"], "t-1");
    assert_eq!(info["detail"], json!({"attempt": 2, "user": "u-7"}));
    assert_eq!(
        (&info["organizationID"], &info["environment"], &info["logType"]),
        (&json!("42"), &json!("dev"), &json!("app"))
    );
    assert_eq!(error["success"], false);
    assert_eq!(error["action"], "billing::charge");
    assert!(messages.recv_timeout(Duration::from_millis(500)).is_err(), "the SDK's event was not shipped");
}

/// An `Authorization` header moto accepts: it checks no signature but reads the service from the
/// credential scope.
fn moto_auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

impl Moto {
    /// One call of an AWS JSON-protocol API (Athena).
    fn json_api(&self, service: &str, target: &str, body: &Value) -> Value {
        let auth = moto_auth(service);
        let r = http(
            self.addr(),
            "POST",
            "/",
            &[("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", target), ("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
        .expect("moto");
        assert_eq!(r.status, 200, "{target}: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Queues the result of the next Athena query (moto writes it to the result location as CSV).
    fn athena_result(&self, columns: &[(&str, &str)], rows: &[Vec<Option<&str>>]) {
        let cell = |v: Option<&str>| v.map_or(json!({}), |v| json!({ "VarCharValue": v }));
        let mut all = vec![json!({ "Data": columns.iter().map(|(n, _)| cell(Some(n))).collect::<Vec<_>>() })];
        all.extend(rows.iter().map(|r| json!({ "Data": r.iter().map(|v| cell(*v)).collect::<Vec<_>>() })));
        let info: Vec<Value> = columns.iter().map(|(n, t)| json!({ "Name": n, "Type": t })).collect();
        let body = json!({ "results": [{ "rows": all, "column_info": info }] });
        let r = http(self.addr(), "POST", "/moto-api/static/athena/query-results", &[], body.to_string().as_bytes())
            .expect("moto-api");
        assert_eq!(r.status, 201);
    }
}

/// GETs an absolute http:// URL (a presigned URL on moto).
fn get_url(url: &str) -> crate::support::Response {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("path");
    http(host, "GET", &format!("/{path}"), &[], b"").expect("GET")
}

#[test]
fn athena_engine_runs_queries_reads_the_result_file_and_hands_out_presigned_exports() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint);
    let r = http(moto.addr(), "PUT", "/athena-results", &[], b"").expect("create bucket");
    assert_eq!(r.status, 200);
    moto.json_api("athena", "AmazonAthena.CreateWorkGroup", &json!({ "Name": "sluice", "Description": "test" }));
    let athena_flags = [
        "--engine",
        "athena",
        "--workgroup",
        "sluice",
        "--database",
        "sluice",
        "--output-location",
        "s3://athena-results/q/",
    ];
    let columns = [("logtype", "varchar"), ("n", "bigint")];

    // sluice query: polls until SUCCEEDED, then reads and types the result CSV from S3.
    moto.athena_result(&columns, &[vec![Some("web"), Some("12")], vec![Some("=cmd|x"), None]]);
    let mut args = vec!["query", "--format", "json", "-c", "SELECT logtype, count(*) AS n FROM logs GROUP BY 1"];
    args.extend(athena_flags);
    let out = ok(&sluice(&args, &env));
    let rows: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(rows, json!([{ "logtype": "web", "n": 12 }, { "logtype": "=cmd|x", "n": null }]));

    // The export API in AWS mode: the download link is a presigned S3 URL; formula protection
    // on makes the server write a protected copy, off hands out Athena's own file.
    let lake = tempfile::tempdir().expect("tmp");
    let mut serve_args = vec!["--query-only"];
    serve_args.extend(athena_flags);
    let serve = Serve::start_with(lake.path().to_str().expect("utf8"), &serve_args, &env);
    for (protect, first_cell) in [(true, "'=cmd|x"), (false, "=cmd|x")] {
        moto.athena_result(&columns, &[vec![Some("=cmd|x"), Some("1")]]);
        let e = post_json(&serve.addr, "/v1/exports", &json!({ "sql": "SELECT 1", "protect_formulas": protect }));
        let id = e["id"].as_str().expect("id");
        let done = wait_done(&serve.addr, &format!("/v1/exports/{id}"));
        assert_eq!(done["state"], "SUCCEEDED", "{done}");
        assert!(done["athena_query_id"].is_string(), "{done}");
        let url = done["download_url"].as_str().expect("download_url");
        assert!(url.contains("X-Amz-Signature="), "a presigned URL: {url}");
        assert_eq!(url.contains("/exports/"), protect, "{url}");
        let csv = get_url(url);
        assert_eq!(csv.status, 200, "{}", String::from_utf8_lossy(&csv.body));
        let text = String::from_utf8_lossy(&csv.body).into_owned();
        let second = text.lines().nth(1).expect("a row");
        assert!(second.trim_matches('"').starts_with(first_cell), "protect={protect}: {text}");
        let redirect = http(&serve.addr, "GET", &format!("/v1/exports/{id}/download"), &[], b"").expect("download");
        assert_eq!(redirect.status, 307);
    }

    // Cancelling stops the Athena query (moto keeps it queued until told otherwise).
    let manual = json!({ "model_name": "athena::execution", "transition": { "progression": "manual", "times": 1000 } });
    http(moto.addr(), "POST", "/moto-api/state-manager/set-transition", &[], manual.to_string().as_bytes())
        .expect("state manager");
    let q = post_json(&serve.addr, "/v1/queries", &json!({ "sql": "SELECT 1" }));
    let id = q["id"].as_str().expect("id");
    let status = http(&serve.addr, "GET", &format!("/v1/queries/{id}"), &[], b"").expect("status").json();
    let query = status["athena_query_id"].as_str().expect("athena id").to_owned();
    let r = http(&serve.addr, "DELETE", &format!("/v1/queries/{id}"), &[], b"").expect("cancel");
    assert!(r.status == 200 || r.status == 202, "{}", String::from_utf8_lossy(&r.body));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = moto.json_api("athena", "AmazonAthena.GetQueryExecution", &json!({ "QueryExecutionId": query }));
        if got["QueryExecution"]["Status"]["State"] == "CANCELLED" {
            break;
        }
        assert!(Instant::now() < deadline, "the Athena query was not stopped: {got}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
