//! Settings of `sluice serve`: a TOML file, `SLUICE_*` environment variables and flags (flags win),
//! parsed into a partial layer each, merged, then validated into the settings the runtime uses.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use sluice_auth::{GateConfig, JwtConfig, KeySource};

use anyhow::{Context as _, Result, anyhow};
use sluice_ingest::batch::BufferHints;

/// One layer of settings; `None` means "not set here".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partial {
    /// Lake URL.
    pub lake: Option<String>,
    /// Listen address.
    pub listen: Option<String>,
    /// Folder of the write-ahead log.
    pub wal_dir: Option<PathBuf>,
    /// Extra log-type definitions.
    pub schemas_dir: Option<PathBuf>,
    /// Buffering hint: size in MiB (1–128, like Firehose).
    pub buffer_size_mib: Option<u64>,
    /// Buffering hint: interval in seconds (0–900, like Firehose).
    pub buffer_interval_secs: Option<u64>,
    /// Largest write-ahead log in MiB before the API answers 503.
    pub wal_max_mib: Option<u64>,
    /// Memory for buffered records in MiB.
    pub memory_budget_mib: Option<u64>,
    /// Largest request body in MiB.
    pub max_body_mib: Option<u64>,
    /// Largest decompressed request body in MiB.
    pub max_decompressed_mib: Option<u64>,
    /// Most records in one request.
    pub max_records_per_request: Option<usize>,
    /// How far past arrival a record's time may be, in hours.
    pub max_future_hours: Option<i64>,
    /// Files written to the lake at once.
    pub concurrent_flushes: Option<usize>,
    /// Folder of query results and exports.
    pub results_dir: Option<PathBuf>,
    /// How long query results and exports are kept, seconds.
    pub export_ttl_secs: Option<u64>,
    /// Memory per query, MiB.
    pub query_memory_mib: Option<u64>,
    /// Time per query, seconds.
    pub query_timeout_secs: Option<u64>,
    pub auth: Option<String>,
    pub jwt_secret: Option<String>,
    pub jwks: Option<String>,
    pub jwt_algorithm: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_issuer: Option<String>,
    /// The access keys file of Firehose HTTP endpoint delivery.
    pub firehose_keys: Option<PathBuf>,
    /// Folder of upload jobs (`POST /v1/imports`).
    pub imports_dir: Option<PathBuf>,
    /// Largest upload, MiB.
    pub max_upload_mib: Option<u64>,
    pub ingest_rate: Option<f64>,
    pub query_rate: Option<f64>,
    pub header_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    /// Open connections in all.
    pub max_connections: Option<usize>,
    /// Open connections from one client address.
    pub max_connections_per_address: Option<usize>,
    /// Memory of all queries running at once, MiB.
    pub query_memory_total_mib: Option<u64>,
    /// Queries, searches, traces and exports running at once.
    pub max_queries: Option<usize>,
    /// Queries, searches, traces and exports of one caller running at once.
    pub max_queries_per_caller: Option<usize>,
    /// Query executions and exports one caller may keep (running or finished).
    pub max_executions_per_caller: Option<usize>,
    /// Largest query result or export, MiB.
    pub max_result_mib: Option<u64>,
    /// Disk for one caller's results and exports, MiB.
    pub results_quota_mib: Option<u64>,
    /// Disk for every caller's results and exports, MiB.
    pub results_total_mib: Option<u64>,
    /// Free disk space results never take, MiB (room for the write-ahead log).
    pub results_reserve_mib: Option<u64>,
}

