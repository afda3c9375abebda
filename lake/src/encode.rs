//! Normalized rows → Arrow record batches → zstd Parquet, with the lake schema from `schemas/`.

use std::{
    collections::HashSet,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

use arrow_array::{
    Array, ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
        TimestampMicrosecondBuilder,
    },
    cast::AsArray,
    types::{Float64Type, Int64Type, TimestampMicrosecondType},
};
use arrow_schema::{DataType, Fields, SchemaRef, TimeUnit};
use parquet::{
    arrow::{ArrowSchemaConverter, ArrowWriter, arrow_writer::ArrowWriterOptions},
    basic::{Compression, ZstdLevel},
    file::{
        metadata::{ParquetMetaData, SortingColumn},
        properties::{EnabledStatistics, WriterProperties},
        statistics::Statistics,
    },
    schema::types::{ColumnPath, SchemaDescriptor},
};
use sluice_schemas::{ExtraType, ExtraValue, PackedRow, Registry, Span, UTC};

use crate::error::Result;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

fn ts() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone(UTC)
}

fn strings<'a>(rows: &'a [PackedRow], f: impl Fn(&'a PackedRow) -> Option<&'a str>) -> ArrayRef {
    // Sized exactly, so the values are copied once.
    let bytes = rows.iter().map(|r| f(r).map_or(0, str::len)).sum();
    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
    for r in rows {
        b.append_option(f(r));
    }
    Arc::new(b.finish())
}

