//! Request bodies of `POST /v1/logs`: NDJSON, a JSON array or one object, optionally gzip.

use std::{io::Read, ops::Range};

use serde_json::value::RawValue;

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

/// Splits a body into records. A body starting with `[` is a JSON array; a body that is one JSON
/// object is one record; anything else is NDJSON (one record per non-blank line), where each
/// line is judged on its own. `ndjson` forces NDJSON (for `Content-Type: application/x-ndjson`).
pub fn split(body: &[u8], ndjson: bool) -> Result<Vec<Range<usize>>, BodyError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    if start == body.len() {
        return Ok(Vec::new());
    }
    if !ndjson && body[start] == b'[' {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| BodyError::BadArray(e.to_string()))?;
        let base = body.as_ptr() as usize;
        return Ok(items
            .iter()
            .map(|r| {
                let s = r.get().as_ptr() as usize - base;
                s..s + r.get().len()
            })
            .collect());
    }
    if !ndjson && body[start] == b'{' && serde_json::from_slice::<&RawValue>(body).is_ok() {
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(body.len(), |e| e + 1);
        #[allow(clippy::single_range_in_vec_init, reason = "a list of one record's byte range")]
        return Ok(vec![start..end]);
    }
    let mut out = Vec::new();
    let mut pos = 0;
    // memchr finds the newlines a vector at a time (a byte-at-a-time split was 2.6% of `serve`'s
    // CPU in an ingest profile).
    for end in memchr::memchr_iter(b'\n', body).chain([body.len()]) {
        let line = &body[pos..end];
        let start = pos;
        pos = end + 1;
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(start..start + trimmed.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
}
