//! Small JSON helpers for the record parser: borrowed keys and strings, verbatim-preserving
//! minification, and the top-level field list.

use std::{borrow::Cow, fmt};

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON string that borrows from the input when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of one JSON object, in input order, values unparsed.
#[derive(Debug)]
pub(crate) struct Fields<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Fields(d.deserialize_map(FieldsVisitor { events_apart: false })?.fields))
    }
}

/// Reads an object's fields; with `events_apart`, a field `events` is read into its shape
/// instead of kept raw.
struct FieldsVisitor {
    events_apart: bool,
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = RecordFields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = RecordFields { fields: Vec::with_capacity(map.size_hint().unwrap_or(16)), events: None };
        while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
            if self.events_apart && k == "events" {
                out.events = Some(map.next_value()?);
            } else {
                out.fields.push((k, map.next_value()?));
            }
        }
        Ok(out)
    }
}

/// The fields of a record object, in input order, values unparsed, except `events`, which is
/// read in the same pass into its elements (it is most of a record's bytes; reading it as a raw
/// value and then again as an array would read it twice).
#[derive(Debug)]
pub(crate) struct RecordFields<'a> {
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The last `events` field.
    pub events: Option<Shape<'a>>,
}

impl<'de> Deserialize<'de> for RecordFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor { events_apart: true })
    }
}

/// A JSON value read only as deep as the record parser needs, in the same pass as its parent:
/// an object's fields (values raw), an array's elements, null, or any other value.
#[derive(Debug)]
pub(crate) enum Shape<'a> {
    Object(Vec<(Cow<'a, str>, &'a RawValue)>),
    Array(Vec<Shape<'a>>),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Shape<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(Shape::Object(FieldsVisitor { events_apart: false }.visit_map(map)?.fields))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Shape::Array(items))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Shape::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Shape::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Shape::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// What a raw JSON value is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

pub(crate) fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// The string a raw JSON string holds. A string without escapes is borrowed as is: the parser
/// that produced `raw` has already checked it (UTF-8, no control characters).
pub(crate) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        // Inside a parsed string a quote or a control character only appears escaped, so the
        // contents need unescaping exactly when they hold a backslash.
        let content = &text[1..text.len() - 1];
        if !any_byte(content.as_bytes(), |b| b == b'\\') {
            return Some(Cow::Borrowed(content));
        }
    }
    serde_json::from_str::<Str<'_>>(text).ok().map(|s| s.0)
}

/// The index just past the closing quote of the JSON string whose contents start at `from`
/// (`text.len()` when it is not closed). Jumps from one quote or backslash to the next.
fn string_end(text: &[u8], mut from: usize) -> usize {
    while from < text.len() {
        match memchr::memchr2(b'"', b'\\', &text[from..]) {
            None => break,
            Some(p) if text[from + p] == b'"' => return from + p + 1,
            Some(p) => from += p + 2,
        }
    }
    text.len()
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Removes insignificant whitespace from JSON text, keeping everything else byte for byte
/// (number spelling, escapes, key order).
pub(crate) fn minify(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && !is_space(bytes[i]) {
        i = if bytes[i] == b'"' { string_end(bytes, i + 1) } else { i + 1 };
    }
    if i >= bytes.len() {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..i]);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i + 1);
                out.extend_from_slice(&bytes[i..end]);
                i = end;
            }
            b if is_space(b) => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8(out).expect("only ASCII whitespace was removed from UTF-8"))
}

