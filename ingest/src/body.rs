//! Request bodies of `POST /v1/logs`: NDJSON, a JSON array or one object, optionally gzip.

use std::{io::Read, ops::Range};

/// Why a body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over the size limit (compressed, or decompressed while streaming).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
        /// Whether the limit is on the decompressed size.
        decompressed: bool,
    },
    /// The `Content-Encoding` is not supported.
    UnsupportedEncoding(String),
    /// gzip data is corrupt.
    BadGzip(String),
    /// A JSON array body is not valid JSON (its records cannot be told apart).
    BadArray(String),
    /// More records than a request may hold.
    TooManyRecords {
        /// The limit.
        limit: usize,
    },
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { limit, decompressed: false } => {
                write!(f, "the request body is over {limit} bytes; send smaller batches")
            }
            Self::TooLarge { limit, decompressed: true } => {
                write!(f, "the decompressed request body is over {limit} bytes; send smaller batches")
            }
            Self::UnsupportedEncoding(e) => write!(f, "Content-Encoding {e:?} is not supported; use gzip or none"),
            Self::BadGzip(e) => write!(f, "the gzip body is corrupt: {e}"),
            Self::TooManyRecords { limit } => write!(
                f,
                "the request holds more than {limit} records; send at most {limit} a request (`sluice publish \
                 --batch-records`, a shipper's bulk size)"
            ),
            Self::BadArray(e) => {
                write!(
                    f,
                    "the body starts with `[` but is not a valid JSON array ({e}); send NDJSON to have bad records rejected one by one"
                )
            }
        }
    }
}

/// Decompresses `body` according to `encoding`, never producing more than `limit` bytes.
pub fn decode(body: bytes::Bytes, encoding: Option<&str>, limit: u64) -> Result<bytes::Bytes, BodyError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "identity") => Ok(body),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::with_capacity(gzip_size_hint(&body).min(limit as usize + 1));
            let mut d = flate2::read::MultiGzDecoder::new(&body[..]).take(limit + 1);
            d.read_to_end(&mut out).map_err(|e| BodyError::BadGzip(e.to_string()))?;
            if out.len() as u64 > limit {
                return Err(BodyError::TooLarge { limit, decompressed: true });
            }
            Ok(out.into())
        }
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

/// The decompressed size of a gzip body, to allocate it once: the trailer's `ISIZE` (exact for
/// one member), or four times the body when `ISIZE` is less than the body (several members, the
/// last one small). No more than deflate's largest ratio makes possible, so a forged trailer
/// cannot reserve much.
fn gzip_size_hint(body: &[u8]) -> usize {
    let isize = body.last_chunk::<4>().map_or(0, |t| u32::from_le_bytes(*t) as usize);
    let hint = if isize >= body.len() { isize } else { body.len() * 4 };
    hint.min(body.len().saturating_mul(1032))
}

/// How a body holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One record a line (blank lines skipped).
    Ndjson,
    /// A JSON array, one record an element.
    Array,
    /// One JSON object: one record.
    Object,
}

/// How a body holds its records. A body starting with `[` is a JSON array (checked whole here,
/// without building anything, so that a broken array is refused before any of it is taken); a
/// body that is one JSON object is one record; anything else is NDJSON, where each line is
/// judged on its own. `ndjson` forces NDJSON (for `Content-Type: application/x-ndjson`).
pub fn shape(body: &[u8], ndjson: bool) -> Result<Shape, BodyError> {
    let Some(start) = body.iter().position(|b| !b.is_ascii_whitespace()) else { return Ok(Shape::Ndjson) };
    if ndjson {
        return Ok(Shape::Ndjson);
    }
    if body[start] == b'[' {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| BodyError::BadArray(e.to_string()))?;
        return Ok(Shape::Array);
    }
    if body[start] == b'{' && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Ok(Shape::Object);
    }
    Ok(Shape::Ndjson)
}

/// The records of a body of a known [`Shape`], one byte range at a time: a body of millions of
/// tiny records never holds a list of them. It keeps no borrow of the body, so the records can
/// be taken a chunk at a time on different threads.
#[derive(Debug, Clone)]
pub struct Records {
    shape: Shape,
    pos: usize,
    done: bool,
}

