//! Authentication, roles and tenant isolation, against `sluice serve` as users run it: tokens
//! from `sluice token`, sentinel rows of one tenant that no endpoint may show another, hostile
//! tokens, other tenants' ids, rate limits and slow clients.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{Datelike, Timelike};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{Response, Serve, error_records, http, sluice_bin, wait_done_with};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const AUDIENCE: &str = "sluice-tests";

/// A token from `sluice token`, as an operator mints one.
pub fn token(sub: &str, orgs: &str, roles: &str) -> String {
    let out = Command::new(sluice_bin())
        .args(["token", "--sub", sub, "--org", orgs, "--roles", roles, "--ttl", "10m", "--aud", AUDIENCE])
        .env("SLUICE_JWT_SECRET", SECRET)
        .output()
        .expect("sluice token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

/// A token signed here, for the claims and keys `sluice token` would never produce.
fn forge(claims: &Value, alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

fn claims(org: &str, roles: &[&str], exp: u64, aud: &str) -> Value {
    json!({"sub": "forger", "org": org, "roles": roles, "exp": exp, "aud": aud})
}

fn call(addr: &str, method: &str, path: &str, token: &str, body: &[u8]) -> Response {
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    http(addr, method, path, &headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get(addr: &str, path: &str, token: &str) -> Response {
    call(addr, "GET", path, token, b"")
}

fn post(addr: &str, path: &str, token: &str, body: &Value) -> Response {
    call(addr, "POST", path, token, body.to_string().as_bytes())
}

fn ingest(addr: &str, token: &str, records: &[Value]) -> Value {
    let body: Vec<u8> = records.iter().flat_map(|r| format!("{r}\n").into_bytes()).collect();
    let auth = format!("Bearer {token}");
    let r = http(
        addr,
        "POST",
        "/v1/logs",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/x-ndjson")],
        &body,
    )
    .expect("POST /v1/logs");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Records of organization `org`: web records whose text carries the sentinel, and an app
/// record with events, in two environments, under the transaction id `tx-{org}`.
fn records(org: &str) -> Vec<Value> {
    let sentinel = format!("SENTINEL-{org}");
    let t = chrono::Utc::now() - chrono::Duration::minutes(30);
    let time = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut v: Vec<Value> = ["prod", "dev"]
        .iter()
        .map(|env| {
            json!({"organizationID": org, "environment": env, "logType": "web", "time": time,
                   "description": format!("{sentinel} login"), "action": "login", "transactionId": format!("tx-{org}")})
        })
        .collect();
    v.push(json!({"organizationID": org, "environment": "prod", "logType": "app", "time": time,
        "description": sentinel, "transactionId": format!("tx-{org}"),
        "events": [{"time": time, "action": "step", "description": format!("{sentinel} event"),
                    "transactionId": format!("tx-{org}"), "type": "request", "success": true}]}));
    v
}

/// Polls an execution until it leaves RUNNING.
fn wait_done(addr: &str, path: &str, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    wait_done_with(addr, path, &[("Authorization", auth.as_str())])
}

/// Runs `sql` through the query API as `token` and returns every page of its result as text.
fn query_text(addr: &str, token: &str, sql: &str) -> String {
    let r = post(addr, "/v1/queries", token, &json!({ "sql": sql }));
    assert_eq!(r.status, 202, "{sql}: {}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let s = wait_done(addr, &format!("/v1/queries/{id}"), token);
    assert_eq!(s["state"], "SUCCEEDED", "{sql}: {s}");
    let mut text = String::new();
    let mut cursor = String::new();
    loop {
        let r = get(addr, &format!("/v1/queries/{id}/results?page_size=500{cursor}"), token);
        assert_eq!(r.status, 200);
        let page = r.json();
        text.push_str(&page["rows"].to_string());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return text,
        }
    }
}

/// Runs an export as `token` and returns the CSV.
fn export_csv(addr: &str, token: &str, request: &Value) -> String {
    let r = post(addr, "/v1/exports", token, request);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let s = wait_done(addr, &format!("/v1/exports/{id}"), token);
    assert_eq!(s["state"], "SUCCEEDED", "{s}");
    let r = get(addr, &format!("/v1/exports/{id}/download"), token);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).expect("utf8")
}

pub fn secret_env() -> Vec<(String, String)> {
    vec![("SLUICE_JWT_SECRET".into(), SECRET.into())]
}

#[test]
fn tenants_never_see_each_others_rows_through_any_endpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = dir.path();
    let serve = Serve::start_with(lake.to_str().expect("utf8"), &["--jwt-audience", AUDIENCE], &secret_env());
    let addr = serve.addr.as_str();
    let (acme_w, globex_w) = (token("acme-svc", "acme", "logs:write"), token("globex-svc", "globex", "logs:write"));
    let operator = token("ops", "*", "admin");

    // Ingest: a producer writes its own organization only.
    let answer = ingest(addr, &acme_w, &records("acme"));
    assert_eq!(answer["accepted"], 3, "{answer}");
    let answer = ingest(addr, &globex_w, &records("globex"));
    assert_eq!(answer["accepted"], 3, "{answer}");
    let mut forged = records("globex");
    forged.truncate(1);
    forged[0]["description"] = json!("written by acme as globex");
    let answer = ingest(addr, &acme_w, &forged);
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(0), Some(1)), "{answer}");
    assert_eq!(answer["errors"][0]["code"], "forbidden_organization", "{answer}");
    assert_eq!(post(addr, "/v1/flush", &operator, &json!({})).status, 200);
    let errors = error_records(lake);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["errorCode"], "forbidden_organization");

    let acme = token("acme-analyst", "acme", "logs:read,exports:write");
    let globex = token("globex-analyst", "globex", "logs:read,exports:write");
    let leaks = |text: &str| text.contains("SENTINEL-globex") || text.contains("globex");

    // SQL: every table, view and trick sees acme's partitions only.
    for sql in [
        "SELECT * FROM logs",
        "SELECT description, organization FROM logs UNION ALL SELECT description, organization FROM logs_web",
        "SELECT * FROM (SELECT * FROM logs WHERE organization = 'globex') AS t",
        "SELECT * FROM logs WHERE organization IN (SELECT organization FROM logs_app)",
        "SELECT organization, count(*) FROM logs GROUP BY organization",
        "SELECT * FROM events",
        "SELECT * FROM logs_app",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SELECT * FROM logs a JOIN logs b ON a.transaction_id = b.transaction_id",
        "SELECT count(*) AS n FROM logs WHERE environment IN ('prod', 'dev') AND organization <> 'acme'",
    ] {
        let text = query_text(addr, &acme, sql);
        assert!(!leaks(&text), "{sql} leaked another tenant's rows: {text}");
    }
    // Pinned hours: the scan lists partition folders itself, within the scope all the same.
    let hours =
        [chrono::Utc::now() - chrono::Duration::minutes(31), chrono::Utc::now() - chrono::Duration::minutes(29)];
    let pins = format!(
        "day IN ({}, {}) AND hour IN ({}, {})",
        hours[0].day(),
        hours[1].day(),
        hours[0].hour(),
        hours[1].hour()
    );
    let pinned = query_text(addr, &acme, &format!("SELECT organization, description FROM logs WHERE {pins}"));
    assert!(!leaks(&pinned) && pinned.matches("SENTINEL-acme").count() == 3, "{pinned}");
    let text = query_text(addr, &acme, &format!("SELECT * FROM logs WHERE organization = 'globex' AND {pins}"));
    assert!(!leaks(&text), "a pinned scan leaked: {text}");
    let mine = query_text(addr, &acme, "SELECT description, environment, organization FROM logs");
    assert!(mine.contains("SENTINEL-acme") && mine.contains("\"dev\"") && mine.contains("\"prod\""), "{mine}");
    assert!(query_text(addr, &acme, "SELECT description FROM events").contains("SENTINEL-acme event"));
    assert!(query_text(addr, &acme, "SELECT count(*) AS n FROM logs").contains("\"n\":3"));
    let all = query_text(addr, &operator, "SELECT organization, description FROM logs");
    assert!(all.contains("SENTINEL-acme") && all.contains("SENTINEL-globex"), "operators see everything: {all}");

    // Search and trace.
    let from = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for q in [format!("/v1/search?q=SENTINEL&from={from}"), format!("/v1/search?organization=globex&from={from}")] {
        let r = get(addr, &q, &acme);
        assert_eq!(r.status, 200);
        assert!(!leaks(&String::from_utf8_lossy(&r.body)), "{q}");
    }
    let r = get(addr, &format!("/v1/search?q=SENTINEL&from={from}"), &acme);
    assert_eq!(r.json()["rows"].as_array().map(Vec::len), Some(3));
    assert_eq!(get(addr, "/v1/trace/tx-globex", &acme).status, 404);
    let r = get(addr, "/v1/trace/tx-acme", &acme);
    assert_eq!(r.status, 200);
    assert!(!leaks(&String::from_utf8_lossy(&r.body)));

    // Exports, by SQL and by search.
    let csv = export_csv(addr, &acme, &json!({"sql": "SELECT * FROM logs UNION ALL SELECT * FROM logs"}));
    assert!(csv.contains("SENTINEL-acme") && !leaks(&csv), "{csv}");
    let csv = export_csv(addr, &acme, &json!({"search": {"q": "SENTINEL", "from": from}}));
    assert!(csv.contains("SENTINEL-acme") && !leaks(&csv), "{csv}");

    // A tenant's webhook may not call the server's own network.
    for hook in ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]:9/"] {
        let r = post(addr, "/v1/exports", &acme, &json!({"sql": "SELECT 1", "notify": {"webhook_url": hook}}));
        assert_eq!(r.status, 400, "{hook}: {}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains("public"), "{hook}");
    }

    // Another tenant's query and export ids are 404 on every route.
    let r = post(addr, "/v1/queries", &globex, &json!({"sql": "SELECT * FROM logs"}));
    let qid = r.json()["id"].as_str().expect("id").to_owned();
    wait_done(addr, &format!("/v1/queries/{qid}"), &globex);
    let r = post(addr, "/v1/exports", &globex, &json!({"sql": "SELECT * FROM logs"}));
    let eid = r.json()["id"].as_str().expect("id").to_owned();
    wait_done(addr, &format!("/v1/exports/{eid}"), &globex);
    for (method, path) in [
        ("GET", format!("/v1/queries/{qid}")),
        ("GET", format!("/v1/queries/{qid}/results")),
        ("DELETE", format!("/v1/queries/{qid}")),
        ("GET", format!("/v1/exports/{eid}")),
        ("GET", format!("/v1/exports/{eid}/events")),
        ("GET", format!("/v1/exports/{eid}/download")),
    ] {
        let r = call(addr, method, &path, &acme, b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", String::from_utf8_lossy(&r.body));
    }
    // …while the owner still has them.
    assert_eq!(get(addr, &format!("/v1/exports/{eid}/download"), &globex).status, 200);
    serve.terminate();
}

#[test]
fn hostile_tokens_and_missing_roles_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start_with(dir.path().to_str().expect("utf8"), &["--jwt-audience", AUDIENCE], &secret_env());
    let addr = serve.addr.as_str();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let good = claims("acme", &["logs:read"], now() + 600, AUDIENCE);
    let valid = forge(&good, Algorithm::HS256, &key, None);
    assert_eq!(get(addr, "/v1/search", &valid).status, 200, "the forged-but-valid token works");

    let header_none = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{header_none}.{}.", B64.encode(good.to_string()));
    let other_key =
        forge(&good, Algorithm::HS256, &EncodingKey::from_secret(b"another-secret-another-secret-xx"), None);
    let expired = forge(&claims("acme", &["logs:read"], now() - 3600, AUDIENCE), Algorithm::HS256, &key, None);
    let wrong_aud = forge(&claims("acme", &["logs:read"], now() + 600, "someone-else"), Algorithm::HS256, &key, None);
    let no_exp = forge(
        &json!({"sub": "x", "org": "acme", "roles": ["logs:read"], "aud": AUDIENCE}),
        Algorithm::HS256,
        &key,
        None,
    );
    let bad_org = forge(&claims("../etc", &["logs:read"], now() + 600, AUDIENCE), Algorithm::HS256, &key, None);
    let hs384 = forge(&good, Algorithm::HS384, &key, None);
    for (name, t) in [
        ("alg=none", alg_none.as_str()),
        ("wrong key", &other_key),
        ("expired", &expired),
        ("wrong audience", &wrong_aud),
        ("no exp", &no_exp),
        ("org that is not a partition value", &bad_org),
        ("another algorithm", &hs384),
        ("garbage", "not-a-token"),
    ] {
        let r = get(addr, "/v1/search", t);
        assert_eq!(r.status, 401, "{name}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["error"]["code"], "invalid_token", "{name}");
        assert!(r.headers.get("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{name}");
    }
    let r = http(addr, "GET", "/v1/search", &[], b"").expect("GET");
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("unauthenticated")));
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").expect("GET").status, 200, "health stays open");

    let reader = token("r", "acme", "logs:read");
    let writer = token("w", "acme", "logs:write");
    for (t, method, path, body) in [
        (&reader, "POST", "/v1/logs", "{}"),
        (&reader, "POST", "/v1/flush", ""),
        (&reader, "POST", "/v1/exports", r#"{"sql":"SELECT 1"}"#),
        (&writer, "POST", "/v1/queries", r#"{"sql":"SELECT 1"}"#),
        (&writer, "GET", "/v1/search", ""),
        (&writer, "GET", "/v1/trace/x", ""),
    ] {
        let r = call(addr, method, path, t, body.as_bytes());
        assert_eq!(r.status, 403, "{method} {path}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["error"]["code"], "forbidden");
    }
    serve.terminate();
}

/// An ES256 key pair: the signing key and its JWKS.
fn es256_jwks(kid: &str) -> (EncodingKey, Value) {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("pair");
    let public = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                     "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), json!({"keys": [jwk]}))
}

/// Serves `body` to every GET on loopback (a JWKS URL).
fn serve_json(body: Value) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let text = body.to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

#[test]
fn jwks_keys_from_a_file_or_a_url_with_the_algorithm_pinned() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, jwks) = es256_jwks("k1");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).expect("write");
    let url = serve_json(jwks);
    let good = forge(&claims("acme", &["logs:read"], now() + 600, "x"), Algorithm::ES256, &key, Some("k1"));
    let unknown_kid = forge(&claims("acme", &["logs:read"], now() + 600, "x"), Algorithm::ES256, &key, Some("k2"));
    let (other, _) = es256_jwks("k1");
    let other_key = forge(&claims("acme", &["logs:read"], now() + 600, "x"), Algorithm::ES256, &other, Some("k1"));
    let hs256 = forge(
        &claims("*", &["admin"], now() + 600, "x"),
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Some("k1"),
    );
    for source in [file.to_str().expect("utf8").to_owned(), url] {
        let lake = dir.path().join(format!("lake-{}", source.len()));
        std::fs::create_dir_all(&lake).expect("mkdir");
        let serve = Serve::start_with(
            lake.to_str().expect("utf8"),
            &["--jwks", &source, "--jwt-algorithm", "ES256", "--query-only"],
            &[],
        );
        let addr = serve.addr.as_str();
        assert_eq!(get(addr, "/v1/search", &good).status, 200, "{source}");
        for (name, t) in [("unknown kid", &unknown_kid), ("another key", &other_key), ("HS256 with the kid", &hs256)] {
            assert_eq!(get(addr, "/v1/search", t).status, 401, "{name} via {source}");
        }
    }
}

