//! The rows of a merged file in order of `time`, in bounded memory whatever the files' sizes.
//!
//! A file sluice writes holds its rows in order of `time` and says so
//! ([`crate::encode::sorted_by_time`]): it is read a batch at a time. A file that does not (one
//! Firehose wrote, or sluice before it sorted its files) is read whole and sorted, then kept in
//! memory while the sorted files kept take at most [`SORT_MEMORY`], or written to a temporary
//! file and read back a batch at a time. The files' rows are then merged: the earliest next,
//! rows of the same time in the order of the files (their names) and of their rows.

use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc};

use arrow_array::{Array, RecordBatch, UInt32Array, cast::AsArray, types::TimestampMicrosecondType};
use arrow_schema::SchemaRef;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};

use crate::error::{Error, Result};

/// Most bytes of sorted rows of unsorted files kept in memory during a merge; the rest wait in
/// temporary files.
pub const SORT_MEMORY: usize = 64 << 20;

/// Rows read at a time from a sorted file.
pub const BATCH_ROWS: usize = 1024;

/// Rows of a merged batch.
const OUT_ROWS: usize = 8192;

/// Batches of rows in order of `time`.
pub type Sorted = BoxStream<'static, Result<RecordBatch>>;

/// The rows of `batches` (all of one file, in the columns of `schema`) in order of `time`: kept
/// in memory while `kept` (the bytes of such rows kept so far) stays within [`SORT_MEMORY`],
/// else through a temporary file.
pub fn sort(schema: &SchemaRef, batches: &[RecordBatch], kept: &mut usize) -> Result<Sorted> {
    let all = arrow_select::concat::concat_batches(schema, batches)?;
    let times = time_column(&all)?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by_key(|&i| time_at(times, i as usize));
    let sorted = arrow_select::take::take_record_batch(&all, &UInt32Array::from(order))?;
    drop(all);
    let bytes = sorted.get_array_memory_size();
    if *kept + bytes <= SORT_MEMORY {
        *kept += bytes;
        return Ok(futures::stream::iter([Ok(sorted)]).boxed());
    }
    let file = tempfile::tempfile().map_err(Error::io(std::env::temp_dir()))?;
    let mut w =
        ArrowWriter::try_new(file.try_clone().map_err(Error::io(std::env::temp_dir()))?, Arc::clone(schema), None)?;
    w.write(&sorted)?;
    w.close()?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(BATCH_ROWS).build()?;
    Ok(futures::stream::iter(reader.map(|b| b.map_err(Error::from))).boxed())
}

fn time_column(batch: &RecordBatch) -> Result<&arrow_array::TimestampMicrosecondArray> {
    let (i, _) = batch.schema().column_with_name("time").ok_or_else(|| Error::Column {
        file: String::new(),
        column: "time".into(),
        reason: "is required but missing".into(),
    })?;
    batch.column(i).as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(|| Error::Column {
        file: String::new(),
        column: "time".into(),
        reason: "is not a timestamp of microseconds".into(),
    })
}

/// A row's time, a missing one last.
fn time_at(times: &arrow_array::TimestampMicrosecondArray, row: usize) -> i64 {
    if times.is_null(row) { i64::MAX } else { times.value(row) }
}

/// One file being merged: its current batch and row.
struct Source {
    rest: Sorted,
    batch: RecordBatch,
    row: usize,
    /// Where `batch` is in [`Merge::held`].
    slot: usize,
}

impl Source {
    fn time(&self) -> Result<i64> {
        Ok(time_at(time_column(&self.batch)?, self.row))
    }
}

/// The rows of several [`Sorted`] streams in order of `time`.
pub struct Merge {
    schema: SchemaRef,
    sources: Vec<Option<Source>>,
    /// The next row of each source: (time, source).
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    /// The batches rows of the next merged batch come from.
    held: Vec<RecordBatch>,
    next: Vec<(usize, usize)>,
}

impl Merge {
    /// Merges `inputs` (in the order that breaks ties).
    pub async fn new(schema: SchemaRef, inputs: Vec<Sorted>) -> Result<Self> {
        let mut merge =
            Self { schema, sources: Vec::new(), heap: BinaryHeap::new(), held: Vec::new(), next: Vec::new() };
        for (i, mut rest) in inputs.into_iter().enumerate() {
            let source = match first_rows(&mut rest).await? {
                Some(batch) => {
                    merge.held.push(batch.clone());
                    let s = Source { rest, batch, row: 0, slot: merge.held.len() - 1 };
                    merge.heap.push(Reverse((s.time()?, i)));
                    Some(s)
                }
                None => None,
            };
            merge.sources.push(source);
        }
        Ok(merge)
    }

