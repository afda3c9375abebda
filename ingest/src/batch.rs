//! Buffering per partition, as Firehose's buffering hints do: a buffer is flushed when it reaches
//! its size, when it reaches its age, when memory runs short (oldest first), or at shutdown.
//! Shared by the delivery stream, `sluice import` and `sluice replay`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sluice_schemas::{Partition, Registry, Row};

use crate::{
    columnar::encode_parquet,
    error::Result,
    errors::{ErrorRecord, PROCESSING_FAILED},
    lake::Lake,
};

/// Buffering hints.
#[derive(Debug, Clone, Copy)]
pub struct BufferHints {
    /// Flush a buffer when it holds this many bytes.
    pub size_bytes: u64,
    /// Flush a buffer when its oldest record is this old.
    pub interval: Duration,
}

/// One item to buffer: an accepted row or a rejected record.
#[derive(Debug, Clone)]
pub enum Item {
    /// An accepted record.
    Row {
        /// Where it goes.
        partition: Partition,
        /// What it holds.
        row: Box<Row>,
        /// Its size estimate in memory.
        size: u64,
    },
    /// A rejected record.
    Error(ErrorRecord),
}

#[derive(Debug)]
struct Buf<T> {
    items: Vec<T>,
    bytes: u64,
    min_seq: u64,
    max_seq: u64,
    opened: Instant,
}

impl<T> Buf<T> {
    fn new(seq: u64) -> Self {
        Self { items: Vec::new(), bytes: 0, min_seq: seq, max_seq: seq, opened: Instant::now() }
    }
}

/// Where a flushed buffer goes.
#[derive(Debug)]
pub enum Target {
    /// A Parquet data file of one partition.
    Data {
        /// The partition.
        partition: Partition,
        /// The rows.
        rows: Vec<Row>,
    },
    /// An NDJSON error file of one arrival hour.
    Errors {
        /// Start of the hour.
        hour: DateTime<Utc>,
        /// The error records.
        records: Vec<ErrorRecord>,
    },
}

/// A buffer taken for writing.
#[derive(Debug)]
pub struct Job {
    /// What to write.
    pub target: Target,
    /// Smallest sequence number in it.
    pub min_seq: u64,
    /// Largest sequence number in it.
    pub max_seq: u64,
    /// Its size estimate in memory.
    pub bytes: u64,
}

impl Job {
    /// Records in the job.
    pub fn len(&self) -> usize {
        match &self.target {
            Target::Data { rows, .. } => rows.len(),
            Target::Errors { records, .. } => records.len(),
        }
    }

    /// Whether the job is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file name: `{prefix}-{min_seq}-{max_seq}`, so the same input range always gives the
    /// same name and a retried write replaces rather than duplicates.
    pub fn file_name(&self, prefix: &str) -> String {
        let ext = match self.target {
            Target::Data { .. } => "parquet",
            Target::Errors { .. } => "ndjson",
        };
        format!("{prefix}-{:020}-{:020}.{ext}", self.min_seq, self.max_seq)
    }

    /// Encodes and writes the job to the lake. Returns the key written and its size.
    pub async fn write(
        &self,
        lake: &Lake,
        registry: &Registry,
        schema: &SchemaRef,
        prefix: &str,
    ) -> Result<(String, u64)> {
        let name = self.file_name(prefix);
        let (key, bytes) = match &self.target {
            Target::Data { partition, rows } => {
                let refs: Vec<&Row> = rows.iter().collect();
                let bytes = encode_parquet(registry, schema, &refs)?;
                (lake.data_key(partition, &name), bytes)
            }
            Target::Errors { hour, records } => {
                let mut out = Vec::with_capacity(records.len() * 256);
                for r in records {
                    out.extend_from_slice(&r.to_line());
                }
                (lake.error_key(PROCESSING_FAILED, *hour, &name), out)
            }
        };
        let n = bytes.len() as u64;
        lake.put(&key, Bytes::from(bytes)).await?;
        Ok((key.to_string(), n))
    }
}

/// Buffers per partition and per error hour.
#[derive(Debug)]
pub struct Batcher {
    hints: BufferHints,
    rows: HashMap<Partition, Buf<Row>>,
    errors: HashMap<i64, Buf<ErrorRecord>>,
    bytes: u64,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(hints: BufferHints) -> Self {
        Self { hints, rows: HashMap::new(), errors: HashMap::new(), bytes: 0 }
    }