impl Partial {
    /// Reads a TOML settings file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// This layer with every value set in `over` replaced by it.
    pub fn merge(self, over: Self) -> Self {
        Self {
            lake: over.lake.or(self.lake),
            listen: over.listen.or(self.listen),
            wal_dir: over.wal_dir.or(self.wal_dir),
            schemas_dir: over.schemas_dir.or(self.schemas_dir),
            buffer_size_mib: over.buffer_size_mib.or(self.buffer_size_mib),
            buffer_interval_secs: over.buffer_interval_secs.or(self.buffer_interval_secs),
            wal_max_mib: over.wal_max_mib.or(self.wal_max_mib),
            memory_budget_mib: over.memory_budget_mib.or(self.memory_budget_mib),
            max_body_mib: over.max_body_mib.or(self.max_body_mib),
            max_decompressed_mib: over.max_decompressed_mib.or(self.max_decompressed_mib),
            max_records_per_request: over.max_records_per_request.or(self.max_records_per_request),
            max_future_hours: over.max_future_hours.or(self.max_future_hours),
            concurrent_flushes: over.concurrent_flushes.or(self.concurrent_flushes),
            results_dir: over.results_dir.or(self.results_dir),
            export_ttl_secs: over.export_ttl_secs.or(self.export_ttl_secs),
            query_memory_mib: over.query_memory_mib.or(self.query_memory_mib),
            query_timeout_secs: over.query_timeout_secs.or(self.query_timeout_secs),
            auth: over.auth.or(self.auth),
            jwt_secret: over.jwt_secret.or(self.jwt_secret),
            jwks: over.jwks.or(self.jwks),
            jwt_algorithm: over.jwt_algorithm.or(self.jwt_algorithm),
            jwt_audience: over.jwt_audience.or(self.jwt_audience),
            jwt_issuer: over.jwt_issuer.or(self.jwt_issuer),
            firehose_keys: over.firehose_keys.or(self.firehose_keys),
            imports_dir: over.imports_dir.or(self.imports_dir),
            max_upload_mib: over.max_upload_mib.or(self.max_upload_mib),
            ingest_rate: over.ingest_rate.or(self.ingest_rate),
            query_rate: over.query_rate.or(self.query_rate),
            header_timeout_secs: over.header_timeout_secs.or(self.header_timeout_secs),
            body_timeout_secs: over.body_timeout_secs.or(self.body_timeout_secs),
            max_connections: over.max_connections.or(self.max_connections),
            max_connections_per_address: over.max_connections_per_address.or(self.max_connections_per_address),
            query_memory_total_mib: over.query_memory_total_mib.or(self.query_memory_total_mib),
            max_queries: over.max_queries.or(self.max_queries),
            max_queries_per_caller: over.max_queries_per_caller.or(self.max_queries_per_caller),
            max_executions_per_caller: over.max_executions_per_caller.or(self.max_executions_per_caller),
            max_result_mib: over.max_result_mib.or(self.max_result_mib),
            results_quota_mib: over.results_quota_mib.or(self.results_quota_mib),
            results_total_mib: over.results_total_mib.or(self.results_total_mib),
            results_reserve_mib: over.results_reserve_mib.or(self.results_reserve_mib),
        }
    }
}

/// Validated settings of `sluice serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lake URL.
    pub lake: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Folder of the write-ahead log.
    pub wal_dir: PathBuf,
    /// Extra log-type definitions.
    pub schemas_dir: Option<PathBuf>,
    /// Buffering hints.
    pub hints: BufferHints,
    /// Largest write-ahead log in bytes.
    pub wal_max_bytes: u64,
    /// Memory budget in bytes.
    pub memory_budget: u64,
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Largest decompressed request body in bytes.
    pub max_decompressed_bytes: u64,
    /// Most records in one request.
    pub max_records: usize,
    /// How far past arrival a record's time may be.
    pub max_future: chrono::Duration,
    /// Files written at once.
    pub concurrent_flushes: usize,
    /// Folder of query results and exports.
    pub results_dir: PathBuf,
    /// How long query results and exports are kept.
    pub export_ttl: Duration,
    /// Memory per query, bytes.
    pub query_memory: u64,
    /// Time per query.
    pub query_timeout: Duration,
    /// How callers authenticate: `None` only on loopback.
    pub auth: Option<JwtConfig>,
    /// Rate limits and the body deadline.
    pub gate: GateConfig,
    /// Access keys of Firehose HTTP endpoint delivery (`POST /firehose`).
    pub firehose_keys: sluice_auth::keys::AccessKeys,
    /// Folder of upload jobs.
    pub imports_dir: PathBuf,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// Open connections.
    pub connections: sluice_auth::http::ConnectionLimits,
    /// Memory of all queries running at once, bytes.
    pub query_memory_total: u64,
    /// Queries running at once, in all and per caller.
    pub max_queries: usize,
    /// Queries of one caller running at once.
    pub max_queries_per_caller: usize,
    /// Executions one caller may keep.
    pub max_executions_per_caller: usize,
    /// Largest result, bytes.
    pub max_result_bytes: u64,
    /// Disk for one caller's results, bytes.
    pub results_quota: u64,
    /// Disk for all results, bytes.
    pub results_total: u64,
    /// Free disk space results leave alone, bytes.
    pub results_reserve: u64,
}

