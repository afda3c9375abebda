//! Small JSON helpers for the record parser: borrowed keys and strings, verbatim-preserving
//! minification, and the top-level field list, read by [`record_fields`] (a reader for the
//! records it is sure of) or by `serde_json` (every other input, and the errors).

use std::{borrow::Cow, fmt};

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON value's text as it appears in the input, without the whitespace around it (what
/// `serde_json`'s `RawValue` holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    pub(crate) fn get(self) -> &'a str {
        self.0
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|r| Raw(r.get()))
    }
}

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
pub(crate) struct Fields<'a>(pub Vec<(Cow<'a, str>, Raw<'a>)>);

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
#[derive(Debug, PartialEq)]
pub(crate) struct RecordFields<'a> {
    pub fields: Vec<(Cow<'a, str>, Raw<'a>)>,
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
#[derive(Debug, PartialEq)]
pub(crate) enum Shape<'a> {
    Object(Vec<(Cow<'a, str>, Raw<'a>)>),
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

pub(crate) fn kind(raw: Raw<'_>) -> Kind {
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
pub(crate) fn string(raw: Raw<'_>) -> Option<Cow<'_, str>> {
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

/// Reads a record's text into its fields exactly as `serde_json::from_str::<RecordFields>` would,
/// for the records it is sure of, or `None`: for invalid JSON, nesting deeper than `max_depth`,
/// and the shapes of `events` that the contract rejects anyway. The caller then reads the text
/// with `serde_json`, which gives the same fields or the error.
///
/// The reader follows `serde_json` byte for byte where it accepts: the same grammar (RFC 8259,
/// strings checked for control characters and escapes, `\u` escapes of values not paired), the
/// same raw text of each value, keys unescaped by `serde_json` itself. It is faster because it
/// goes straight through the bytes: no visitor per value, strings skipped 16 bytes at a time.
pub(crate) fn record_fields(text: &str, max_depth: usize) -> Option<RecordFields<'_>> {
    // The reader recurses once a level: deeper than its own bound (only a contract configured
    // above the default 64 gets there) is left to `serde_json`, which skips values in a loop.
    let max_depth = max_depth.min(READER_DEPTH);
    let mut r = Reader { text, bytes: text.as_bytes(), at: 0, max_depth };
    r.space();
    if r.peek()? != b'{' || max_depth < 1 {
        return None;
    }
    r.at += 1;
    let mut out = RecordFields { fields: Vec::with_capacity(16), events: None };
    r.space();
    if !r.eat(b'}') {
        loop {
            let key = r.key()?;
            r.colon()?;
            if key == "events" {
                out.events = Some(r.events()?);
            } else {
                out.fields.push((key, r.value(1)?));
            }
            if r.next_or_close(b'}')? {
                break;
            }
        }
    }
    r.space();
    (r.at == text.len()).then_some(out)
}

#[cfg(not(target_arch = "x86_64"))]
use self::first_special_swar as first_special;

/// How many bytes of a string [`first_special`] looks at together.
const WINDOW: usize = if cfg!(target_arch = "x86_64") { 16 } else { 8 };

/// Where in `window` the first byte is that ends or escapes a JSON string or may not appear in
/// one (a quote, a backslash, a control character), if any: three SSE2 compares of 16 bytes.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn first_special(window: &[u8; WINDOW]) -> Option<usize> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of x86_64 itself (every x86_64 CPU has it, and the target enables it),
    // and the load reads the 16 bytes of `window`, unaligned.
    let mask = unsafe {
        let v = _mm_loadu_si128(window.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `v <= 0x1f`: the smaller of the two is `v`.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    };
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

/// Where in `window` the first byte is that ends or escapes a JSON string or may not appear in
/// one (a quote, a backslash, a control character), if any. One subtraction per byte, all eight
/// at once (as `serde_json` scans): a borrow only ever runs upwards from a byte that matched, so
/// the lowest flag is exact.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn first_special_swar(window: &[u8; 8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    let x = u64::from_le_bytes(*window);
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let q = x ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = x ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    let flags = (control | quote | backslash) & (ONES << 7);
    (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
}

/// The deepest nesting [`record_fields`] reads itself.
const READER_DEPTH: usize = 128;

/// The state of [`record_fields`]: the text and how far it has read.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        self.at += usize::from(found);
        found
    }

    fn space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.at += 1;
        }
    }

    /// `:` between a key and its value, with the whitespace around it.
    fn colon(&mut self) -> Option<()> {
        self.space();
        self.eat(b':').then_some(())?;
        self.space();
        Some(())
    }

    /// After a value in an array or object that `close` ends: `Some(false)` at a `,` (and at
    /// the next value or key), `Some(true)` past `close`.
    fn next_or_close(&mut self, close: u8) -> Option<bool> {
        self.space();
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.space();
                Some(false)
            }
            b if b == close => {
                self.at += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// An object's key: borrowed when it has no escapes, else unescaped by `serde_json` (which
    /// also rejects a `\u` escape of half a surrogate pair in a key, as reading the record does).
    fn key(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        let escaped = self.string()?;
        if escaped {
            let quoted = &self.text[start..self.at];
            return serde_json::from_str::<Str<'_>>(quoted).ok().map(|s| Cow::Owned(s.0.into_owned()));
        }
        Some(Cow::Borrowed(&self.text[start + 1..self.at - 1]))
    }

    /// Reads the string at `at` (its opening quote); `true` when it holds escapes.
    fn string(&mut self) -> Option<bool> {
        if !self.eat(b'"') {
            return None;
        }
        let mut escaped = false;
        loop {
            // Plain bytes a window at a time.
            while let Some(window) = self.bytes.get(self.at..self.at + WINDOW) {
                match first_special(window.try_into().expect("a window")) {
                    Some(k) => {
                        self.at += k;
                        break;
                    }
                    None => self.at += WINDOW,
                }
            }
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                b if b < 0x20 => return None,
                _ => {}
            }
        }
    }

    /// Skips ASCII digits; `true` when there was at least one.
    fn digits(&mut self) -> bool {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at > start
    }

    /// A number, in `serde_json`'s grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => {
                self.at += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.') && !self.digits() {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.digits() {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let found = self.bytes.get(self.at..self.at + word.len())? == word;
        self.at += word.len();
        found.then_some(())
    }

    /// The value at `at`, inside `depth` levels of arrays and objects, as its raw text.
    fn value(&mut self, depth: usize) -> Option<Raw<'a>> {
        let start = self.at;
        self.skip_value(depth)?;
        Some(Raw(&self.text[start..self.at]))
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.container(depth + 1),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// The array or object at `at`, which is at level `depth`.
    fn container(&mut self, depth: usize) -> Option<()> {
        if depth > self.max_depth {
            return None;
        }
        let object = self.bytes[self.at] == b'{';
        let close = if object { b'}' } else { b']' };
        self.at += 1;
        self.space();
        if self.eat(close) {
            return Some(());
        }
        loop {
            if object {
                self.string()?;
                self.colon()?;
            }
            self.skip_value(depth)?;
            if self.next_or_close(close)? {
                return Some(());
            }
        }
    }

    /// The value of a record's `events`: `null`, or an array of objects (level 2, its objects
    /// level 3). Anything else is left to `serde_json` (and then rejected by the contract).
    fn events(&mut self) -> Option<Shape<'a>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| Shape::Null),
            b'[' if self.max_depth >= 2 => {
                self.at += 1;
                let mut items = Vec::with_capacity(4);
                self.space();
                if self.eat(b']') {
                    return Some(Shape::Array(items));
                }
                loop {
                    items.push(Shape::Object(self.object_fields(3)?));
                    if self.next_or_close(b']')? {
                        return Some(Shape::Array(items));
                    }
                }
            }
            _ => None,
        }
    }

    /// The fields of the object at `at` (level `depth`), values raw.
    fn object_fields(&mut self, depth: usize) -> Option<Vec<(Cow<'a, str>, Raw<'a>)>> {
        if depth > self.max_depth || !self.eat(b'{') {
            return None;
        }
        let mut fields = Vec::with_capacity(8);
        self.space();
        if self.eat(b'}') {
            return Some(fields);
        }
        loop {
            let key = self.key()?;
            self.colon()?;
            fields.push((key, self.value(depth)?));
            if self.next_or_close(b'}')? {
                return Some(fields);
            }
        }
    }
}

