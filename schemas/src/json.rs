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
        // Inside a parsed string a quote or a control character only appears escaped, so this
        // finds exactly the backslashes (eight bytes at a time: most strings are short).
        let content = &text[1..text.len() - 1];
        if !needs_escape(content.as_bytes()) {
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
/// character), checked eight bytes at a time (most strings in a record are short).
fn needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    if chunks.by_ref().any(|c| word_needs_escape(u64::from_le_bytes(c.try_into().expect("8 bytes")))) {
        return true;
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Whether any byte of `x` is below 0x20, `"` or `\` (Mycroft's test for a zero byte, exact).
fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let found = control | (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash);
    found & (ONES << 7) != 0
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
    fn every_byte_that_needs_an_escape_is_found_at_every_position() {
        for len in 0..20 {
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
