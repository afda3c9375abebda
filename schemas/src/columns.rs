//! The lake's columns, defined once and rendered as an Arrow schema, a Glue/Hive column list
//! and documentation. Every name is lowercase snake_case, so the Glue table and the Parquet
//! files describe the same thing.

use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, Field, Fields, Schema, TimeUnit};
use serde::Serialize;

/// The time zone of every timestamp column.
pub const UTC: &str = "UTC";

/// A column type in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Bigint,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// Timestamp with microsecond precision, UTC.
    Timestamp,
    /// JSON text (stored as a string; query with JSON functions).
    Json,
    /// A list of values.
    List(Box<ColumnType>),
    /// A struct of named fields.
    Struct(Vec<Column>),
}

impl ColumnType {
    /// The Arrow type of this column.
    pub fn arrow(&self) -> ArrowType {
        match self {
            Self::String | Self::Json => ArrowType::Utf8,
            Self::Bigint => ArrowType::Int64,
            Self::Double => ArrowType::Float64,
            Self::Boolean => ArrowType::Boolean,
            Self::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            Self::List(item) => ArrowType::List(Arc::new(Field::new("item", item.arrow(), true))),
            Self::Struct(cols) => ArrowType::Struct(arrow_fields(cols)),
        }
    }

    /// The Hive/Glue type string of this column (`string`, `array<struct<…>>`, …).
    pub fn hive(&self) -> String {
        match self {
            Self::String | Self::Json => "string".into(),
            Self::Bigint => "bigint".into(),
            Self::Double => "double".into(),
            Self::Boolean => "boolean".into(),
            Self::Timestamp => "timestamp".into(),
            Self::List(item) => format!("array<{}>", item.hive()),
            Self::Struct(cols) => {
                let fields: Vec<String> = cols.iter().map(|c| format!("{}:{}", c.name, c.ty.hive())).collect();
                format!("struct<{}>", fields.join(","))
            }
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Lowercase snake_case name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it may be null. Only `record_id`, `time` and `ingested_at` may not.
    pub nullable: bool,
    /// What it holds.
    pub description: String,
}

impl Column {
    pub(crate) fn new(name: &str, ty: ColumnType, nullable: bool, description: &str) -> Self {
        Self { name: name.into(), ty, nullable, description: description.into() }
    }

    /// The Arrow field of this column.
    pub fn arrow(&self) -> Field {
        Field::new(&self.name, self.ty.arrow(), self.nullable)
    }
}

/// Arrow fields for a list of columns.
pub fn arrow_fields(cols: &[Column]) -> Fields {
    cols.iter().map(Column::arrow).collect()
}

/// The Arrow schema for a list of columns.
pub fn arrow_schema(cols: &[Column]) -> Schema {
    Schema::new(arrow_fields(cols))
}

/// A Glue column (the shape of Glue's `StorageDescriptor.Columns` and `PartitionKeys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlueColumn {
    /// Column name.
    pub name: String,
    /// Hive type string.
    #[serde(rename = "Type")]
    pub ty: String,
    /// Description.
    pub comment: String,
}

/// Glue columns for a list of columns.
pub fn glue_columns(cols: &[Column]) -> Vec<GlueColumn> {
    cols.iter().map(|c| GlueColumn { name: c.name.clone(), ty: c.ty.hive(), comment: c.description.clone() }).collect()
}

/// The columns of one element of `events`: the server-side timeline of one request.
pub fn event_columns() -> Vec<Column> {
    use ColumnType::*;
    vec![
        Column::new("action", String, true, "What happened (`received request`)."),
        Column::new("description", String, true, "The log message."),
        Column::new("detail", Json, true, "Supplementary details, JSON text."),
        Column::new("caller", String, true, "Where it was logged from (file:line:column)."),
        Column::new("server", String, true, "Server that logged the event."),
        Column::new("success", Boolean, true, "Whether the step succeeded."),
        Column::new("time", Timestamp, true, "When the event happened, UTC."),
        Column::new("transaction_id", String, true, "Id tracing one request across servers."),
        Column::new("type", String, true, "The event type (`request`)."),
        Column::new("attributes", Json, true, "Any other fields of the event, a JSON object as text."),
    ]
}

/// The data columns every log type has, in file order. Typed extras of log types follow them.
pub fn common_columns() -> Vec<Column> {
    use ColumnType::*;
    vec![
        Column::new("record_id", String, false, "Unique id of the record; equal ids are duplicates of one delivery."),
        Column::new("time", Timestamp, false, "When the record happened, UTC."),
        Column::new("transaction_id", String, true, "Id tracing one request across servers."),
        Column::new("server", String, true, "Server that logged the record."),
        Column::new("action", String, true, "What happened."),
        Column::new("type", String, true, "The record type."),
        Column::new("description", String, true, "The log message."),
        Column::new("caller", String, true, "Where it was logged from."),
        Column::new("success", Boolean, true, "Whether the request succeeded."),
        Column::new("detail", Json, true, "Supplementary details, JSON text."),
        Column::new("events", List(Box::new(Struct(event_columns()))), true, "Timeline of the request across servers."),
        Column::new("attributes", Json, true, "Every field the contract does not name, a JSON object as text."),
        Column::new("ingested_at", Timestamp, false, "When the pipeline received the record, UTC."),
    ]
}

/// The seven partition columns as SQL sees them: three strings, four integers.
pub fn partition_columns() -> Vec<Column> {
    use ColumnType::*;
    vec![
        Column::new("environment", String, false, "Environment (dev, hot, xat, prod, …)."),
        Column::new("organization", String, false, "Organization id."),
        Column::new("logtype", String, false, "Log type."),
        Column::new("year", Bigint, false, "UTC year of the record's hour."),
        Column::new("month", Bigint, false, "Month of the record's hour."),
        Column::new("day", Bigint, false, "Day of the record's hour."),
        Column::new("hour", Bigint, false, "Hour of the record (0–23)."),
    ]
}
