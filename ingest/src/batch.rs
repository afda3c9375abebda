//! Buffering per partition, as Firehose's buffering hints do: a buffer is flushed when it reaches
//! its size, when it reaches its age, when memory runs short (oldest first), or at shutdown.
//! Shared by the delivery stream, `sluice import` and `sluice replay`.

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    time::{Duration, Instant},
};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use sluice_schemas::{FAR_TIME_MARK, PackedRow, Partition, Registry};

use sluice_lake::{
    Lake,
    encode::encode_parquet,
    error_record::{ErrorRecord, PROCESSING_FAILED},
};

use crate::error::Result;

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
        row: PackedRow,
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

    /// Adds `item` with sequence number `seq`, keeping `by_seq` (buffers by smallest sequence
    /// number) up to date: `key` is called for a new buffer only; an existing buffer's entry
    /// moves when `seq` is its new smallest.
    fn push(&mut self, by_seq: &mut BTreeMap<u64, Key>, key: impl FnOnce() -> Key, seq: u64, item: T, size: u64) {
        if self.items.is_empty() {
            by_seq.insert(seq, key());
            self.min_seq = seq;
        } else if seq < self.min_seq {
            if let Some(k) = by_seq.remove(&self.min_seq) {
                by_seq.insert(seq, k);
            }
            self.min_seq = seq;
        }
        self.items.push(item);
        self.bytes += size;
        self.max_seq = self.max_seq.max(seq);
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
        rows: Vec<PackedRow>,
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
    /// same name and a retried write replaces rather than duplicates. A data file holding a
    /// record whose `time` lies far from its hour partition carries
    /// [`sluice_schemas::FAR_TIME_MARK`], so readers that prune hours by `time` keep it.
    pub fn file_name(&self, prefix: &str) -> String {
        let (mark, ext) = match &self.target {
            Target::Data { partition, rows } => {
                let far = rows.iter().any(|r| partition.is_far(r.row().time));
                (if far { FAR_TIME_MARK } else { "" }, "parquet")
            }
            Target::Errors { .. } => ("", "ndjson"),
        };
        format!("{prefix}-{:020}-{:020}{mark}.{ext}", self.min_seq, self.max_seq)
    }

    /// Encodes the job: the key it goes to and the file's bytes. CPU work; the delivery stream
    /// runs it on the blocking pool.
    pub fn encode(&self, lake: &Lake, registry: &Registry, schema: &SchemaRef, prefix: &str) -> Result<(Path, Bytes)> {
        let name = self.file_name(prefix);
        Ok(match &self.target {
            Target::Data { partition, rows } => {
                (lake.data_key(partition, &name), Bytes::from(encode_parquet(registry, schema, rows)?))
            }
            Target::Errors { hour, records } => {
                let mut out = Vec::with_capacity(records.len() * 256);
                for r in records {
                    out.extend_from_slice(&r.to_line());
                }
                (lake.error_key(PROCESSING_FAILED, *hour, &name), Bytes::from(out))
            }
        })
    }

    /// Encodes and writes the job to the lake. Returns the key written and its size.
    pub async fn write(
        &self,
        lake: &Lake,
        registry: &Registry,
        schema: &SchemaRef,
        prefix: &str,
    ) -> Result<(String, u64)> {
        let (key, bytes) = self.encode(lake, registry, schema, prefix)?;
        let n = bytes.len() as u64;
        lake.put(&key, bytes).await?;
        Ok((key.to_string(), n))
    }
}

/// Which buffer: a partition's, or an error hour's.
#[derive(Debug, Clone)]
enum Key {
    Rows(Partition),
    Errors(i64),
}

/// Buffers per partition and per error hour.
#[derive(Debug)]
pub struct Batcher {
    hints: BufferHints,
    rows: HashMap<Partition, Buf<PackedRow>>,
    errors: HashMap<i64, Buf<ErrorRecord>>,
    /// Every buffer by its smallest sequence number (unique: a sequence number is one item), so
    /// the oldest buffer is found without a scan when thousands of partitions are open.
    by_seq: BTreeMap<u64, Key>,
    bytes: u64,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(hints: BufferHints) -> Self {
        Self { hints, rows: HashMap::new(), errors: HashMap::new(), by_seq: BTreeMap::new(), bytes: 0 }
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
        self.by_seq.keys().next().copied()
    }

    /// Adds an item; returns the buffer as a job when it reached its size.
    pub fn add(&mut self, seq: u64, item: Item) -> Option<Job> {
        match item {
            Item::Row { partition, row, size } => {
                self.bytes += size;
                // The entry takes the partition: its strings are copied for a new buffer only.
                let (mut slot, key) = match self.rows.entry(partition) {
                    Entry::Occupied(o) => (o, None),
                    Entry::Vacant(v) => {
                        let key = Key::Rows(v.key().clone());
                        (v.insert_entry(Buf::new(seq)), Some(key))
                    }
                };
                slot.get_mut().push(&mut self.by_seq, || key.expect("a new buffer"), seq, row, size);
                if slot.get().bytes < self.hints.size_bytes {
                    return None;
                }
                let (partition, b) = slot.remove_entry();
                Some(self.rows_job(partition, b))
            }
            Item::Error(e) => {
                // The record's text, plus its struct and the allocator's share of its four strings.
                let size = (e.raw_data.len() + e.error_message.len() + e.error_code.len()) as u64 + 256;
                self.bytes += size;
                let hour = e.arrival_timestamp.div_euclid(3_600_000);
                let buf = self.errors.entry(hour).or_insert_with(|| Buf::new(seq));
                buf.push(&mut self.by_seq, || Key::Errors(hour), seq, e, size);
                let full = buf.bytes >= self.hints.size_bytes;
                full.then(|| self.take_errors(hour)).flatten()
            }
        }
    }