/// Defaults.
pub const DEFAULT_LAKE: &str = "./sluice-data";
/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8400";

const MIB: u64 = 1024 * 1024;

fn range<T: PartialOrd + std::fmt::Display + Copy>(name: &str, v: T, lo: T, hi: T, why: &str) -> Result<T> {
    if v < lo || v > hi {
        return Err(anyhow!(format!("{name} = {v} is out of range: it must be {lo} to {hi} ({why})")));
    }
    Ok(v)
}

impl Partial {
    /// Checks every value and fills in defaults.
    pub fn validate(self) -> Result<Settings> {
        let auth_listen = self.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.to_owned()).parse().ok();
        let auth = match auth_listen {
            Some(listen) => self.auth_config(listen)?,
            None => None,
        };
        let lake = self.lake.unwrap_or_else(|| DEFAULT_LAKE.to_owned());
        let listen_s = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            anyhow!(format!("listen = {listen_s:?} is not an address; use HOST:PORT such as {DEFAULT_LISTEN}"))
        })?;
        let local = |name: &str, s3: &str| {
            if lake.starts_with("s3://") {
                PathBuf::from(s3)
            } else {
                PathBuf::from(lake.strip_prefix("file://").unwrap_or(&lake)).join(name)
            }
        };
        let wal_dir = self.wal_dir.unwrap_or_else(|| local("_wal", "./sluice-wal"));
        let results_dir = self.results_dir.unwrap_or_else(|| local("_results", "./sluice-results"));
        let imports_dir = self.imports_dir.clone().unwrap_or_else(|| local("_imports", "./sluice-imports"));
        let max_upload = range("max_upload_mib", self.max_upload_mib.unwrap_or(4096), 1, 1 << 20, "largest upload")?;
        let ttl = range("export_ttl_secs", self.export_ttl_secs.unwrap_or(86_400), 1, 30 * 86_400, "up to 30 days")?;
        let qmem = range("query_memory_mib", self.query_memory_mib.unwrap_or(512), 16, 1 << 20, "memory per query")?;
        let qtime = range("query_timeout_secs", self.query_timeout_secs.unwrap_or(300), 1, 86_400, "time per query")?;
        let size =
            range("buffer_size_mib", self.buffer_size_mib.unwrap_or(64), 1, 128, "Firehose's buffering size range")?;
        let interval = range(
            "buffer_interval_secs",
            self.buffer_interval_secs.unwrap_or(60),
            0,
            900,
            "Firehose's buffering interval range",
        )?;
        let budget = self.memory_budget_mib.unwrap_or_else(crate::runtime::default_memory_budget_mib);
        if budget < 2 * size {
            return Err(anyhow!(format!(
                "memory_budget_mib = {budget} must be at least twice buffer_size_mib = {size}; raise the budget or lower the buffer size"
            )));
        }
        // The log is relieved at half full by writing its oldest partitions. At the budget plus
        // 1 GiB, half of it holds more records than the open buffers (half the budget), so a burst
        // into many partitions is written once, when the budget says, not again for the log.
        let wal_max = range("wal_max_mib", self.wal_max_mib.unwrap_or(budget + 1024), 16, 1 << 20, "at least 16 MiB")?;
        let body = range("max_body_mib", self.max_body_mib.unwrap_or(16), 1, 1024, "request body limit")?;
        let dec = self.max_decompressed_mib.unwrap_or(body * 4);
        if dec < body {
            return Err(anyhow!(format!("max_decompressed_mib = {dec} must be at least max_body_mib = {body}")));
        }
        // Bulk APIs send thousands a request (Firehose 500, `sluice publish` 1,000, shippers'
        // bulk sizes a few thousand); a request of millions of tiny records (16 MB of two-byte
        // lines is eight million) costs a write-ahead-log entry and an error record each.
        let max_records = range(
            "max_records_per_request",
            self.max_records_per_request.unwrap_or(100_000),
            1,
            10_000_000,
            "records in one request",
        )?;
        let future = range("max_future_hours", self.max_future_hours.unwrap_or(24), 0, 24 * 366, "hours")?;
        let flushes = range(
            "concurrent_flushes",
            self.concurrent_flushes.unwrap_or_else(sluice_ingest::stream::default_concurrent_writes),
            1,
            64,
            "files written at once",
        )?;
        let ingest_rate = self.ingest_rate.unwrap_or(200.0);
        let query_rate = self.query_rate.unwrap_or(20.0);
        for (name, v) in [("ingest_rate", ingest_rate), ("query_rate", query_rate)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(anyhow!(format!("{name} = {v} must be a number of requests a second, 0 for no limit")));
            }
        }
        let header = range("header_timeout_secs", self.header_timeout_secs.unwrap_or(10), 1, 600, "seconds")?;
        let conns = range("max_connections", self.max_connections.unwrap_or(1024), 1, 1 << 20, "open connections")?;
        let per_address = range(
            "max_connections_per_address",
            self.max_connections_per_address.unwrap_or(256).min(conns),
            1,
            1 << 20,
            "open connections from one address",
        )?;
        let qtotal = range(
            "query_memory_total_mib",
            self.query_memory_total_mib.unwrap_or(qmem.max(2048)),
            qmem,
            1 << 22,
            "memory of all queries at once, at least query_memory_mib",
        )?;
        let max_queries = range("max_queries", self.max_queries.unwrap_or(16), 1, 4096, "queries at once")?;
        let per_caller = range(
            "max_queries_per_caller",
            self.max_queries_per_caller.unwrap_or(4).min(max_queries),
            1,
            4096,
            "one caller's queries at once",
        )?;
        let executions = range(
            "max_executions_per_caller",
            self.max_executions_per_caller.unwrap_or(100),
            1,
            100_000,
            "executions a caller keeps",
        )?;
        let max_result =
            range("max_result_mib", self.max_result_mib.unwrap_or(16 << 10), 1, 1 << 24, "largest result")?;
        let quota = range(
            "results_quota_mib",
            self.results_quota_mib.unwrap_or(16 << 10),
            1,
            1 << 24,
            "disk for one caller's results",
        )?;
        let results_total = range(
            "results_total_mib",
            self.results_total_mib.unwrap_or(64 << 10).max(quota),
            1,
            1 << 26,
            "disk for all results",
        )?;
        // By default results leave room for a full write-ahead log and 1 GiB more, so that an
        // export on the same disk never stops ingest.
        let reserve = self.results_reserve_mib.unwrap_or(wal_max + 1024);
        let body_t = range("body_timeout_secs", self.body_timeout_secs.unwrap_or(60), 1, 3600, "seconds")?;
        Ok(Settings {
            auth,
            gate: GateConfig {
                ingest_per_sec: ingest_rate,
                query_per_sec: query_rate,
                body_timeout: Duration::from_secs(body_t),
            },
            header_timeout: Duration::from_secs(header),
            connections: sluice_auth::http::ConnectionLimits { total: conns, per_address },
            query_memory_total: qtotal * MIB,
            max_queries,
            max_queries_per_caller: per_caller,
            max_executions_per_caller: executions,
            max_result_bytes: max_result * MIB,
            results_quota: quota * MIB,
            results_total: results_total * MIB,
            results_reserve: reserve * MIB,
            imports_dir,
            max_upload_bytes: max_upload * MIB,
            firehose_keys: match &self.firehose_keys {
                Some(path) => sluice_auth::keys::AccessKeys::load(path)?,
                None => sluice_auth::keys::AccessKeys::default(),
            },
            lake,
            listen,
            wal_dir,
            schemas_dir: self.schemas_dir,
            hints: BufferHints { size_bytes: size * MIB, interval: Duration::from_secs(interval) },
            wal_max_bytes: wal_max * MIB,
            memory_budget: budget * MIB,
            max_body_bytes: body * MIB,
            max_decompressed_bytes: dec * MIB,
            max_records,
            max_future: chrono::Duration::hours(future),
            concurrent_flushes: flushes,
            results_dir,
            export_ttl: Duration::from_secs(ttl),
            query_memory: qmem * MIB,
            query_timeout: Duration::from_secs(qtime),
        })
    }
}