/// Whether the JSON text nests arrays and objects deeper than `limit` (strings are skipped).
pub(crate) fn deeper_than(text: &[u8], limit: usize) -> bool {
    // Nesting never exceeds the number of `[` and `{` bytes: count them first (a vectorized
    // search); a record rarely has more than the limit, in strings or not.
    if memchr::memchr2_iter(b'[', b'{', text).nth(limit).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = string_end(text, i + 1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Whether a JSON string literal of `bytes` needs escapes (a quote, a backslash or a control
/// character).
fn needs_escape(bytes: &[u8]) -> bool {
    any_byte(bytes, |b| (b < 0x20) | (b == b'"') | (b == b'\\'))
}

/// Whether any byte of `bytes` matches `pred`. Whole windows of 16, 8 or 4 bytes are tested
/// without a branch inside, which the compiler turns into vector compares; the last window
/// overlaps the one before instead of falling back to a byte loop (most strings of a record are
/// 5 to 100 bytes).
#[inline(always)]
fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    fn window<const N: usize>(w: &[u8], pred: &impl Fn(u8) -> bool) -> bool {
        let w: &[u8; N] = w.try_into().expect("a window of N bytes");
        w.iter().fold(false, |found, &b| found | pred(b))
    }
    let n = bytes.len();
    if n >= 16 {
        let mut chunks = bytes.chunks_exact(16);
        if chunks.by_ref().any(|c| window::<16>(c, &pred)) {
            return true;
        }
        return !chunks.remainder().is_empty() && window::<16>(&bytes[n - 16..], &pred);
    }
    if n >= 8 {
        return window::<8>(&bytes[..8], &pred) || window::<8>(&bytes[n - 8..], &pred);
    }
    if n >= 4 {
        return window::<4>(&bytes[..4], &pred) || window::<4>(&bytes[n - 4..], &pred);
    }
    bytes.iter().any(|&b| pred(b))
}

/// Appends `s` to `out` as a JSON string literal (escaped as `serde_json` escapes it).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_strings_and_numbers() {
        assert_eq!(minify("{\"a\" : [1.50, 2e3],\n \"b\": \"x  y\\\" z\"}"), "{\"a\":[1.50,2e3],\"b\":\"x  y\\\" z\"}");
        assert!(matches!(minify("{\"a\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn minify_skips_strings_with_escapes_and_spaces() {
        let text = "{ \"a \\\" b\" : [ \"\\\\\" , 1 ] ,\t\"c\":\"d e\" }";
        assert_eq!(minify(text), "{\"a \\\" b\":[\"\\\\\",1],\"c\":\"d e\"}");
        assert_eq!(minify("\"unterminated  "), "\"unterminated  ");
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in ["plain", "", "quote \" back \\ slash", "tab\t nl\n \u{1} \u{7f} 取引 🌧", &"x".repeat(100)] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(String::from_utf8(out).expect("utf-8"), serde_json::to_string(s).expect("json"), "{s:?}");
        }
    }

    #[test]
    fn a_string_is_borrowed_exactly_when_it_has_no_escape() {
        for len in 1..40 {
            for at in 0..len {
                let mut plain = "a".repeat(len);
                plain.replace_range(at..=at, "\"");
                let raw = serde_json::to_string(&plain).expect("json");
                let raw: &RawValue = serde_json::from_str(&raw).expect("raw");
                let s = string(raw).expect("a string");
                assert_eq!(s, plain, "{len} {at}");
                assert!(matches!(s, Cow::Owned(_)), "{len} {at}: the quote is escaped");
            }
            let raw = serde_json::to_string(&"é".repeat(len)).expect("json");
            let raw: &RawValue = serde_json::from_str(&raw).expect("raw");
            assert!(matches!(string(raw), Some(Cow::Borrowed(_))), "{len}");
        }
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_at_every_position() {
        // Past 16, 32 and 48 bytes: whole windows, an overlapping last window, and short tails.
        for len in 0..50 {
            for at in 0..len {
                for b in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert!(needs_escape(&s), "{len} {at} {b}");
                }
                for b in [b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert!(!needs_escape(&s), "{len} {at} {b}");
                }
            }
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let raw: &RawValue = serde_json::from_str("\"取引\"").expect("raw");
        assert!(matches!(string(raw), Some(Cow::Borrowed("取引"))));
        let raw: &RawValue = serde_json::from_str(r#""a\"b""#).expect("raw");
        assert_eq!(string(raw).as_deref(), Some("a\"b"));
    }

    #[test]
    fn depth() {
        assert!(!deeper_than(br#"{"a":[{"b":"[[[["}]}"#, 3));
        assert!(deeper_than(br#"{"a":[{"b":[]}]}"#, 3));
        assert!(!deeper_than(br#"{"a\\":"\"[[[[","b":"\\"}"#, 1));
        assert!(!deeper_than(br#"{"a":"\"#, 1));
        // More brackets than the limit, most of them in strings.
        assert!(!deeper_than(br#"{"a":"[[[[{{{{","b":[{}]}"#, 3));
        assert!(deeper_than(br#"{"a":"[[[[{{{{","b":[{"c":[]}]}"#, 3));
    }

    #[test]
    fn fields_keep_order_and_borrow() {
        let f: Fields<'_> = serde_json::from_str(r#"{"b":1,"a\u0041":{"x":[]},"c":"s"}"#).expect("parse");
        let keys: Vec<&str> = f.0.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "aA", "c"]);
        assert_eq!(f.0[1].1.get(), r#"{"x":[]}"#);
        assert!(matches!(f.0[0].0, Cow::Borrowed(_)));
    }
}