    fn take_rows(&mut self, p: &Partition) -> Option<Job> {
        let (p, b) = self.rows.remove_entry(p)?;
        Some(self.rows_job(p, b))
    }

    /// The job of a partition's buffer, taken out of `rows`.
    /// Its rows are in order of `time` (as they arrived, for equal times): a reader of the file
    /// (a time range, the newest first) and compaction need not sort them.
    fn rows_job(&mut self, partition: Partition, b: Buf<PackedRow>) -> Job {
        self.by_seq.remove(&b.min_seq);
        self.bytes -= b.bytes;
        let mut rows = b.items;
        if !rows.is_sorted_by_key(|r| r.row().time) {
            rows.sort_by_key(|r| r.row().time);
        }
        Job { target: Target::Data { partition, rows }, min_seq: b.min_seq, max_seq: b.max_seq, bytes: b.bytes }
    }

    fn take_errors(&mut self, hour: i64) -> Option<Job> {
        let b = self.errors.remove(&hour)?;
        self.by_seq.remove(&b.min_seq);
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
        match self.by_seq.first_key_value()?.1.clone() {
            Key::Rows(p) => self.take_rows(&p),
            Key::Errors(h) => self.take_errors(h),
        }
    }

    /// Takes the buffers of the partitions that `keep` picks (no error buffer).
    pub fn drain_where(&mut self, mut keep: impl FnMut(&Partition) -> bool) -> Vec<Job> {
        let parts: Vec<Partition> = self.rows.keys().filter(|p| keep(p)).cloned().collect();
        parts.iter().filter_map(|p| self.take_rows(p)).collect()
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

#[cfg(test)]
mod tests {
    use sluice_schemas::{PartitionValue, Row};

    use super::*;

    fn row_item(hour: u8) -> Item {
        let partition = Partition {
            environment: PartitionValue::new("prod").expect("valid"),
            organization: PartitionValue::new("1").expect("valid"),
            logtype: PartitionValue::new("web").expect("valid"),
            year: 2025,
            month: 1,
            day: 1,
            hour,
        };
        let row = Row {
            record_id: "",
            time: 0,
            transaction_id: None,
            server: None,
            action: None,
            r#type: None,
            description: None,
            caller: None,
            success: None,
            detail: None,
            events: None,
            attributes: None,
            ingested_at: 0,
            extras: Vec::new(),
        };
        Item::Row { partition, row: PackedRow::new(row), size: 100 }
    }

    fn error_item() -> Item {
        Item::Error(ErrorRecord::new(b"{", 0, "invalid_json", "bad"))
    }

    fn first_hour(job: &Job) -> Option<u8> {
        match &job.target {
            Target::Data { partition, .. } => Some(partition.hour),
            Target::Errors { .. } => None,
        }
    }

    #[test]
    fn oldest_buffer_first_across_partitions_and_errors() {
        let mut b = Batcher::new(BufferHints { size_bytes: 300, interval: Duration::from_secs(60) });
        assert!(b.add(10, row_item(3)).is_none());
        assert!(b.add(11, row_item(1)).is_none());
        assert!(b.add(12, error_item()).is_none());
        assert!(b.add(13, row_item(3)).is_none());
        assert_eq!(b.min_seq(), Some(10));
        // The third row of hour 3 fills its buffer: taken at once, its index entry with it.
        let full = b.add(14, row_item(3)).expect("buffer of hour 3 reached its size");
        assert_eq!((full.min_seq, full.max_seq, full.len(), first_hour(&full)), (10, 14, 3, Some(3)));
        assert_eq!(b.min_seq(), Some(11));
        assert!(b.add(15, row_item(3)).is_none());
        let order: Vec<(u64, Option<u8>)> =
            std::iter::from_fn(|| b.take_oldest()).map(|j| (j.min_seq, first_hour(&j))).collect();
        assert_eq!(order, [(11, Some(1)), (12, None), (15, Some(3))]);
        assert_eq!((b.min_seq(), b.bytes(), b.is_empty()), (None, 0, true));
    }

    #[test]
    fn an_earlier_sequence_number_moves_the_buffer_forward() {
        let mut b = Batcher::new(BufferHints { size_bytes: 1 << 20, interval: Duration::from_secs(60) });
        b.add(20, row_item(1));
        b.add(21, row_item(2));
        b.add(5, row_item(2));
        assert_eq!(b.min_seq(), Some(5));
        let first = b.take_oldest().expect("two buffers");
        assert_eq!((first.min_seq, first.max_seq, first_hour(&first)), (5, 21, Some(2)));
        assert_eq!(b.min_seq(), Some(20));
        assert_eq!(b.drain().len(), 1);
        assert_eq!(b.min_seq(), None);
    }
}