impl Partial {
    /// The token settings, or `None` for `auth = "none"`, which only a loopback address may use.
    fn auth_config(&self, listen: SocketAddr) -> Result<Option<JwtConfig>> {
        let mode = self.auth.as_deref().unwrap_or("jwt");
        match mode {
            "none" => {
                if !listen.ip().is_loopback() {
                    return Err(anyhow!(format!(
                        "auth = none is allowed only on a loopback address (127.0.0.1 or ::1), not {listen}: \
                         anyone who reaches the port could read every organization's logs. Set SLUICE_JWT_SECRET \
                         or --jwks to serve on {listen}"
                    )));
                }
                return Ok(None);
            }
            "jwt" => {}
            other => return Err(anyhow!(format!("auth = {other:?}: use jwt (the default) or none"))),
        }
        let keys = match (&self.jwt_secret, &self.jwks) {
            (Some(_), Some(_)) => {
                return Err(anyhow!("set one of jwt_secret (SLUICE_JWT_SECRET) and jwks, not both"));
            }
            (Some(secret), None) => {
                sluice_auth::token::check_secret(secret.as_bytes())?;
                KeySource::Secret(secret.as_bytes().to_vec())
            }
            (None, Some(location)) => {
                let algorithm = match self.jwt_algorithm.as_deref().unwrap_or("RS256") {
                    "RS256" => sluice_auth::Algorithm::RS256,
                    "ES256" => sluice_auth::Algorithm::ES256,
                    other => {
                        return Err(anyhow!(format!(
                            "jwt_algorithm = {other:?}: with a JWKS use RS256 (the default) or ES256"
                        )));
                    }
                };
                KeySource::Jwks { location: location.clone(), algorithm }
            }
            (None, None) => {
                return Err(anyhow!(
                    "sluice serve requires authentication: set SLUICE_JWT_SECRET (at least 32 bytes, such as the \
                     output of `openssl rand -base64 48`) or --jwks FILE|URL, then mint tokens with `sluice token`. \
                     For a trial on this machine only, use --auth none with a loopback --listen address"
                ));
            }
        };
        if self.jwt_algorithm.is_some() && self.jwks.is_none() {
            return Err(anyhow!("jwt_algorithm applies to a JWKS; a jwt_secret always uses HS256"));
        }
        Ok(Some(JwtConfig { keys, audience: self.jwt_audience.clone(), issuer: self.jwt_issuer.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret() -> Partial {
        Partial { jwt_secret: Some("0123456789abcdef0123456789abcdef".into()), ..Partial::default() }
    }

    #[test]
    fn defaults_and_layers() {
        let s = with_secret().validate().unwrap();
        assert!(s.auth.is_some());
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert!(s.listen.ip().is_loopback());
        assert_eq!(s.wal_dir, PathBuf::from("./sluice-data/_wal"));
        let file: Partial = toml::from_str("buffer_size_mib = 8\nlisten = \"0.0.0.0:1\"").unwrap();
        let flags = Partial { buffer_size_mib: Some(4), ..Partial::default() };
        let s = with_secret().merge(file).merge(flags).validate().unwrap();
        assert_eq!(s.hints.size_bytes, 4 * MIB);
        assert_eq!(s.listen.port(), 1);
    }

    #[test]
    fn clear_errors() {
        for (p, needle) in [
            (Partial { buffer_size_mib: Some(0), ..with_secret() }, "buffer_size_mib = 0 is out of range"),
            (Partial { buffer_interval_secs: Some(901), ..with_secret() }, "0 to 900"),
            (Partial { listen: Some("localhost".into()), ..with_secret() }, "HOST:PORT"),
            (Partial { memory_budget_mib: Some(10), ..with_secret() }, "at least twice"),
            (Partial::default(), "requires authentication"),
            (Partial { jwt_secret: Some("short".into()), ..Partial::default() }, "at least 32"),
            (
                Partial { auth: Some("none".into()), listen: Some("0.0.0.0:8400".into()), ..Partial::default() },
                "loopback",
            ),
            (Partial { jwks: Some("k.json".into()), ..with_secret() }, "not both"),
            (Partial { query_rate: Some(-1.0), ..with_secret() }, "query_rate"),
        ] {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let local = Partial { auth: Some("none".into()), listen: Some("[::1]:0".into()), ..Partial::default() };
        assert!(local.validate().unwrap().auth.is_none());
        assert!(toml::from_str::<Partial>("bufer_size_mib = 1").unwrap_err().to_string().contains("unknown field"));
    }
}
