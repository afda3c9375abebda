//! Time as the record contract reads and writes it: RFC 3339 strings (any offset, any number of
//! fraction digits) and epoch milliseconds in, microseconds since the epoch (UTC) inside, RFC 3339
//! with six fraction digits and `Z` out.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses epoch milliseconds (a JSON number, integer or not) into microseconds since the epoch.
pub fn parse_epoch_millis(number: &str) -> Option<i64> {
    if let Ok(ms) = number.parse::<i64>() {
        return ms.checked_mul(1000);
    }
    let micros = (number.parse::<f64>().ok()? * 1000.0).round();
    (micros.is_finite() && micros.abs() < 9.0e18).then_some(micros as i64)
}

/// Parses an RFC 3339 time (`Z` or an offset, any number of fraction digits) into microseconds
/// since the epoch, UTC.
pub fn parse_time_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(t) = parse_utc_time(s.as_bytes()) {
        return Some(t);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    // More than nine fraction digits: keep nine (nanoseconds) and try again.
    let (head, tail) = s.split_once('.')?;
    let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 9 {
        return None;
    }
    let trimmed = format!("{head}.{}{}", &tail[..9], &tail[digits..]);
    DateTime::parse_from_rfc3339(&trimmed).ok().map(|dt| dt.with_timezone(&Utc).timestamp_micros())
}

/// The common spelling `YYYY-MM-DDTHH:MM:SS[.f…]Z` (1 to 9 fraction digits), read without
/// chrono; `None` for anything else (offsets, leap seconds, a lowercase `t` …), which chrono reads.
fn parse_utc_time(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let micros = match (b[19], b.len()) {
        (b'Z', 20) => 0,
        (b'.', 22..=30) if b[b.len() - 1] == b'Z' => {
            let digits = &b[20..b.len() - 1];
            let mut n = num(20..b.len() - 1)?;
            for _ in digits.len()..9 {
                n *= 10;
            }
            n / 1000
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fraction digits.
pub fn format_time(micros: i64) -> String {
    let mut out = Vec::with_capacity(27);
    write_time(&mut out, micros);
    String::from_utf8(out).expect("digits and ASCII punctuation")
}

/// Appends [`format_time`] of `micros` to `out`: digits written directly for the years 0 to
/// 9999, chrono for the rest.
pub(crate) fn write_time(out: &mut Vec<u8>, micros: i64) {
    // 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
    const MIN: i64 = -62_167_219_200_000_000;
    const MAX: i64 = 253_402_300_800_000_000;
    if !(MIN..MAX).contains(&micros) {
        let text = DateTime::<Utc>::from_timestamp_micros(micros)
            .map(|d| d.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_else(|| micros.to_string());
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let days = micros.div_euclid(86_400_000_000);
    let in_day = micros.rem_euclid(86_400_000_000);
    let (year, month, day) = civil_from_days(days);
    let secs = in_day / 1_000_000;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    digits(&mut text[0..4], year);
    digits(&mut text[5..7], month);
    digits(&mut text[8..10], day);
    digits(&mut text[11..13], secs / 3600);
    digits(&mut text[14..16], secs / 60 % 60);
    digits(&mut text[17..19], secs % 60);
    digits(&mut text[20..26], in_day % 1_000_000);
    out.extend_from_slice(&text);
}

/// Writes the last `dst.len()` decimal digits of `n` (not negative) into `dst`, zero-padded.
pub(crate) fn digits(dst: &mut [u8], mut n: i64) {
    // Two digits a step, from a table of "00" to "99".
    const PAIRS: &[u8; 200] = b"\
        0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut end = dst.len();
    while end >= 2 {
        let pair = (n % 100) as usize * 2;
        dst[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        n /= 100;
        end -= 2;
    }
    if end == 1 {
        dst[0] = b'0' + (n % 10) as u8;
    }
}

/// The proleptic Gregorian (year, month, day) of a day number since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