fn events_array(rows: &[PackedRow], event_fields: &Fields) -> ArrayRef {
    let mut list = ListBuilder::new(StructBuilder::from_fields(event_fields.clone(), rows.len()))
        .with_field(Arc::new(arrow_schema::Field::new("item", DataType::Struct(event_fields.clone()), true)));
    for r in rows {
        let Some(events) = &r.row().events else {
            list.append_null();
            continue;
        };
        let sb = list.values();
        for e in events {
            for (i, v) in [e.action, e.description, e.detail, e.caller, e.server].into_iter().enumerate() {
                sb.field_builder::<StringBuilder>(i).expect("string field").append_option(r.opt(v));
            }
            sb.field_builder::<BooleanBuilder>(5).expect("success").append_option(e.success);
            sb.field_builder::<TimestampMicrosecondBuilder>(6).expect("time").append_option(e.time);
            for (i, v) in [(7, e.transaction_id), (8, e.r#type), (9, e.attributes)] {
                sb.field_builder::<StringBuilder>(i).expect("string field").append_option(r.opt(v));
            }
            sb.append(true);
        }
        list.append(true);
    }
    Arc::new(list.finish())
}

/// The value of extra column `idx` of a row.
fn extra_value(r: &PackedRow, idx: usize) -> Option<&ExtraValue<Span>> {
    r.row().extras.iter().find(|(i, _)| *i == idx).map(|(_, v)| v)
}

/// Builds a record batch of the lake schema from rows.
pub fn rows_to_batch(registry: &Registry, schema: &SchemaRef, rows: &[PackedRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    cols.push(strings(rows, |r| Some(r.text(r.row().record_id))));
    let mut time = ts();
    for r in rows {
        time.append_value(r.row().time);
    }
    cols.push(Arc::new(time.finish()));
    cols.push(strings(rows, |r| r.opt(r.row().transaction_id)));
    cols.push(strings(rows, |r| r.opt(r.row().server)));
    cols.push(strings(rows, |r| r.opt(r.row().action)));
    cols.push(strings(rows, |r| r.opt(r.row().r#type)));
    cols.push(strings(rows, |r| r.opt(r.row().description)));
    cols.push(strings(rows, |r| r.opt(r.row().caller)));
    let mut success = BooleanBuilder::with_capacity(n);
    for r in rows {
        success.append_option(r.row().success);
    }
    cols.push(Arc::new(success.finish()));
    cols.push(strings(rows, |r| r.opt(r.row().detail)));
    let DataType::List(item) = schema.field(10).data_type() else { unreachable!("events is a list") };
    let DataType::Struct(event_fields) = item.data_type() else { unreachable!("events items are structs") };
    cols.push(events_array(rows, event_fields));
    cols.push(strings(rows, |r| r.opt(r.row().attributes)));
    let mut ingested = ts();
    for r in rows {
        ingested.append_value(r.row().ingested_at);
    }
    cols.push(Arc::new(ingested.finish()));
    for (idx, extra) in registry.extras().iter().enumerate() {
        let array: ArrayRef = match extra.ty {
            ExtraType::String | ExtraType::Json => strings(rows, |r| match extra_value(r, idx) {
                Some(&(ExtraValue::String(s) | ExtraValue::Json(s))) => Some(r.text(s)),
                _ => None,
            }),
            ExtraType::Bigint => {
                let mut b = Int64Builder::with_capacity(n);
                for r in rows {
                    b.append_option(match extra_value(r, idx) {
                        Some(&ExtraValue::Bigint(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ExtraType::Double => {
                let mut b = Float64Builder::with_capacity(n);
                for r in rows {
                    b.append_option(match extra_value(r, idx) {
                        Some(&ExtraValue::Double(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ExtraType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for r in rows {
                    b.append_option(match extra_value(r, idx) {
                        Some(&ExtraValue::Boolean(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ExtraType::Timestamp => {
                let mut b = ts();
                for r in rows {
                    b.append_option(match extra_value(r, idx) {
                        Some(&ExtraValue::Timestamp(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
        };
        cols.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Column chunks estimated below this size (in a file whose rows are all in the sample) are
/// stored uncompressed: a zstd frame on so little saves a few dozen bytes at most, and each
/// compressed chunk costs a compression context and a Huffman table. Measured with
/// `lake/examples/encode.rs` on the benchmark's data (files of about 70 rows, with the other
/// settings here): 512 encoded 4% faster than 256 for a lake 1.6% larger; 768, 7% faster again
/// for 4% larger.
pub const ZSTD_MIN_BYTES: usize = 512;

/// Dictionary-encoded column chunks estimated below this size (in a file whose rows are all in the
/// sample) are stored uncompressed too. Their dictionary already holds each value once, so zstd
/// finds little left to take out: on the benchmark's lake, raising this from 1 KiB to 2 KiB left
/// the lake's size unchanged (to 0.01%) and encoded 2% faster.
pub const ZSTD_MIN_DICTIONARY_BYTES: usize = 2048;

/// Files of fewer rows get statistics per column chunk only, and no offset index: each of their
/// columns is a single page, so a page index would repeat the chunk's statistics (about 70 bytes
/// a column) and an offset index its location (about 20 bytes a column, 5% of the benchmark's
/// lake, and 5% of the time to encode it).
pub const PAGE_INDEX_MIN_ROWS: usize = 20_000;

/// The zstd level of files of fewer than [`PAGE_INDEX_MIN_ROWS`] rows; larger files (compaction's)
/// get level 3. On chunks of a few KiB level 1 compresses almost as well: on the benchmark's
/// lake it encoded 7.5% faster than level 3 for a lake 0.3% larger.
pub const SMALL_FILE_ZSTD_LEVEL: i32 = 1;

/// Column statistics keep at most this many bytes of a string's minimum and maximum (a
/// truncated maximum is rounded up, so pruning stays correct). Strings in a file of log records
/// rarely share a longer prefix, and at 64 bytes the minimums and maximums of long values
/// (transaction ids, `detail`, `caller`, `attributes`) were 5.1% of the benchmark's lake; at 32,
/// 3.9%.
pub const STATISTICS_TRUNCATE_BYTES: usize = 32;

/// Writer settings of a data file of `rows` rows whose first batch is `sample`: zstd (level
/// [`SMALL_FILE_ZSTD_LEVEL`] for small files), statistics per page (per column chunk, and no
/// offset index, below [`PAGE_INDEX_MIN_ROWS`]) with strings truncated to
/// [`STATISTICS_TRUNCATE_BYTES`], row groups of [`ROW_GROUP_ROWS`], dictionary encoding only for
/// the columns whose values repeat in `sample`, and no compression for chunks under
/// [`ZSTD_MIN_BYTES`] (dictionary-encoded ones under [`ZSTD_MIN_DICTIONARY_BYTES`]).
///
/// A dictionary stores each distinct value once and an index a row; when the values hardly repeat
/// (`record_id`, `transaction_id`, times, most free text within one partition-hour) it only adds
/// the indices and a page. Measured on the benchmark's lake (files of about 70 rows): 4.6% smaller
/// with dictionaries for repeating columns only, 2.3% with none at all.
pub fn writer_properties(sample: &RecordBatch, rows: usize) -> WriterProperties {
    let small = rows < PAGE_INDEX_MIN_ROWS;
    let (stats, level) =
        if small { (EnabledStatistics::Chunk, SMALL_FILE_ZSTD_LEVEL) } else { (EnabledStatistics::Page, 3) };
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(level).expect("valid zstd level")))
        .set_statistics_enabled(stats)
        .set_offset_index_disabled(small)
        .set_statistics_truncate_length(Some(STATISTICS_TRUNCATE_BYTES))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")));
    let mut leaves = Vec::new();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        classify_leaves(&mut vec![field.name().clone()], column, &mut leaves);
    }
    // When the sample is the whole file, its sizes are the chunks' sizes.
    let whole = rows <= sample.num_rows();
    for (path, leaf) in leaves {
        b = match leaf {
            Leaf::Repeating { bytes } if whole && bytes < ZSTD_MIN_DICTIONARY_BYTES => {
                b.set_column_compression(path, Compression::UNCOMPRESSED)
            }
            Leaf::Repeating { .. } => b,
            Leaf::Unique { bytes } if whole && bytes < ZSTD_MIN_BYTES => b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_compression(path, Compression::UNCOMPRESSED),
            Leaf::Unique { .. } => b.set_column_dictionary_enabled(path, false),
            // A page of nulls is a few bytes of levels: a dictionary page, or a zstd frame, would
            // be larger than what it holds.
            Leaf::Null => b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_compression(path, Compression::UNCOMPRESSED),
        };
    }
    // A bloom filter for each column a transaction id is in, sized for a distinct value a row
    // and folded down once the values are in: what lets a reader skip the files of other
    // transactions without reading their columns (crate::files).
    let ndv = rows.clamp(1, ROW_GROUP_ROWS) as u64;
    for path in TRANSACTION_ID_COLUMNS {
        let path = ColumnPath::new(path.iter().map(|p| (*p).to_owned()).collect());
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), BLOOM_FPP)
            .set_column_bloom_filter_max_ndv(path, ndv);
    }
    b.build()
}

/// The Parquet columns that hold transaction ids: the record's and its events'. Each gets a
/// bloom filter.
pub const TRANSACTION_ID_COLUMNS: [&[&str]; 2] = [&["transaction_id"], &["events", "list", "item", "transaction_id"]];

/// The false-positive rate of the bloom filters: a lookup over a lake of 20,000 files reads
/// about 20 files it did not need to. A file of 50 distinct ids gets a filter of 128 bytes.
pub const BLOOM_FPP: f64 = 0.001;

/// What the values of a leaf column of a sample are like, and about how many bytes they encode to.
enum Leaf {
    /// At most half of the non-null values are distinct: the distinct values plus an index a row.
    Repeating { bytes: usize },
    /// More than half are distinct: every value.
    Unique { bytes: usize },
    /// All null.
    Null,
}

/// Classifies the leaf columns of `array` (at Parquet path `path`).
fn classify_leaves(path: &mut Vec<String>, array: &dyn Array, out: &mut Vec<(ColumnPath, Leaf)>) {
    let present = array.len() - array.null_count();
    let leaf = match array.data_type() {
        DataType::List(item) => {
            // Arrow lists are written as `name.list.<item name>`.
            path.extend(["list".to_owned(), item.name().clone()]);
            classify_leaves(path, array.as_list::<i32>().values(), out);
            path.truncate(path.len() - 2);
            return;
        }
        DataType::Struct(fields) => {
            for (field, child) in fields.iter().zip(array.as_struct().columns()) {
                path.push(field.name().clone());
                classify_leaves(path, child, out);
                path.pop();
            }
            return;
        }
        _ if present == 0 => Leaf::Null,
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            let plain = strings.values().len() + 4 * present;
            shape(strings.iter().flatten(), present, plain, |s| s.len() + 4)
        }
        DataType::Int64 => shape(array.as_primitive::<Int64Type>().iter().flatten(), present, 8 * present, |_| 8),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            shape(array.as_primitive::<TimestampMicrosecondType>().iter().flatten(), present, 8 * present, |_| 8)
        }
        DataType::Float64 => {
            shape(array.as_primitive::<Float64Type>().iter().flatten().map(f64::to_bits), present, 8 * present, |_| 8)
        }
        // Booleans are never dictionary-encoded: a bit a value.
        _ => Leaf::Repeating { bytes: present.div_ceil(8) },
    };
    out.push((ColumnPath::new(path.clone()), leaf));
}

/// Whether at most half of `present` values are distinct (stopping as soon as the answer is no),
/// with the encoded size either way: `plain` for every value, or the distinct values' `size`s
/// plus a byte an index.
fn shape<T: Hash + Eq>(
    values: impl Iterator<Item = T>,
    present: usize,
    plain: usize,
    size: impl Fn(&T) -> usize,
) -> Leaf {
    let limit = present / 2;
    let mut seen: HashSet<T, foldhash::fast::FixedState> = HashSet::default();
    seen.reserve(limit.min(4096) + 1);
    let mut bytes = present;
    for v in values {
        let n = size(&v);
        if seen.insert(v) {
            if seen.len() > limit {
                return Leaf::Unique { bytes: plain };
            }
            bytes += n;
        }
    }
    Leaf::Repeating { bytes }
}

/// Writer options of a data file (see [`writer_properties`]): no `ARROW:schema` copy in the
/// footer (2.4 KB a file, most of a small file's footer). The Parquet types alone read back as
/// the lake schema's Arrow types (strings, `Int64`, `Boolean`, `Timestamp(µs, "UTC")`, the
/// `events` list of structs). A file whose rows are in order of `time` says so
/// ([`time_order`]).
pub fn writer_options(props: WriterProperties, parquet: SchemaDescriptor, sorted: bool) -> ArrowWriterOptions {
    let props = if sorted { props.into_builder().set_sorting_columns(time_order(&parquet)).build() } else { props };
    ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true).with_parquet_schema(parquet)
}

/// The `sorting_columns` of a row group whose rows are in order of `time` (ascending, the
/// order sluice writes rows in): what compaction streams merged files by, and what tells
/// DataFusion, Spark or Trino the order without reading the rows.
pub fn time_order(parquet: &SchemaDescriptor) -> Option<Vec<SortingColumn>> {
    let i = time_leaf(parquet)?;
    Some(vec![SortingColumn { column_idx: i32::try_from(i).ok()?, descending: false, nulls_first: false }])
}

fn time_leaf(parquet: &SchemaDescriptor) -> Option<usize> {
    (0..parquet.num_columns()).find(|&i| parquet.column(i).path().parts() == ["time"])
}

/// Whether the rows of the file of `meta` are in order of `time`: each row group says so
/// ([`time_order`]) and each starts no earlier than the one before it ends.
pub fn sorted_by_time(meta: &ParquetMetaData) -> bool {
    let Some(i) = time_leaf(meta.file_metadata().schema_descr()) else { return false };
    let mut end = i64::MIN;
    for rg in meta.row_groups() {
        let declared = rg
            .sorting_columns()
            .and_then(|c| c.first())
            .is_some_and(|c| usize::try_from(c.column_idx).is_ok_and(|c| c == i) && !c.descending);
        let Some(Statistics::Int64(stats)) = rg.column(i).statistics() else { return false };
        let (Some(&min), Some(&max)) = (stats.min_opt(), stats.max_opt()) else { return false };
        if !declared || stats.null_count_opt().is_none_or(|n| n > 0) || min < end {
            return false;
        }
        end = max;
    }
    true
}

/// The Parquet schema of `schema`, as [`ArrowWriter`] would convert it (converting it for every
/// file was 1.3% of the CPU of writing the benchmark's small files): converted once for the
/// last schema seen, which is the lake schema of a running server.
fn parquet_schema(schema: &SchemaRef) -> Result<SchemaDescriptor> {
    static LAST: Mutex<Option<(SchemaRef, SchemaDescriptor)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((seen, descriptor)) = &*last
        && Arc::ptr_eq(seen, schema)
    {
        return Ok(descriptor.clone());
    }
    let descriptor = ArrowSchemaConverter::new().convert(schema)?;
    *last = Some((Arc::clone(schema), descriptor.clone()));
    Ok(descriptor)
}

/// Encodes rows as one Parquet file in memory.
pub fn encode_parquet(registry: &Registry, schema: &SchemaRef, rows: &[PackedRow]) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(rows.len() * 128 + 4096);
    let mut chunks = rows.chunks(ROW_GROUP_ROWS);
    let first = rows_to_batch(registry, schema, chunks.next().unwrap_or_default())?;
    let sorted = rows.is_sorted_by_key(|r| r.row().time);
    let options = writer_options(writer_properties(&first, rows.len()), parquet_schema(schema)?, sorted);
    let mut w = ArrowWriter::try_new_with_options(&mut buf, schema.clone(), options)?;
    w.write(&first)?;
    for chunk in chunks {
        w.write(&rows_to_batch(registry, schema, chunk)?)?;
    }
    w.close()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use parquet::{
        basic::Encoding,
        file::reader::{FileReader, SerializedFileReader},
    };
    use sluice_schemas::{Context, Contract, record_id_at};

    use super::*;

    /// Column chunk (path, dictionary page?, compressed?) of a Parquet file.
    fn chunks(file: Vec<u8>) -> Vec<(String, bool, bool)> {
        let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
        let rg = reader.metadata().row_group(0).clone();
        rg.columns()
            .iter()
            .map(|c| {
                let dict = c.dictionary_page_offset().is_some() || c.encodings().any(|e| e == Encoding::RLE_DICTIONARY);
                (c.column_path().string(), dict, matches!(c.compression(), Compression::ZSTD(_)))
            })
            .collect()
    }

    /// 80 rows of one partition: unique times, record ids and (long) transaction ids; 40 distinct
    /// long descriptions; a few servers, methods and event descriptions; no callers or levels.
    fn sample_rows(contract: &Contract) -> Vec<PackedRow> {
        (0..80)
            .map(|i| {
                let line = format!(
                    r#"{{"organizationID":"o","environment":"prod","logType":"web","time":"2025-01-01T00:{:02}:{:02}Z","transactionId":"tx-{i:04}-5f3c2a9e-8b1d-4c6f-a2e7-3d9b0c1e4f58","server":"web-{}","method":"GET","description":"request {} took longer than expected on the slow path of the checkout service","events":[{{"action":"a","description":"step {} of the slow path","transactionId":"tx-{i:04}-5f3c2a9e-8b1d-4c6f-a2e7-3d9b0c1e4f58"}}]}}"#,
                    i / 60,
                    i % 60,
                    i % 3,
                    i % 40,
                    i % 4
                );
                let ctx = Context { record_id: record_id_at("test", i), arrival_micros: 1_735_700_000_000_000 };
                PackedRow::new(contract.parse_borrowed(line.as_bytes(), &ctx).expect("valid").row)
            })
            .collect()
    }

    #[test]
    fn dictionaries_only_for_repeating_columns_and_small_chunks_stay_uncompressed() {
        let contract = Contract::default();
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        let file = encode_parquet(&contract.registry, &schema, &sample_rows(&contract)).expect("encode");
        let chunks = chunks(file);
        let get = |p: &str| chunks.iter().find(|c| c.0 == p).unwrap_or_else(|| panic!("no column {p}: {chunks:?}"));
        // Over ZSTD_MIN_BYTES of distinct values.
        for unique in ["record_id", "time", "transaction_id", "events.list.item.transaction_id"] {
            assert_eq!(get(unique), &(unique.to_owned(), false, true), "{unique}");
        }
        // 40 distinct sentences over 80 rows: a dictionary of over ZSTD_MIN_DICTIONARY_BYTES,
        // worth compressing.
        assert_eq!(get("description"), &("description".to_owned(), true, true));
        // A few distinct values: a dictionary of under ZSTD_MIN_DICTIONARY_BYTES, left
        // uncompressed.
        for repeating in ["server", "method", "ingested_at", "events.list.item.action", "events.list.item.description"]
        {
            assert_eq!(get(repeating), &(repeating.to_owned(), true, false), "{repeating}");
        }
        for null in ["caller", "level", "events.list.item.time"] {
            assert_eq!(get(null), &(null.to_owned(), false, false), "{null}");
        }
    }

    #[test]
    fn small_files_have_no_offset_index_and_truncated_string_statistics() {
        let contract = Contract::default();
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        let rows = sample_rows(&contract);
        let file = encode_parquet(&contract.registry, &schema, &rows).expect("encode");
        let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
        let rg = reader.metadata().row_group(0).clone();
        for c in rg.columns() {
            assert_eq!((c.offset_index_offset(), c.column_index_offset()), (None, None), "{}", c.column_path());
        }
        let tx = rg.columns().iter().find(|c| c.column_path().string() == "transaction_id").expect("column");
        let stats = tx.statistics().expect("statistics");
        let (min, max) = (stats.min_bytes_opt().expect("min"), stats.max_bytes_opt().expect("max"));
        assert_eq!((min.len(), max.len()), (STATISTICS_TRUNCATE_BYTES, STATISTICS_TRUNCATE_BYTES));
        // The truncated minimum is a prefix of the smallest value; the maximum is rounded up.
        assert!(b"tx-0000-5f3c2a9e-8b1d-4c6f-a2e7-3d9b0c1e4f58".starts_with(min));
        assert!(max > &b"tx-0079-5f3c2a9e-8b1d-4c6f-a2e7-3d9b0c1e4f58"[..]);
        assert!(!stats.max_is_exact());
    }

    #[test]
    fn a_file_of_rows_in_time_order_says_so_and_one_out_of_order_does_not() {
        let contract = Contract::default();
        let schema = Arc::new(contract.registry.lake_arrow_schema());
        let meta = |rows: &[PackedRow]| {
            let file = encode_parquet(&contract.registry, &schema, rows).expect("encode");
            SerializedFileReader::new(bytes::Bytes::from(file)).expect("read").metadata().clone()
        };
        let mut rows = sample_rows(&contract);
        assert!(sorted_by_time(&meta(&rows)));
        rows.swap(3, 40);
        assert!(!sorted_by_time(&meta(&rows)), "rows out of order are not declared sorted");
    }
}