    /// Bytes buffered.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.errors.is_empty()
    }

    /// Smallest sequence number buffered.
    pub fn min_seq(&self) -> Option<u64> {
        self.rows.values().map(|b| b.min_seq).chain(self.errors.values().map(|b| b.min_seq)).min()
    }

    /// Adds an item; returns the buffer as a job when it reached its size.
    pub fn add(&mut self, seq: u64, item: Item) -> Option<Job> {
        match item {
            Item::Row { partition, row, size } => {
                self.bytes += size;
                let buf = self.rows.entry(partition.clone()).or_insert_with(|| Buf::new(seq));
                buf.items.push(*row);
                buf.bytes += size;
                buf.min_seq = buf.min_seq.min(seq);
                buf.max_seq = buf.max_seq.max(seq);
                (buf.bytes >= self.hints.size_bytes).then(|| self.take_rows(&partition)).flatten()
            }
            Item::Error(e) => {
                let size = e.raw_data.len() as u64 + e.error_message.len() as u64 + 128;
                self.bytes += size;
                let hour = e.arrival_timestamp.div_euclid(3_600_000);
                let buf = self.errors.entry(hour).or_insert_with(|| Buf::new(seq));
                buf.items.push(e);
                buf.bytes += size;
                buf.min_seq = buf.min_seq.min(seq);
                buf.max_seq = buf.max_seq.max(seq);
                (buf.bytes >= self.hints.size_bytes).then(|| self.take_errors(hour)).flatten()
            }
        }
    }

    fn take_rows(&mut self, p: &Partition) -> Option<Job> {
        let b = self.rows.remove(p)?;
        self.bytes -= b.bytes;
        Some(Job {
            target: Target::Data { partition: p.clone(), rows: b.items },
            min_seq: b.min_seq,
            max_seq: b.max_seq,
            bytes: b.bytes,
        })
    }

    fn take_errors(&mut self, hour: i64) -> Option<Job> {
        let b = self.errors.remove(&hour)?;
        self.bytes -= b.bytes;
        let start = DateTime::<Utc>::from_timestamp(hour * 3600, 0).unwrap_or_default();
        Some(Job {
            target: Target::Errors { hour: start, records: b.items },
            min_seq: b.min_seq,
            max_seq: b.max_seq,
            bytes: b.bytes,
        })
    }

    /// Takes every buffer older than the buffer interval.
    pub fn due(&mut self, now: Instant) -> Vec<Job> {
        let interval = self.hints.interval;
        let rows: Vec<Partition> = self
            .rows
            .iter()
            .filter(|(_, b)| now.duration_since(b.opened) >= interval)
            .map(|(p, _)| p.clone())
            .collect();
        let errs: Vec<i64> =
            self.errors.iter().filter(|(_, b)| now.duration_since(b.opened) >= interval).map(|(h, _)| *h).collect();
        let mut jobs: Vec<Job> = rows.iter().filter_map(|p| self.take_rows(p)).collect();
        jobs.extend(errs.into_iter().filter_map(|h| self.take_errors(h)));
        jobs
    }

    /// Takes the buffer holding the oldest record (smallest sequence number).
    pub fn take_oldest(&mut self) -> Option<Job> {
        let row = self.rows.iter().min_by_key(|(_, b)| b.min_seq).map(|(p, b)| (b.min_seq, p.clone()));
        let err = self.errors.iter().min_by_key(|(_, b)| b.min_seq).map(|(h, b)| (b.min_seq, *h));
        match (row, err) {
            (Some((rs, p)), Some((es, _))) if rs <= es => self.take_rows(&p),
            (Some((_, p)), None) => self.take_rows(&p),
            (_, Some((_, h))) => self.take_errors(h),
            (None, None) => None,
        }
    }

    /// Takes every buffer.
    pub fn drain(&mut self) -> Vec<Job> {
        let parts: Vec<Partition> = self.rows.keys().cloned().collect();
        let hours: Vec<i64> = self.errors.keys().copied().collect();
        let mut jobs: Vec<Job> = parts.iter().filter_map(|p| self.take_rows(p)).collect();
        jobs.extend(hours.into_iter().filter_map(|h| self.take_errors(h)));
        jobs
    }
}
