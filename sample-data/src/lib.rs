//! A deterministic generator of log records in the shape of the seed's logging service
//! (`sluice generate`), and the home of the committed samples and Firehose fixtures.
//!
//! The same options and seed always give the same bytes, on every machine and version: the random
//! numbers come from SplitMix64 implemented here, not from a crate whose stream may change.
//!
//! What it makes: all six log types; `events` timelines for `web` and `app` that cross servers;
//! unknown fields (kept in `attributes`); absent optional fields; unicode; records with only `time`
//! (RFC 3339 with `Z` or an offset, or epoch milliseconds), with `time` and `year/month/day/hour`,
//! and with `year/month/day/hour` alone; transaction ids shared by records of several log types.
//! With a bad fraction, bad records of every reason code of the record contract.

use std::io::{self, Write};

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, TimeZone, Timelike, Utc};
use serde_json::{Map, Value, json};

/// Options of the generator.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many records to write (good and bad).
    pub records: u64,
    /// The seed.
    pub seed: u64,
    /// Number of organizations.
    pub orgs: u32,
    /// Number of hours the records' times spread over.
    pub hours: u32,
    /// Start of the first hour.
    pub start: DateTime<Utc>,
    /// Fraction (0–1) of records that are bad.
    pub bad_fraction: f64,
}

/// The default start, so that default output never depends on the clock: 2025-01-01T00:00:00Z.
pub fn default_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().expect("valid date")
}

impl Default for Options {
    fn default() -> Self {
        Self { records: 1000, seed: 1, orgs: 4, hours: 24, start: default_start(), bad_fraction: 0.0 }
    }
}

/// The reason codes the generator's bad records are made to trigger, in the order it cycles them.
pub const BAD_KINDS: [&str; 8] = [
    "invalid_json",
    "not_an_object",
    "missing_field",
    "invalid_field",
    "invalid_partition_value",
    "unknown_log_type",
    "time_out_of_range",
    "record_too_large",
];

/// What one generated record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A good record.
    Good,
    /// A bad record meant to be rejected with this reason code.
    Bad(&'static str),
}

/// SplitMix64: small, fast, and fixed forever.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(n);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

const LOG_TYPES: [(&str, u64); 6] =
    [("web", 25), ("app", 25), ("agw", 20), ("hub", 10), ("connector", 10), ("container", 10)];
