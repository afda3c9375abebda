//! Rendering results: RFC 4180 CSV (with spreadsheet formula-injection protection), TSV, JSON,
//! NDJSON and a table, streaming batch by batch.
//!
//! Cell values: timestamps as ISO 8601 UTC (`2025-01-01T12:00:00.123456Z`), nested values (lists,
//! structs) as JSON text, nulls as empty cells (CSV) or `null` (JSON).

use std::io::{self, Write};

use datafusion::arrow::{
    array::{
        Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
        Int64Array, LargeStringArray, StringArray, StringViewArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
    },
    datatypes::{DataType, TimeUnit},
    record_batch::RecordBatch,
    util::display::{ArrayFormatter, FormatOptions},
};
use serde_json::{Map, Value};

/// Whether a cell could start a spreadsheet formula: its first character that is not blank
/// (spreadsheets skip spaces, tabs and line breaks before a formula) is `=`, `+`, `-`, `@` or
/// one of their fullwidth forms (`＝`, `＋`, `－`, `＠`, which some spreadsheets read as the
/// same), or it starts with a tab or a carriage return (OWASP's list).
fn risky(s: &str) -> bool {
    if s.starts_with(['\t', '\r']) {
        return true;
    }
    s.trim_start_matches(|c: char| c.is_whitespace() || c.is_control())
        .starts_with(['=', '+', '-', '@', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}'])
}

fn time_text(v: i64, unit: TimeUnit, utc: bool) -> String {
    let micros = match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1000,
    };
    let t = sluice_schemas::format_time(micros);
    if utc { t } else { t.trim_end_matches('Z').to_owned() }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..))
}

/// One cell as a JSON value.
pub fn json_value(a: &dyn Array, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    macro_rules! prim {
        ($t:ty) => {
            if let Some(x) = a.as_any().downcast_ref::<$t>() {
                return Value::from(x.value(i));
            }
        };
    }
    prim!(Int64Array);
    prim!(Int32Array);
    prim!(Int16Array);
    prim!(Int8Array);
    prim!(UInt64Array);
    prim!(UInt32Array);
    prim!(UInt16Array);
    prim!(UInt8Array);
    prim!(BooleanArray);
    if let Some(x) = a.as_any().downcast_ref::<Float64Array>() {
        return serde_json::Number::from_f64(x.value(i)).map_or(Value::Null, Value::Number);
    }
    if let Some(x) = a.as_any().downcast_ref::<Float32Array>() {
        return serde_json::Number::from_f64(f64::from(x.value(i))).map_or(Value::Null, Value::Number);
    }
    if let Some(x) = a.as_any().downcast_ref::<StringArray>() {
        return Value::String(x.value(i).to_owned());
    }
    if let Some(x) = a.as_any().downcast_ref::<LargeStringArray>() {
        return Value::String(x.value(i).to_owned());
    }
    if let Some(x) = a.as_any().downcast_ref::<StringViewArray>() {
        return Value::String(x.value(i).to_owned());
    }
    match a.data_type() {
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<datafusion::arrow::datatypes::TimestampSecondType>().value(i),
                TimeUnit::Millisecond => {
                    a.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().value(i)
                }
                TimeUnit::Microsecond => {
                    a.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>().value(i)
                }
                TimeUnit::Nanosecond => {
                    a.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>().value(i)
                }
            };
            Value::String(time_text(v, *unit, tz.is_some()))
        }
        DataType::List(_) => list_json(&a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => list_json(&a.as_list::<i64>().value(i)),
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut m = Map::new();
            for (f, c) in fields.iter().zip(s.columns()) {
                m.insert(f.name().clone(), json_value(c.as_ref(), i));
            }
            Value::Object(m)
        }
        _ => {
            let opts = FormatOptions::default();
            match ArrayFormatter::try_new(a, &opts) {
                Ok(f) => Value::String(f.value(i).to_string()),
                Err(_) => Value::Null,
            }
        }
    }
}

fn list_json(items: &ArrayRef) -> Value {
    Value::Array((0..items.len()).map(|j| json_value(items.as_ref(), j)).collect())
}

/// One cell as text: strings as they are, timestamps ISO 8601, nested values as JSON, null as empty.
pub fn text_value(a: &dyn Array, i: usize) -> Option<String> {
    if a.is_null(i) {
        return None;
    }
    Some(match json_value(a, i) {
        Value::String(s) => s,
        Value::Null => String::new(),
        v @ (Value::Array(_) | Value::Object(_)) => v.to_string(),
        v => v.to_string(),
    })
}