fn wait_closed(mut s: TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn rate_limits_per_token_and_deadlines_for_slow_clients() {
    let dir = tempfile::tempdir().expect("tmp");
    let serve = Serve::start_with(
        dir.path().to_str().expect("utf8"),
        &[
            "--jwt-audience",
            AUDIENCE,
            "--ingest-rate",
            "1",
            "--query-rate",
            "1",
            "--header-timeout",
            "1",
            "--body-timeout",
            "2",
        ],
        &secret_env(),
    );
    let addr = serve.addr.as_str();
    let (a, b) = (token("a", "acme", "logs:read,logs:write"), token("b", "acme", "logs:read,logs:write"));
    let statuses: Vec<u16> = (0..6).map(|_| get(addr, "/v1/search", &a).status).collect();
    assert!(statuses.starts_with(&[200, 200]) && statuses.contains(&429), "{statuses:?}");
    let r = get(addr, "/v1/search", &a);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    assert!(r.headers.get("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    assert_eq!(get(addr, "/v1/search", &b).status, 200, "another token has its own budget");
    let rec = format!("{}\n", records("acme")[0]);
    let ingest_statuses: Vec<u16> = (0..6).map(|_| call(addr, "POST", "/v1/logs", &a, rec.as_bytes()).status).collect();
    assert!(ingest_statuses.contains(&429), "{ingest_statuses:?}");
    assert_eq!(ingest_statuses[0], 200);

    // Slowloris: headers that never end are cut off after the header timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /v1/search HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
    wait_closed(s, Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(15), "the connection was held {:?}", started.elapsed());

    // A body that never finishes is answered 408 after the body timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {b}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{\"a\":"
    );
    s.write_all(head.as_bytes()).expect("write");
    let answer = String::from_utf8_lossy(&wait_closed(s, Duration::from_secs(20))).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
    serve.terminate();
}

#[test]
fn serve_refuses_to_start_open_or_keyless() {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = dir.path().to_str().expect("utf8");
    for (args, needle) in [
        (vec!["--auth", "none", "--listen", "0.0.0.0:0"], "loopback"),
        (vec!["--listen", "127.0.0.1:0"], "requires authentication"),
    ] {
        let out = Command::new(sluice_bin())
            .args(["serve", "--lake", lake])
            .args(&args)
            .env_remove("SLUICE_JWT_SECRET")
            .output()
            .expect("serve");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = Command::new(sluice_bin())
        .args(["token", "--org", "acme", "--roles", "logs:read,superuser"])
        .env("SLUICE_JWT_SECRET", SECRET)
        .output()
        .expect("token");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a role"));
}
