//! Helpers: a `sluice serve` child process, a minimal HTTP/1.1 client, and a Parquet lake reader
//! that renders rows as the normalized JSON the transform produces.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use arrow_array::{
    Array, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `sluice serve` process.
pub struct Serve {
    pub child: Child,
    pub addr: String,
}

impl Serve {
    pub fn start(lake: &Path, extra: &[&str]) -> Self {
        Self::start_with(lake.to_str().expect("utf8"), extra, &[])
    }

    /// A server over the lake at `url` (a path or `s3://…`), with extra environment variables.
    /// Without `--auth` in `extra` or a key in `env`, the server runs with `--auth none` (it
    /// listens on loopback); `auth.rs` tests authentication itself.
    pub fn start_with(lake: &str, extra: &[&str], env: &[(String, String)]) -> Self {
        let keyed = extra.contains(&"--auth")
            || extra.contains(&"--jwks")
            || env.iter().any(|(k, _)| k == "SLUICE_JWT_SECRET" || k == "SLUICE_JWKS");
        let open: &[&str] = if keyed { &[] } else { &["--auth", "none"] };
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["serve", "--lake", lake, "--listen", "127.0.0.1:0"])
            .args(open)
            .args(extra)
            .env_remove("SLUICE_JWT_SECRET")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null());
        Self::spawn(cmd)
    }

    /// A server started by `cmd` (a `sluice serve` itself, or a wrapper that runs one), which
    /// must print `listening on http://ADDR` on its standard error.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start sluice serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        tx.send(addr.split_whitespace().next().unwrap_or_default().to_owned()).ok();
                    }
                } else if line.contains("ERROR") || line.contains("error") {
                    eprintln!("serve: {line}");
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("sluice serve printed its address");
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// kill -9.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        assert!(ok.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "sluice serve exited with {status}");
    }
}

impl Drop for Serve {
    /// A server a test did not stop is killed, so that no process outlives its test.
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// An HTTP endpoint on loopback that answers 200 to every POST and passes on each JSON body
/// (webhooks, SNS HTTP subscriptions).
pub fn http_sink() -> (String, mpsc::Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            let mut r = BufReader::new(s);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).expect("body");
            r.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").ok();
            if tx.send(serde_json::from_slice(&body).expect("a JSON body")).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A minimal HTTP/1.1 request over a fresh connection.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // A server may answer before reading the whole body (413): read its answer even if sending failed.
    let sent = s.write_all(req.as_bytes()).and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if raw.is_empty() {
        sent?;
        read?;
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(std::io::ErrorKind::InvalidData.into());
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Response { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[p + 2 + n + 2..];
    }
    out
}

/// Polls `GET path` (with `headers`) until the execution or export it shows leaves RUNNING.
pub fn wait_done_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = http(addr, "GET", path, headers, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
        let s = r.json();
        if s["state"] != "RUNNING" {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{path} still running: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_done_with`] without headers.
pub fn wait_done(addr: &str, path: &str) -> Value {
    wait_done_with(addr, path, &[])
}

pub fn post_ndjson(addr: &str, body: &[u8]) -> Response {
    http(addr, "POST", "/v1/logs", &[("Content-Type", "application/x-ndjson")], body).expect("POST /v1/logs")
}

pub fn flush(addr: &str) {
    let r = http(addr, "POST", "/v1/flush", &[], b"").expect("flush");
    assert_eq!(r.status, 200);
}

/// Every file under `dir`, at any depth (none when `dir` does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for p in rd.flatten().map(|e| e.path()) {
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

/// Every Parquet file under `{lake}/logs`, as (relative partition path, file).
pub fn data_files(lake: &Path) -> Vec<(String, PathBuf)> {
    let logs = lake.join("logs");
    let mut out: Vec<(String, PathBuf)> = files_under(&logs)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            let rel = p.parent().expect("parent").strip_prefix(&logs).expect("under logs");
            (rel.to_string_lossy().into_owned(), p)
        })
        .collect();
    out.sort();
    out
}

fn time_text(v: i64) -> Value {
    Value::String(sluice_schemas::format_time(v))
}

fn cell(col: &dyn Array, i: usize) -> Option<Value> {
    if col.is_null(i) {
        return None;
    }
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Some(Value::String(a.value(i).to_owned()));
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(Value::from(a.value(i)));
    }
    if let Some(a) = any.downcast_ref::<BooleanArray>() {
        return Some(Value::Bool(a.value(i)));
    }
    if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
        return Some(time_text(a.value(i)));
    }
    if let Some(a) = any.downcast_ref::<ListArray>() {
        let items = a.value(i);
        let s = items.as_any().downcast_ref::<StructArray>().expect("list of structs");
        return Some(Value::Array((0..s.len()).map(|j| struct_obj(s, j)).collect()));
    }
    panic!("unexpected column type {:?}", col.data_type())
}

fn struct_obj(s: &StructArray, j: usize) -> Value {
    let mut m = Map::new();
    for (f, c) in s.fields().iter().zip(s.columns()) {
        if let Some(v) = cell(c.as_ref(), j) {
            m.insert(f.name().clone(), v);
        }
    }
    Value::Object(m)
}

/// Rows of a batch as JSON objects with lake column names, nulls left out, timestamps as the
/// transform writes them: the same shape as the normalized JSON line.
pub fn batch_rows(b: &RecordBatch) -> Vec<Value> {
    (0..b.num_rows())
        .map(|i| {
            let mut m = Map::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                if let Some(v) = cell(c.as_ref(), i) {
                    m.insert(f.name().clone(), v);
                }
            }
            Value::Object(m)
        })
        .collect()
}

/// Every row of the lake with its partition path.
pub fn lake_rows(lake: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (part, file) in data_files(lake) {
        let f = std::fs::File::open(&file).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet").build().expect("reader");
        for b in reader {
            for row in batch_rows(&b.expect("batch")) {
                out.push((part.clone(), row));
            }
        }
    }
    out
}

/// Error records under `{lake}/errors`.
pub fn error_records(lake: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for p in files_under(&lake.join("errors")) {
        for line in std::fs::read_to_string(&p).expect("read").lines().filter(|l| !l.is_empty()) {
            out.push(serde_json::from_str(line).expect("error record JSON"));
        }
    }
    out
}

/// The Python with DuckDB that `scripts/test.sh` installs (or `SLUICE_PYTHON`).
pub fn duckdb_python() -> PathBuf {
    let p = std::env::var_os("SLUICE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sluice/venv/bin/python")
    });
    assert!(
        p.exists(),
        "DuckDB's Python is not at {}: run ./scripts/test.sh (it installs duckdb from PyPI into a virtualenv) or set SLUICE_PYTHON",
        p.display()
    );
    p
}