/// What [`record_fields`] must give: `serde_json`'s reading of the text, for text within the
/// depth limit.
fn by_serde(text: &str, max_depth: usize) -> Option<RecordFields<'_>> {
    serde_json::from_str::<RecordFields<'_>>(text).ok().filter(|_| !deeper_than(text.as_bytes(), max_depth))
}

/// Whether [`record_fields`] must read a text `serde_json` reads itself: when every `events`
/// field of it (not only the last) is `null` or an array of objects.
fn plain(text: &str) -> bool {
    let Ok(Fields(fields)) = serde_json::from_str::<Fields<'_>>(text) else { return false };
    fields.iter().filter(|(k, _)| k == "events").all(|(_, v)| match serde_json::from_str::<Shape<'_>>(v.get()) {
        Ok(Shape::Null) => true,
        Ok(Shape::Array(items)) => items.iter().all(|i| matches!(i, Shape::Object(_))),
        _ => false,
    })
}

/// The fast reader's promise, checked on `text` (panics when it breaks): it gives
/// `serde_json`'s fields whenever it reads a text, and reads every text `serde_json` reads
/// whose `events` the contract accepts. Run by the property test below and by the fuzz target
/// `record` ([`crate::fuzz::record`]).
pub(crate) fn check_against_serde(text: &str, max_depth: usize) {
    let serde = by_serde(text, max_depth);
    match record_fields(text, max_depth) {
        Some(fast) => assert_eq!(Some(fast), serde, "the fast reader and serde_json disagree on {text:?}"),
        None => assert!(serde.is_none() || !plain(text), "{text:?} read by serde_json only"),
    }
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
                let raw: Raw<'_> = serde_json::from_str(&raw).expect("raw");
                let s = string(raw).expect("a string");
                assert_eq!(s, plain, "{len} {at}");
                assert!(matches!(s, Cow::Owned(_)), "{len} {at}: the quote is escaped");
            }
            let raw = serde_json::to_string(&"é".repeat(len)).expect("json");
            let raw: Raw<'_> = serde_json::from_str(&raw).expect("raw");
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
        let raw: Raw<'_> = serde_json::from_str("\"取引\"").expect("raw");
        assert!(matches!(string(raw), Some(Cow::Borrowed("取引"))));
        let raw: Raw<'_> = serde_json::from_str(r#""a\"b""#).expect("raw");
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

    fn finds_the_first_special_byte_exactly<const N: usize>(first: impl Fn(&[u8; N]) -> Option<usize>) {
        let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for filler in [b' ', b'!', b'#', b'[', b'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
            for at in 0..N {
                for b in 0..=255u8 {
                    for later in [None, Some((at + 1, 0u8)), Some((N - 1, b'"')), Some((N - 1, b'\\'))] {
                        let mut window = [filler; N];
                        window[at] = b;
                        if let Some((l, v)) = later.filter(|(l, _)| *l > at && *l < N) {
                            window[l] = v;
                        }
                        let want = window.iter().position(|&c| special(c));
                        assert_eq!(first(&window), want, "{window:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_first_special_byte_is_found_exactly() {
        finds_the_first_special_byte_exactly(first_special);
        finds_the_first_special_byte_exactly(first_special_swar);
    }

    #[test]
    fn a_record_is_read_as_serde_json_reads_it() {
        let text = concat!(
            " {\"organizationID\":\"org-1\", \"time\" : 1735776000123,\"n\":-0.5e+3,\"ok\":true,\"no\":null,",
            "\"events\":[{\"action\":\"a\\u00e9\\n\",\"detail\":{\"k\":[1,{\"x\":[]}]}}, {}],",
            "\"t\\u0041b\":[\"\\ud800\", false],\"description\":\"取引 🌧 \\\" \\\\ \\/\",\"e\":{}}\n"
        );
        let fast = record_fields(text, 64).expect("read by the fast reader");
        assert_eq!(Some(&fast), by_serde(text, 64).as_ref());
        assert_eq!(fast.fields[0], (Cow::Borrowed("organizationID"), Raw("\"org-1\"")));
        assert!(matches!(fast.fields[0].0, Cow::Borrowed(_)));
        assert_eq!(fast.fields.iter().find(|(k, _)| k == "tAb").map(|(_, v)| v.get()), Some("[\"\\ud800\", false]"));
    }

    #[test]
    fn what_serde_json_refuses_the_fast_reader_refuses() {
        for text in [
            "",
            " ",
            "[]",
            "1",
            "\"s\"",
            "null",
            "{",
            "{\"a\":1",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":-}",
            "{\"a\":+1}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":[1,]}",
            "{\"a\":[1 2]}",
            "{\"a\":{\"b\"}}",
            "{\"a\":1} x",
            "{\"a\":1}}",
            "{\"\\ud800\":1}",
            "{\"a\":\"x}",
            "{\"events\":[1]}",
            "{\"events\":{}}",
            "{\"events\":\"x\"}",
            "{\"events\":[[{}]]}",
            "{\"a\":NaN}",
        ] {
            assert_eq!(record_fields(text, 64), None, "{text:?}");
        }
        // Nesting: the object is level 1, `events` 2, its objects 3.
        assert!(record_fields("{\"a\":[[]]}", 3).is_some());
        assert_eq!(record_fields("{\"a\":[[]]}", 2), None);
        assert!(record_fields("{\"events\":[{}]}", 3).is_some());
        assert_eq!(record_fields("{\"events\":[{}]}", 2), None);
        assert_eq!(record_fields("{\"events\":[]}", 1), None);
        assert_eq!(record_fields("{}", 0), None);
        let deep = |levels: usize| format!("{{\"a\":{}{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        assert!(record_fields(&deep(READER_DEPTH), usize::MAX).is_some());
        assert_eq!(record_fields(&deep(READER_DEPTH + 1), usize::MAX), None);
        assert!(by_serde(&deep(100_000), usize::MAX).is_some(), "serde_json reads what the reader leaves");
    }

    /// Pieces of records, valid and not, for the property below.
    fn record_text() -> impl proptest::strategy::Strategy<Value = (String, Vec<(usize, Option<char>)>)> {
        use proptest::{collection::vec, prelude::*, sample::select};
        let string = vec(
            select(vec![
                "a",
                "Z",
                " ",
                "é",
                "取",
                "🌧",
                "\\\"",
                "\\\\",
                "\\/",
                "\\n",
                "\\u00e9",
                "\\uD83C\\uDF27",
                "\\ud800",
                "\\t",
            ]),
            0..6,
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat()));
        let number = "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?";
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            number.prop_map(|n| n),
            string.clone(),
            // Near misses.
            select(vec![
                "01",
                "-01",
                "1.",
                ".5",
                "1.e5",
                "1e",
                "1e+",
                "-",
                "+1",
                "tru",
                "nul",
                "NaN",
                "\"\\x\"",
                "\"\\u12\"",
                "\"\u{1}\"",
                "\"\\"
            ])
            .prop_map(str::to_owned),
        ];
        let key = prop_oneof![
            select(vec!["\"events\"", "\"time\"", "\"a\"", "\"k\\u0041\"", "\"\\ud800\""]).prop_map(str::to_owned),
            string
        ];
        let space = select(vec!["", "", " ", "\n\t "]);
        let value = leaf.prop_recursive(4, 32, 4, move |inner| {
            let space = space.clone();
            prop_oneof![
                (vec(inner.clone(), 0..4), space.clone())
                    .prop_map(|(v, s)| format!("[{s}{}]", v.join(&format!("{s},")))),
                (vec((key.clone(), inner), 0..4), space).prop_map(|(kv, s)| {
                    let kv: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}{s}:{v}")).collect();
                    format!("{{{}{s}}}", kv.join(","))
                }),
            ]
        });
        let field = prop_oneof![
            value.clone().prop_map(|v| format!("\"a\":{v}")),
            vec(value.clone(), 0..3).prop_map(|v| format!("\"events\":[{}]", v.join(","))),
            value.prop_map(|v| format!("\"events\" : {v}")),
        ];
        let mutation = (
            0..10_000usize,
            proptest::option::of(select(vec![
                ' ', '"', '\\', ',', ':', '{', '}', '[', ']', '0', '-', 'e', '.', 'u', '\u{1}', 'é',
            ])),
        );
        (vec(field, 0..5).prop_map(|f| format!(" {{{}}} ", f.join(","))), vec(mutation, 0..3))
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4096))]

        /// The fast reader gives `serde_json`'s fields whenever it reads a text, and reads every
        /// text `serde_json` reads whose `events` the contract accepts.
        #[test]
        fn the_fast_reader_agrees_with_serde_json((text, mutations) in record_text(), max_depth in 1usize..7) {
            let mut text = text;
            for (at, c) in mutations {
                let mut at = at % text.len().max(1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match c {
                    Some(c) => text.insert(at, c),
                    None if at < text.len() => {
                        text.remove(at);
                    }
                    None => {}
                }
            }
            check_against_serde(&text, max_depth);
        }
    }
}