impl Records {
    /// The records of a body of shape `shape`, from its start.
    pub fn new(shape: Shape) -> Self {
        Self { shape, pos: 0, done: false }
    }

    /// The next record's range in `body` (the same body every time).
    pub fn next(&mut self, body: &[u8]) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        match self.shape {
            Shape::Ndjson => self.next_line(body),
            Shape::Object => {
                self.done = true;
                trimmed(body, 0, body.len())
            }
            Shape::Array => self.next_element(body),
        }
    }

    fn next_line(&mut self, body: &[u8]) -> Option<Range<usize>> {
        // memchr finds the newlines a vector at a time (a byte-at-a-time split was 2.6% of
        // `serve`'s CPU in an ingest profile).
        while self.pos <= body.len() {
            let start = self.pos;
            let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i);
            self.pos = end + 1;
            let line = &body[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(start..start + line.len());
            }
        }
        self.done = true;
        None
    }

    /// The next element of an array that [`shape`] found valid: the text up to the next comma
    /// or the closing bracket at depth one, outside strings, without the whitespace around it
    /// (what serde_json's `RawValue` of the element holds).
    fn next_element(&mut self, body: &[u8]) -> Option<Range<usize>> {
        if self.pos == 0 {
            self.pos = body.iter().position(|&b| b == b'[')? + 1;
        }
        let start = self.pos;
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut i = start;
        while i < body.len() {
            let b = body[i];
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' if depth > 0 => depth -= 1,
                    b',' if depth == 0 => {
                        self.pos = i + 1;
                        return trimmed(body, start, i);
                    }
                    b']' => {
                        self.done = true;
                        return trimmed(body, start, i);
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.done = true;
        None
    }
}

/// `start..end` without the whitespace at either end; `None` when nothing is left.
fn trimmed(body: &[u8], start: usize, end: usize) -> Option<Range<usize>> {
    let s = start + body[start..end].iter().position(|b| !b.is_ascii_whitespace())?;
    let e = start + body[start..end].iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(s..e)
}

/// The records of `body` (of shape `shape`), counted up to `limit + 1`: one pass, nothing kept.
pub fn count_records(body: &[u8], shape: Shape, limit: usize) -> usize {
    let mut records = Records::new(shape);
    std::iter::from_fn(|| records.next(body)).take(limit.saturating_add(1)).count()
}

/// Every record range of a body (tests and small bodies; the server takes them a chunk at a time).
pub fn split(body: &[u8], ndjson: bool) -> Result<Vec<Range<usize>>, BodyError> {
    let mut records = Records::new(shape(body, ndjson)?);
    Ok(std::iter::from_fn(|| records.next(body)).collect())
}

/// The fuzz target `body` (`fuzz/`, [`sluice_schemas::fuzz`]): the first byte chooses the
/// encoding (gzip when odd) and whether NDJSON is forced; the rest is the body. Decoding never
/// makes more than its limit; the records found lazily are those of a list, are in order and
/// inside the body; the records of an array are serde_json's elements.
pub fn fuzz(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let limit = 1 << 20;
    let encoding = (flags & 1 == 1).then_some("gzip");
    let Ok(body) = decode(bytes::Bytes::copy_from_slice(rest), encoding, limit) else { return };
    assert!(body.len() as u64 <= limit);
    let Ok(shape) = shape(&body, flags & 2 == 2) else { return };
    let ranges = split(&body, flags & 2 == 2).expect("the shape was read");
    assert!(ranges.windows(2).all(|w| w[0].end <= w[1].start), "records overlap or are out of order");
    assert!(ranges.iter().all(|r| r.start < r.end && r.end <= body.len()), "a record outside the body");
    assert_eq!(count_records(&body, shape, 10), ranges.len().min(11));
    if shape == Shape::Array {
        // serde_json checks the UTF-8 inside strings, which the split leaves to each record's own
        // verdict (one element's bad bytes reject that element, not the request): compare on a
        // copy of the same length with every byte past ASCII made ASCII.
        let ascii: Vec<u8> = body.iter().map(|&b| if b.is_ascii() { b } else { b'x' }).collect();
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&ascii).expect("a valid array");
        let ours: Vec<&[u8]> = ranges.iter().map(|r| &ascii[r.clone()]).collect();
        let theirs: Vec<&[u8]> = items.iter().map(|r| r.get().as_bytes()).collect();
        assert_eq!(ours, theirs, "the elements of an array");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_fuzz_inputs_of_the_body_decoder() {
        let inputs = sluice_schemas::fuzz::committed_inputs("body");
        assert!(inputs.len() >= 5, "the corpus of fuzz/corpus/body is missing");
        for (path, bytes) in inputs {
            assert!(
                std::panic::catch_unwind(|| super::fuzz(&bytes)).is_ok(),
                "{} breaks the body decoder",
                path.display()
            );
        }
    }

    use super::*;

    fn parts(body: &str) -> Vec<&str> {
        split(body.as_bytes(), false).unwrap().into_iter().map(|r| &body[r]).collect()
    }

    #[test]
    fn shapes() {
        assert_eq!(parts("{\"a\":1}\n\n{\"b\":2}\r\nnot json\n"), ["{\"a\":1}", "{\"b\":2}", "not json"]);
        assert_eq!(parts(" [ {\"a\":1}, 2 ,\"x\"] "), ["{\"a\":1}", "2", "\"x\""]);
        assert_eq!(parts("{\n  \"a\": 1\n}\n"), ["{\n  \"a\": 1\n}"]);
        assert!(parts("  \n").is_empty());
        assert!(matches!(split(b"[1, 2", false), Err(BodyError::BadArray(_))));
    }

    #[test]
    fn gzip_is_capped_while_streaming() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b'a'; 10_000_000]).unwrap();
        let gz = bytes::Bytes::from(e.finish().unwrap());
        assert!(gz.len() < 20_000);
        assert_eq!(
            decode(gz.clone(), Some("gzip"), 1_000_000),
            Err(BodyError::TooLarge { limit: 1_000_000, decompressed: true })
        );
        assert_eq!(decode(gz, Some("gzip"), 10_000_000).unwrap().len(), 10_000_000);
        assert!(matches!(
            decode(bytes::Bytes::from_static(b"xx"), Some("br"), 10),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn gzip_size_hint_is_the_trailer_within_deflate_ratios() {
        use std::io::Write;
        let raw: Vec<u8> = (0..300_000u32).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).collect();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&raw).unwrap();
        let mut gz = e.finish().unwrap();
        assert_eq!(gzip_size_hint(&gz), raw.len());
        let n = gz.len();
        gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(gzip_size_hint(&gz), n * 1032, "a forged trailer reserves no more than deflate can produce");
        assert_eq!(gzip_size_hint(b"xy"), 8);
    }

    /// The lazy splitter finds exactly the elements serde_json finds in any valid array.
    fn by_serde(text: &str) -> Vec<&str> {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
        items.iter().map(|r| r.get()).collect()
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ \\[\\]{},:\"\\\\a-z\u{e9}\n]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z,\\]\"]{0,3}", inner, 0..3)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn array_elements_are_serde_jsons(
            items in proptest::collection::vec(json_value(), 0..6),
            pretty in proptest::prelude::any::<bool>(),
        ) {
            let text = if pretty { serde_json::to_string_pretty(&items) } else { serde_json::to_string(&items) }.unwrap();
            let text = format!(" \n{text}\t ");
            let ours: Vec<&str> = split(text.as_bytes(), false).unwrap().into_iter().map(|r| &text[r]).collect();
            proptest::prop_assert_eq!(ours, by_serde(&text));
        }
    }

    #[test]
    fn records_are_taken_a_chunk_at_a_time_without_a_list() {
        let body = b"x\n\ny\r\n  \nz\n".repeat(3);
        let mut r = Records::new(shape(&body, false).unwrap());
        let first: Vec<_> = (0..4).map_while(|_| r.next(&body)).collect();
        let rest: Vec<_> = std::iter::from_fn(|| r.next(&body)).collect();
        assert_eq!((first.len(), rest.len()), (4, 5));
        assert_eq!(&body[rest[4].clone()], b"z");
        assert_eq!(&body[first[1].clone()], b"y", "a line's \\r is not part of its record");
    }
}