const ENVIRONMENTS: [&str; 6] = ["prod", "prod", "prod", "hot", "xat", "dev"];
const CONNECTORS: [&str; 6] = ["corelation", "symitar", "payrailz", "cdp-transfer", "segmint", "fiserv-dna"];
const ACTIONS: [&str; 8] = [
    "received request",
    "sent response",
    "called connector",
    "authorized",
    "queried accounts",
    "updated nickname",
    "listed transactions",
    "transfer submitted",
];
const DESCRIPTIONS: [&str; 10] = [
    "request received on agw",
    "response sent",
    "connector call completed",
    "token refreshed for member",
    "balance updated",
    "Überweisung erhalten ✓",
    "取引が追加されました",
    "timeout calling core; retrying",
    "nickname set to \"Rainy Day 🌧\"",
    "404 account not found",
];
const CALLERS: [&str; 4] = [
    "/home/ec2-user/agw/bin/helpers/routes/authorization.js:278:531",
    "/home/ec2-user/web/bin/controllers/accounts.js:88:17",
    "/opt/app/src/services/transfer.ts:142:9",
    "/srv/hub/lib/dispatch.js:51:3",
];
const PATHS: [&str; 5] = ["/api/accounts", "/api/transactions", "/api/transfer", "/api/login", "/api/tiles"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const SCREENS: [&str; 4] = ["home", "accounts", "transfer", "settings"];

/// The generator. [`Generator::write_record`] appends one NDJSON line at a time.
#[derive(Debug, Clone)]
pub struct Generator {
    opts: Options,
    rng: Rng,
    recent_txns: Vec<String>,
    bad_count: u64,
    index: u64,
}

impl Generator {
    /// A generator with these options.
    pub fn new(opts: Options) -> Self {
        let seed = opts.seed;
        Self { opts, rng: Rng(seed ^ 0x5151_CE00_0000_0001), recent_txns: Vec::new(), bad_count: 0, index: 0 }
    }

    /// Appends the next record and a newline to `out`; `None` after the last record.
    pub fn write_record(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        if self.index >= self.opts.records {
            return None;
        }
        self.index += 1;
        if self.opts.bad_fraction > 0.0 && self.rng.chance(self.opts.bad_fraction) {
            let kind = self.bad_kind();
            self.write_bad(kind, out);
            out.push(b'\n');
            return Some(Kind::Bad(kind));
        }
        let v = self.good_record();
        serde_json::to_writer(&mut *out, &v).expect("writing to a Vec cannot fail");
        out.push(b'\n');
        Some(Kind::Good)
    }

    fn bad_kind(&mut self) -> &'static str {
        let k = self.bad_count;
        self.bad_count += 1;
        // Large records are rare (they are 1 MB each): the 8th bad record, then one in a thousand.
        if k % 1000 == 7 { "record_too_large" } else { BAD_KINDS[(k % 7) as usize] }
    }

    fn org(&mut self) -> u64 {
        1000 + self.rng.below(u64::from(self.opts.orgs.max(1)))
    }

    fn time(&mut self) -> DateTime<Utc> {
        let span_ms = u64::from(self.opts.hours.max(1)) * 3_600_000;
        self.opts.start + chrono::Duration::milliseconds(self.rng.below(span_ms) as i64)
    }

    fn good_record(&mut self) -> Value {
        let total: u64 = LOG_TYPES.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.below(total);
        let lt = LOG_TYPES
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map_or("web", |(n, _)| *n);
        let org = self.org();
        let env = *self.rng.pick(&ENVIRONMENTS);
        let t = self.time();
        let mut m = Map::new();
        // organizationID: usually a string, sometimes an integer (stringified by the contract).
        m.insert("organizationID".into(), if self.rng.chance(0.2) { json!(org) } else { json!(org.to_string()) });
        m.insert("environment".into(), json!(env));
        m.insert("logType".into(), json!(lt));
        match self.rng.below(10) {
            // The seed's logging service: time plus year/month/day/hour strings.
            0..=1 => {
                m.insert("time".into(), json!(t.to_rfc3339_opts(SecondsFormat::Millis, true)));
                hour_parts(&mut m, t);
            }
            // Hour parts alone.
            2 => hour_parts(&mut m, t),
            // Epoch milliseconds.
            3 => {
                m.insert("time".into(), json!(t.timestamp_millis()));
            }
            // An offset instead of Z.
            4 => {
                let off = FixedOffset::west_opt(5 * 3600).expect("valid offset");
                m.insert("time".into(), json!(t.with_timezone(&off).to_rfc3339_opts(SecondsFormat::Millis, false)));
            }
            _ => {
                m.insert("time".into(), json!(t.to_rfc3339_opts(SecondsFormat::Millis, true)));
            }
        }
        let txn = if !self.recent_txns.is_empty() && matches!(lt, "agw" | "hub" | "connector") && self.rng.chance(0.6) {
            self.rng.pick(&self.recent_txns).clone()
        } else {
            let id = format!("{}-{}", self.rng.uuid(), self.rng.uuid());
            if matches!(lt, "web" | "app") {
                if self.recent_txns.len() < 64 {
                    self.recent_txns.push(id.clone());
                } else {
                    let i = self.rng.below(64) as usize;
                    self.recent_txns[i] = id.clone();
                }
            }
            id
        };
        if self.rng.chance(0.95) {
            m.insert("transactionId".into(), json!(txn));
        }
        let server = match lt {
            "web" => "dspweb".to_owned(),
            "app" => "dspapp".to_owned(),
            "agw" => "dspagw".to_owned(),
            "hub" => "dsphub".to_owned(),
            "connector" => format!("connector-{}", self.rng.pick(&CONNECTORS)),
            _ => "cu-container".to_owned(),
        };
        m.insert("server".into(), json!(server));
        m.insert("action".into(), json!(self.rng.pick(&ACTIONS)));
        if self.rng.chance(0.7) {
            m.insert("type".into(), json!(*self.rng.pick(&["request", "response", "error", "info"])));
        }
        m.insert("description".into(), json!(self.rng.pick(&DESCRIPTIONS)));
        if self.rng.chance(0.8) {
            m.insert("caller".into(), json!(self.rng.pick(&CALLERS)));
        }
        let success = self.rng.chance(0.9);
        if self.rng.chance(0.9) {
            m.insert("success".into(), json!(success));
        }
        if self.rng.chance(0.5) {
            m.insert(
                "detail".into(),
                json!({"ip": format!("10.{}.{}.{}", self.rng.below(256), self.rng.below(256), self.rng.below(256)),
                       "attempt": self.rng.below(3) + 1,
                       "flags": ["a", "b"]}),
            );
        }
        self.typed_extras(lt, success, &mut m);
        if matches!(lt, "web" | "app") {
            let n = 1 + self.rng.below(5);
            let servers = if lt == "web" { ["dspweb", "dspagw", "dspapen"] } else { ["dspapp", "dspagw", "dspapen"] };
            let events: Vec<Value> = (0..n)
                .map(|i| {
                    let et = t + chrono::Duration::milliseconds(i as i64 * (1 + self.rng.below(40) as i64));
                    let mut e = Map::new();
                    e.insert("action".into(), json!(self.rng.pick(&ACTIONS)));
                    e.insert("description".into(), json!(self.rng.pick(&DESCRIPTIONS)));
                    if self.rng.chance(0.3) {
                        e.insert("detail".into(), json!({"step": i}));
                    }
                    e.insert("caller".into(), json!(self.rng.pick(&CALLERS)));
                    e.insert("server".into(), json!(servers[(i as usize) % servers.len()]));
                    e.insert("success".into(), json!(success || i + 1 < n));
                    e.insert("time".into(), json!(et.to_rfc3339_opts(SecondsFormat::Millis, true)));
                    e.insert("transactionId".into(), json!(txn));
                    e.insert("type".into(), json!("request"));
                    if self.rng.chance(0.1) {
                        e.insert("spanId".into(), json!(self.rng.hex(16)));
                    }
                    Value::Object(e)
                })
                .collect();
            m.insert("events".into(), Value::Array(events));
        }
        // Fields the contract does not name: they must survive in `attributes`.
        if self.rng.chance(0.3) {
            m.insert("requestSize".into(), json!(self.rng.below(100_000)));
        }
        if self.rng.chance(0.1) {
            m.insert(
                "client".into(),
                json!({"name": "ios", "version": format!("5.{}.{}", self.rng.below(10), self.rng.below(10))}),
            );
        }
        if self.rng.chance(0.05) {
            m.insert("tags".into(), json!(["beta", "ünïcödé"]));
        }
        Value::Object(m)
    }

    fn typed_extras(&mut self, lt: &str, success: bool, m: &mut Map<String, Value>) {
        let status =
            if success { *self.rng.pick(&[200, 200, 201, 204]) } else { *self.rng.pick(&[400, 404, 500, 503]) };
        let duration = 1 + self.rng.below(2000);
        let mut put = |k: &str, v: Value, rng: &mut Rng| {
            if rng.chance(0.9) {
                m.insert(k.into(), v);
            }
        };
        match lt {
            "web" | "app" => {
                put("userId", json!(format!("u-{}", self.rng.below(5000))), &mut self.rng);
                if lt == "app" {
                    put("memberId", json!(format!("m-{}", self.rng.below(100_000))), &mut self.rng);
                }
                put("method", json!(self.rng.pick(&METHODS)), &mut self.rng);
                put("path", json!(self.rng.pick(&PATHS)), &mut self.rng);
                put("statusCode", json!(status), &mut self.rng);
                put("durationMs", json!(duration), &mut self.rng);
            }
            "agw" | "hub" | "connector" => {
                put("connector", json!(self.rng.pick(&CONNECTORS)), &mut self.rng);
                put(
                    "connectorVersion",
                    json!(format!("{}.{}", 1 + self.rng.below(3), self.rng.below(10))),
                    &mut self.rng,
                );
                put(
                    "method",
                    json!(*self.rng.pick(&["getAccounts", "getTransactions", "transfer", "getMember"])),
                    &mut self.rng,
                );
                if lt == "connector" {
                    put("level", json!(if success { "info" } else { "error" }), &mut self.rng);
                } else {
                    // Status codes sometimes arrive as strings: the contract accepts digits for bigint.
                    let s = if self.rng.chance(0.2) { json!(status.to_string()) } else { json!(status) };
                    put("statusCode", s, &mut self.rng);
                    put("durationMs", json!(duration), &mut self.rng);
                }
            }
            _ => {
                put("memberId", json!(format!("m-{}", self.rng.below(100_000))), &mut self.rng);
                put("sessionId", json!(self.rng.hex(24)), &mut self.rng);
                put("appVersion", json!(format!("7.{}.{}", self.rng.below(5), self.rng.below(20))), &mut self.rng);
                put("screen", json!(self.rng.pick(&SCREENS)), &mut self.rng);
            }
        }
    }

    fn write_bad(&mut self, kind: &str, out: &mut Vec<u8>) {
        let org = self.org();
        let t = self.time().to_rfc3339_opts(SecondsFormat::Millis, true);
        let line = match kind {
            "invalid_json" => match self.rng.below(3) {
                0 => format!(r#"{{"organizationID":"{org}","environment":"prod","logType":"web","time":"{t}""#),
                1 => format!(r#"{{"organizationID":"{org}",environment:prod}}"#),
                _ => {
                    out.extend_from_slice(br#"{"organizationID":""#);
                    out.extend_from_slice(org.to_string().as_bytes());
                    out.extend_from_slice(b"\",\"environment\":\"prod\",\"logType\":\"web\",\"description\":\"bad \xff\xfe bytes\",\"time\":\"");
                    out.extend_from_slice(t.as_bytes());
                    out.extend_from_slice(b"\"}");
                    return;
                }
            },
            "not_an_object" => format!(r#"["{org}","prod","web","{t}"]"#),
            "missing_field" => {
                format!(r#"{{"organizationID":"{org}","environment":"prod","time":"{t}","description":"no logType"}}"#)
            }
            "invalid_field" => {
                format!(r#"{{"organizationID":"{org}","environment":"prod","logType":"agw","time":"yesterday"}}"#)
            }
            "invalid_partition_value" => {
                let bad = *self.rng.pick(&["../../etc/passwd", "a/b", ".hidden", "org with spaces", "ÖRG"]);
                format!(r#"{{"organizationID":"{bad}","environment":"prod","logType":"web","time":"{t}"}}"#)
            }
            "unknown_log_type" => {
                format!(r#"{{"organizationID":"{org}","environment":"prod","logType":"billing","time":"{t}"}}"#)
            }
            "time_out_of_range" => format!(
                r#"{{"organizationID":"{org}","environment":"prod","logType":"hub","time":"1999-12-31T23:59:59Z"}}"#
            ),
            _ => format!(
                r#"{{"organizationID":"{org}","environment":"prod","logType":"web","time":"{t}","description":"{}"}}"#,
                "x".repeat(1_100_000)
            ),
        };
        out.extend_from_slice(line.as_bytes());
    }
}

fn hour_parts(m: &mut Map<String, Value>, t: DateTime<Utc>) {
    m.insert("year".into(), json!(t.year().to_string()));
    m.insert("month".into(), json!(format!("{:02}", t.month())));
    m.insert("day".into(), json!(format!("{:02}", t.day())));
    m.insert("hour".into(), json!(format!("{:02}", t.hour())));
}

/// Counts of what [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Good records.
    pub good: u64,
    /// Bad records.
    pub bad: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes every record of `opts` as NDJSON to `out`.
pub fn generate(opts: Options, mut out: impl Write) -> io::Result<Counts> {
    let mut g = Generator::new(opts);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut counts = Counts::default();
    while let Some(kind) = g.write_record(&mut buf) {
        match kind {
            Kind::Good => counts.good += 1,
            Kind::Bad(_) => counts.bad += 1,
        }
        if buf.len() >= 60 * 1024 {
            out.write_all(&buf)?;
            counts.bytes += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    counts.bytes += buf.len() as u64;
    out.flush()?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_different_seed_different_bytes() {
        let run = |seed| {
            let mut v = Vec::new();
            generate(Options { records: 200, seed, bad_fraction: 0.1, ..Options::default() }, &mut v).expect("gen");
            v
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn bad_fraction_covers_every_kind() {
        let mut g = Generator::new(Options { records: 400, bad_fraction: 0.5, ..Options::default() });
        let mut kinds = std::collections::BTreeSet::new();
        let mut buf = Vec::new();
        while let Some(k) = g.write_record(&mut buf) {
            if let Kind::Bad(k) = k {
                kinds.insert(k);
            }
        }
        assert_eq!(kinds.len(), BAD_KINDS.len());
    }
}
