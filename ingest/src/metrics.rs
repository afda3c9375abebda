//! Counters of the embedded pipeline, rendered in Prometheus' text format at `GET /metrics`.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use sluice_schemas::ReasonCode;

const CODES: [ReasonCode; 9] = [
    ReasonCode::InvalidJson,
    ReasonCode::NotAnObject,
    ReasonCode::MissingField,
    ReasonCode::InvalidField,
    ReasonCode::InvalidPartitionValue,
    ReasonCode::UnknownLogType,
    ReasonCode::RecordTooLarge,
    ReasonCode::TimeOutOfRange,
    ReasonCode::ForbiddenOrganization,
];

/// The protocol a request came in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /v1/logs`.
    Native,
    /// `POST /otlp/v1/logs`.
    Otlp,
    /// `POST /es/_bulk`.
    Elasticsearch,
    /// `POST /firehose`.
    Firehose,
    /// `POST /v1/imports` (counted when its job ends).
    Upload,
}

impl Protocol {
    const ALL: [Self; 5] = [Self::Native, Self::Otlp, Self::Elasticsearch, Self::Firehose, Self::Upload];

    /// Its label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Otlp => "otlp",
            Self::Elasticsearch => "elasticsearch",
            Self::Firehose => "firehose",
            Self::Upload => "upload",
        }
    }
}

/// Upper bounds (seconds) of the flush-latency histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The pipeline's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records accepted.
    pub accepted: AtomicU64,
    rejected: [AtomicU64; 9],
    /// Request body bytes received (after decompression).
    pub bytes_in: AtomicU64,
    /// Requests answered 503 because the log or memory was full.
    pub overloaded: AtomicU64,
    /// Parquet files written.
    pub files_written: AtomicU64,
    /// Parquet bytes written.
    pub bytes_written: AtomicU64,
    /// Rows written to Parquet.
    pub rows_written: AtomicU64,
    /// Error files written.
    pub error_files_written: AtomicU64,
    /// Flushes that failed and were retried.
    pub flush_retries: AtomicU64,
    flush_buckets: [AtomicU64; 10],
    flush_count: AtomicU64,
    flush_micros: AtomicU64,
    /// Write-ahead log bytes (gauge).
    pub wal_bytes: AtomicU64,
    /// Buffered bytes, including buffers being written (gauge).
    pub buffered_bytes: AtomicU64,
    /// The memory budget of the buffers, bytes (set at start).
    pub memory_budget: AtomicU64,
    /// The write-ahead log's size limit, bytes (set at start).
    pub wal_max_bytes: AtomicU64,
    /// Requests, accepted and rejected records by protocol.
    by_protocol: [[AtomicU64; 3]; 5],
}

impl Metrics {
    /// Counts a rejected record.
    pub fn rejected(&self, code: ReasonCode) {
        self.rejected_n(code, 1);
    }

    /// Counts `n` records rejected with `code`.
    pub fn rejected_n(&self, code: ReasonCode, n: u64) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(n, Relaxed);
        }
    }

    /// Records rejected with `code`.
    pub fn rejected_count(&self, code: ReasonCode) -> u64 {
        CODES.iter().position(|c| *c == code).map_or(0, |i| self.rejected[i].load(Relaxed))
    }

    /// Counts one request of `protocol` that was handed to the pipeline.
    pub fn protocol(&self, protocol: Protocol, accepted: u64, rejected: u64) {
        let i = Protocol::ALL.iter().position(|p| *p == protocol).unwrap_or(0);
        let [requests, a, r] = &self.by_protocol[i];
        requests.fetch_add(1, Relaxed);
        a.fetch_add(accepted, Relaxed);
        r.fetch_add(rejected, Relaxed);
    }

    /// Records one flush's latency.
    pub fn flush_latency(&self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.flush_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.flush_count.fetch_add(1, Relaxed);
        self.flush_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
        };
        counter(
            "sluice_records_accepted_total",
            "Records accepted and durable in the write-ahead log.",
            self.accepted.load(Relaxed),
        );
        counter(
            "sluice_bytes_in_total",
            "Request body bytes received, after decompression.",
            self.bytes_in.load(Relaxed),
        );
        counter(
            "sluice_requests_overloaded_total",
            "Ingest requests answered 503 (log or memory full).",
            self.overloaded.load(Relaxed),
        );
        counter(
            "sluice_files_written_total",
            "Parquet data files written to the lake.",
            self.files_written.load(Relaxed),
        );
        counter(
            "sluice_file_bytes_written_total",
            "Bytes of Parquet data files written.",
            self.bytes_written.load(Relaxed),
        );
        counter("sluice_rows_written_total", "Rows written to Parquet data files.", self.rows_written.load(Relaxed));
        counter(
            "sluice_error_files_written_total",
            "Error output files written.",
            self.error_files_written.load(Relaxed),
        );
        counter(
            "sluice_flush_retries_total",
            "Flushes that failed and were retried.",
            self.flush_retries.load(Relaxed),
        );
        let _ = write!(
            s,
            "# HELP sluice_records_rejected_total Records rejected, by reason code.\n# TYPE sluice_records_rejected_total counter\n"
        );
        for (i, c) in CODES.iter().enumerate() {
            let _ = writeln!(s, "sluice_records_rejected_total{{reason=\"{c}\"}} {}", self.rejected[i].load(Relaxed));
        }
        let _ = write!(
            s,
            "# HELP sluice_protocol_requests_total Ingest requests handed to the pipeline, by protocol.\n# TYPE sluice_protocol_requests_total counter\n"
        );
        for (i, p) in Protocol::ALL.iter().enumerate() {
            let n = self.by_protocol[i][0].load(Relaxed);
            let _ = writeln!(s, "sluice_protocol_requests_total{{protocol=\"{}\"}} {n}", p.as_str());
        }
        let _ = write!(
            s,
            "# HELP sluice_protocol_records_total Records by protocol and outcome.\n# TYPE sluice_protocol_records_total counter\n"
        );
        for (i, p) in Protocol::ALL.iter().enumerate() {
            for (j, outcome) in [(1, "accepted"), (2, "rejected")] {
                let n = self.by_protocol[i][j].load(Relaxed);
                let _ = writeln!(
                    s,
                    "sluice_protocol_records_total{{protocol=\"{}\",outcome=\"{outcome}\"}} {n}",
                    p.as_str()
                );
            }
        }
        let _ = write!(
            s,
            "# HELP sluice_flush_seconds Time to encode and write one file.\n# TYPE sluice_flush_seconds histogram\n"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(s, "sluice_flush_seconds_bucket{{le=\"{b}\"}} {}", self.flush_buckets[i].load(Relaxed));
        }
        let count = self.flush_count.load(Relaxed);
        let _ = writeln!(s, "sluice_flush_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "sluice_flush_seconds_sum {}", self.flush_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "sluice_flush_seconds_count {count}");
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        gauge("sluice_wal_bytes", "Bytes in the write-ahead log.", self.wal_bytes.load(Relaxed));
        gauge(
            "sluice_buffered_bytes",
            "Bytes buffered for delivery, including files being written.",
            self.buffered_bytes.load(Relaxed),
        );
        gauge(
            "sluice_memory_budget_bytes",
            "The memory budget of the buffers (--memory-budget).",
            self.memory_budget.load(Relaxed),
        );
        gauge(
            "sluice_wal_max_bytes",
            "The size of the write-ahead log at which the API answers 503 (--wal-max).",
            self.wal_max_bytes.load(Relaxed),
        );
        s
    }
}