    /// The next rows in order of `time`, `None` when every input is done.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>> {
        // Batches a merged batch may hold rows of, beyond one a source.
        let most_held = self.sources.len() + 256;
        while self.next.len() < OUT_ROWS && self.held.len() <= most_held {
            let Some(Reverse((_, i))) = self.heap.pop() else { break };
            let Some(s) = &mut self.sources[i] else { continue };
            self.next.push((s.slot, s.row));
            s.row += 1;
            if s.row == s.batch.num_rows() {
                match first_rows(&mut s.rest).await? {
                    Some(batch) => {
                        self.held.push(batch.clone());
                        (s.batch, s.row, s.slot) = (batch, 0, self.held.len() - 1);
                    }
                    None => {
                        self.sources[i] = None;
                        continue;
                    }
                }
            }
            self.heap.push(Reverse((s.time()?, i)));
        }
        if self.next.is_empty() {
            return Ok(None);
        }
        let held: Vec<&RecordBatch> = self.held.iter().collect();
        let out = arrow_select::interleave::interleave_record_batch(&held, &self.next)?;
        self.next.clear();
        // Only the sources' current batches are still needed.
        self.held.clear();
        for s in self.sources.iter_mut().flatten() {
            self.held.push(s.batch.clone());
            s.slot = self.held.len() - 1;
        }
        debug_assert_eq!(out.schema(), self.schema);
        Ok(Some(out))
    }
}

/// The next batch of `rest` that has rows.
async fn first_rows(rest: &mut Sorted) -> Result<Option<RecordBatch>> {
    while let Some(batch) = rest.try_next().await? {
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("n", DataType::Int64, false),
        ]))
    }

    /// A batch of rows (time, n).
    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        let times = TimestampMicrosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()).with_timezone("UTC");
        let ns = Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
        RecordBatch::try_new(schema(), vec![Arc::new(times), Arc::new(ns)]).expect("batch")
    }

    fn rows(b: &RecordBatch) -> Vec<(i64, i64)> {
        let t = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let n = b.column(1).as_primitive::<arrow_array::types::Int64Type>();
        (0..b.num_rows()).map(|i| (t.value(i), n.value(i))).collect()
    }

    #[tokio::test]
    async fn sorted_and_unsorted_files_merge_in_order_of_time_within_bounded_memory() {
        let schema = schema();
        // A sorted file read a few rows at a time, with an empty batch among them.
        let sorted: Vec<Result<RecordBatch>> =
            vec![Ok(batch(&[(1, 100), (5, 101)])), Ok(batch(&[])), Ok(batch(&[(5, 102), (9, 103)]))];
        // Unsorted files: one kept in memory, one (once the memory is used up) in a temporary file.
        let unsorted = [batch(&[(7, 200), (2, 201)]), batch(&[(5, 202), (0, 203)])];
        let mut kept = 0;
        let in_memory = sort(&schema, &unsorted, &mut kept).expect("sort");
        assert!(kept > 0);
        let mut full = SORT_MEMORY;
        let many: Vec<(i64, i64)> = (0..3000).map(|i| ((i * 7919) % 3000, 300 + i)).collect();
        let spilled = sort(&schema, &[batch(&many)], &mut full).expect("sort");
        assert_eq!(full, SORT_MEMORY, "written to a temporary file, not kept");
        let inputs = vec![futures::stream::iter(sorted).boxed(), in_memory, spilled];
        let mut merge = Merge::new(Arc::clone(&schema), inputs).await.expect("merge");
        let mut out = Vec::new();
        while let Some(b) = merge.next().await.expect("next") {
            assert!(b.num_rows() <= OUT_ROWS);
            out.extend(rows(&b));
        }
        assert_eq!(out.len(), 4 + 4 + 3000, "every row once");
        assert!(out.is_sorted_by_key(|r| r.0), "in order of time");
        // Rows of the same time: in the order of the inputs, then of their rows.
        let fives: Vec<i64> = out.iter().filter(|r| r.0 == 5).map(|r| r.1).collect();
        let spilled_five = 300 + (0..3000).find(|i| (i * 7919) % 3000 == 5).expect("a five");
        assert_eq!(fives, [101, 102, 202, spilled_five]);
        let mut ns: Vec<i64> = out.iter().map(|r| r.1).collect();
        ns.sort_unstable();
        ns.dedup();
        assert_eq!(ns.len(), out.len());
    }
}
