//! Normalized rows → Arrow record batches → zstd Parquet, with the lake schema from `schemas/`.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
        TimestampMicrosecondBuilder,
    },
};
use arrow_schema::{DataType, Fields, SchemaRef};
use parquet::{
    arrow::{ArrowWriter, arrow_writer::ArrowWriterOptions},
    basic::{Compression, ZstdLevel},
    file::properties::{EnabledStatistics, WriterProperties},
};
use sluice_schemas::{ExtraType, ExtraValue, Registry, Row, UTC};

use crate::error::Result;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

fn ts() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone(UTC)
}

fn strings<'a>(rows: &'a [&Row], f: impl Fn(&'a Row) -> Option<&'a str>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
    for r in rows {
        b.append_option(f(r));
    }
    Arc::new(b.finish())
}

fn events_array(rows: &[&Row], event_fields: &Fields) -> ArrayRef {
    let mut list = ListBuilder::new(StructBuilder::from_fields(event_fields.clone(), rows.len()))
        .with_field(Arc::new(arrow_schema::Field::new("item", DataType::Struct(event_fields.clone()), true)));
    for r in rows {
        let Some(events) = &r.events else {
            list.append_null();
            continue;
        };
        let sb = list.values();
        for e in events {
            let strs = [&e.action, &e.description, &e.detail, &e.caller, &e.server];
            for (i, v) in strs.iter().enumerate() {
                sb.field_builder::<StringBuilder>(i).expect("string field").append_option(v.as_deref());
            }
            sb.field_builder::<BooleanBuilder>(5).expect("success").append_option(e.success);
            sb.field_builder::<TimestampMicrosecondBuilder>(6).expect("time").append_option(e.time);
            for (i, v) in [(7, &e.transaction_id), (8, &e.r#type), (9, &e.attributes)] {
                sb.field_builder::<StringBuilder>(i).expect("string field").append_option(v.as_deref());
            }
            sb.append(true);
        }
        list.append(true);
    }
    Arc::new(list.finish())
}

/// Builds a record batch of the lake schema from rows.
pub fn rows_to_batch(registry: &Registry, schema: &SchemaRef, rows: &[&Row]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    cols.push(strings(rows, |r| Some(r.record_id.as_str())));
    let mut time = ts();
    for r in rows {
        time.append_value(r.time);
    }
    cols.push(Arc::new(time.finish()));
    cols.push(strings(rows, |r| r.transaction_id.as_deref()));
    cols.push(strings(rows, |r| r.server.as_deref()));
    cols.push(strings(rows, |r| r.action.as_deref()));
    cols.push(strings(rows, |r| r.r#type.as_deref()));
    cols.push(strings(rows, |r| r.description.as_deref()));
    cols.push(strings(rows, |r| r.caller.as_deref()));
    let mut success = BooleanBuilder::with_capacity(n);
    for r in rows {
        success.append_option(r.success);
    }
    cols.push(Arc::new(success.finish()));
    cols.push(strings(rows, |r| r.detail.as_deref()));
    let DataType::List(item) = schema.field(10).data_type() else { unreachable!("events is a list") };
    let DataType::Struct(event_fields) = item.data_type() else { unreachable!("events items are structs") };
    cols.push(events_array(rows, event_fields));
    cols.push(strings(rows, |r| r.attributes.as_deref()));
    let mut ingested = ts();
    for r in rows {
        ingested.append_value(r.ingested_at);
    }
    cols.push(Arc::new(ingested.finish()));
    for (idx, extra) in registry.extras().iter().enumerate() {
        let value = |r: &&Row| r.extras.iter().find(|(i, _)| *i == idx).map(|(_, v)| v.clone());
        let array: ArrayRef = match extra.ty {
            ExtraType::String | ExtraType::Json => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                for r in rows {
                    match value(r) {
                        Some(ExtraValue::String(s) | ExtraValue::Json(s)) => b.append_value(s),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            ExtraType::Bigint => {
                let mut b = Int64Builder::with_capacity(n);
                for r in rows {
                    b.append_option(match value(r) {
                        Some(ExtraValue::Bigint(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ExtraType::Double => {
                let mut b = Float64Builder::with_capacity(n);
                for r in rows {
                    b.append_option(match value(r) {
                        Some(ExtraValue::Double(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ExtraType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for r in rows {
                    b.append_option(match value(r) {
                        Some(ExtraValue::Boolean(v)) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ExtraType::Timestamp => {
                let mut b = ts();
                for r in rows {
                    b.append_option(match value(r) {
                        Some(ExtraValue::Timestamp(v)) => Some(v),
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

/// Files of fewer rows get statistics per column chunk only: each of their columns is a single
/// page, so a page index would repeat the chunk's statistics (and cost about 70 bytes a column).
pub const PAGE_INDEX_MIN_ROWS: usize = 20_000;

/// Writer settings of a data file of `rows` rows: zstd, statistics per page (per column chunk
/// below [`PAGE_INDEX_MIN_ROWS`]), row groups of [`ROW_GROUP_ROWS`].
pub fn writer_properties(rows: usize) -> WriterProperties {
    let stats = if rows < PAGE_INDEX_MIN_ROWS { EnabledStatistics::Chunk } else { EnabledStatistics::Page };
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_statistics_enabled(stats)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writer options of a data file: no `ARROW:schema` copy in the footer (2.4 KB a file, most of a
/// small file's footer). The Parquet types alone read back as the lake schema's Arrow types
/// (strings, `Int64`, `Boolean`, `Timestamp(µs, "UTC")`, the `events` list of structs).
pub fn writer_options(rows: usize) -> ArrowWriterOptions {
    ArrowWriterOptions::new().with_properties(writer_properties(rows)).with_skip_arrow_metadata(true)
}

/// Encodes rows as one Parquet file in memory.
pub fn encode_parquet(registry: &Registry, schema: &SchemaRef, rows: &[&Row]) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(rows.len() * 128 + 4096);
    let mut w = ArrowWriter::try_new_with_options(&mut buf, schema.clone(), writer_options(rows.len()))?;
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        w.write(&rows_to_batch(registry, schema, chunk)?)?;
    }
    w.close()?;
    Ok(buf)
}