/// Writes CSV (RFC 4180: `,`, CRLF, fields quoted when needed, quotes doubled) or TSV.
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    out: W,
    delimiter: u8,
    protect_formulas: bool,
    header_written: bool,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl<W: Write> CsvWriter<W> {
    /// A CSV writer; `protect_formulas` prefixes text cells that start with `=`, `+`, `-`, `@`, tab
    /// or carriage return with `'`, so spreadsheets do not run them.
    pub fn csv(out: W, protect_formulas: bool) -> Self {
        Self { out, delimiter: b',', protect_formulas, header_written: false, rows: 0, bytes: 0 }
    }

    /// A TSV writer (same quoting, tab-separated).
    pub fn tsv(out: W) -> Self {
        Self { out, delimiter: b'\t', protect_formulas: false, header_written: false, rows: 0, bytes: 0 }
    }

    fn field(&mut self, s: &str, text: bool) -> io::Result<()> {
        let protect = self.protect_formulas && text && risky(s);
        let d = self.delimiter;
        let quote = protect
            || s.bytes().any(|b| b == d || b == b'"' || b == b'\n' || b == b'\r')
            || s.starts_with(' ')
            || s.ends_with(' ');
        if !quote {
            self.bytes += s.len() as u64;
            return self.out.write_all(s.as_bytes());
        }
        let mut buf = Vec::with_capacity(s.len() + 4);
        buf.push(b'"');
        if protect {
            buf.push(b'\'');
        }
        for b in s.bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
        self.bytes += buf.len() as u64;
        self.out.write_all(&buf)
    }

    /// A cell of a column known to hold numbers or booleans: never quoted.
    fn plain(&mut self, v: impl std::fmt::Display) -> io::Result<()> {
        let mut buf = [0u8; 40];
        let mut cursor = io::Cursor::new(&mut buf[..]);
        write!(cursor, "{v}")?;
        let n = cursor.position() as usize;
        self.bytes += n as u64;
        self.out.write_all(&buf[..n])
    }

    /// Writes cell `i` of `c`: strings and numbers straight from the array, everything else
    /// through [`text_value`].
    fn cell(&mut self, c: &dyn Array, i: usize, text: bool) -> io::Result<()> {
        if c.is_null(i) {
            return Ok(());
        }
        let any = c.as_any();
        if let Some(a) = any.downcast_ref::<StringArray>() {
            return self.field(a.value(i), text);
        }
        if let Some(a) = any.downcast_ref::<StringViewArray>() {
            return self.field(a.value(i), text);
        }
        if let Some(a) = any.downcast_ref::<Int64Array>() {
            return self.plain(a.value(i));
        }
        if let Some(a) = any.downcast_ref::<BooleanArray>() {
            return self.plain(a.value(i));
        }
        match text_value(c, i) {
            Some(v) => self.field(&v, text),
            None => Ok(()),
        }
    }

    fn end_row(&mut self) -> io::Result<()> {
        self.bytes += 2;
        self.out.write_all(b"\r\n")
    }

    fn sep(&mut self) -> io::Result<()> {
        self.bytes += 1;
        self.out.write_all(&[self.delimiter])
    }

    /// Writes the header row (once) and the rows of `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> io::Result<()> {
        if !self.header_written {
            self.write_header(batch.schema().fields().iter().map(|f| f.name().as_str()))?;
        }
        let cols = batch.columns();
        let text: Vec<bool> = cols.iter().map(|c| is_text(c.data_type()) || c.data_type().is_nested()).collect();
        for i in 0..batch.num_rows() {
            for (j, c) in cols.iter().enumerate() {
                if j > 0 {
                    self.sep()?;
                }
                self.cell(c.as_ref(), i, text[j])?;
            }
            self.end_row()?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Writes the header row.
    pub fn write_header<'a>(&mut self, names: impl Iterator<Item = &'a str>) -> io::Result<()> {
        for (j, n) in names.enumerate() {
            if j > 0 {
                self.sep()?;
            }
            self.field(n, true)?;
        }
        self.header_written = true;
        self.end_row()
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Rows of a batch as JSON objects.
pub fn batch_objects(batch: &RecordBatch) -> Vec<Value> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|i| {
            let mut m = Map::new();
            for (f, c) in schema.fields().iter().zip(batch.columns()) {
                m.insert(f.name().clone(), json_value(c.as_ref(), i));
            }
            Value::Object(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::{
        array::{Int64Array, StringArray},
        datatypes::{Field, Schema},
    };

    use super::*;

    #[test]
    fn rfc4180_and_formula_protection() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("plain"),
                    Some("a,b"),
                    Some("say \"hi\""),
                    Some("=SUM(A1)"),
                    Some("@x"),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![Some(1), Some(-2), None, Some(3), Some(4), Some(5)])),
            ],
        )
        .unwrap();
        let mut w = CsvWriter::csv(Vec::new(), true);
        w.write(&b).unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            out,
            "s,n\r\nplain,1\r\n\"a,b\",-2\r\n\"say \"\"hi\"\"\",\r\n\"'=SUM(A1)\",3\r\n\"'@x\",4\r\n,5\r\n"
        );
        let mut w = CsvWriter::csv(Vec::new(), false);
        w.write(&b).unwrap();
        assert!(String::from_utf8(w.finish().unwrap()).unwrap().contains("\r\n=SUM(A1),3\r\n"));
    }

    /// Cells that spreadsheets still run as formulas after blanks, or in fullwidth characters
    /// (the ones issue 31 found passing), are protected; ordinary text is not.
    #[test]
    fn formulas_behind_blanks_and_in_fullwidth_are_protected() {
        for cell in
            [" =1+1", "\n=1+1", "\u{a0}@SUM(A1)", "\u{ff1d}1+1", "\u{ff0b}1", "\u{ff0d}1", "\u{ff20}x", "\r\n-2"]
        {
            assert!(risky(cell), "{cell:?}");
        }
        for cell in ["plain", "a=b", "1-2", " x", ""] {
            assert!(!risky(cell), "{cell:?}");
        }
        let mut w = CsvWriter::csv(Vec::new(), true);
        w.field(" =1+1", true).unwrap();
        assert_eq!(String::from_utf8(w.out).unwrap(), "\"' =1+1\"");
    }
}
