//! Partition values and the Hive-style partition path.
//!
//! Partition values become S3 keys and folder names, so they are validated, never escaped:
//! 1–64 characters of `[A-Za-z0-9._-]`, not starting with `.`, case-sensitive.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest partition value accepted.
pub const MAX_PARTITION_VALUE_LEN: usize = 64;

/// Names of the seven partition columns, in path order.
pub const PARTITION_COLUMNS: [&str; 7] = ["environment", "organization", "logtype", "year", "month", "day", "hour"];

/// Why a string is not a valid partition value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionValueError {
    /// The value is empty.
    Empty,
    /// The value is longer than [`MAX_PARTITION_VALUE_LEN`].
    TooLong(usize),
    /// The value starts with a dot (`.`, `..` and hidden names are never folder names).
    LeadingDot,
    /// The value contains a character outside `[A-Za-z0-9._-]`.
    BadChar(char),
}

impl fmt::Display for PartitionValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::TooLong(n) => write!(f, "is {n} characters long (at most {MAX_PARTITION_VALUE_LEN})"),
            Self::LeadingDot => f.write_str("starts with `.`"),
            Self::BadChar(c) => write!(f, "contains {c:?}; only A-Z, a-z, 0-9, `.`, `_` and `-` are allowed"),
        }
    }
}

/// Checks the partition-value rule of the record contract.
pub fn validate_partition_value(value: &str) -> Result<(), PartitionValueError> {
    if value.is_empty() {
        return Err(PartitionValueError::Empty);
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(PartitionValueError::BadChar(c));
    }
    if value.len() > MAX_PARTITION_VALUE_LEN {
        return Err(PartitionValueError::TooLong(value.len()));
    }
    if value.starts_with('.') {
        return Err(PartitionValueError::LeadingDot);
    }
    Ok(())
}

/// A partition value (`environment`, `organization`, `logtype`) that follows the rule: only
/// [`PartitionValue::new`] and deserialization make one, and both check it, so a value that
/// could leave its folder (`..`, `a/b`, `x=y`) never reaches a path or a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PartitionValue(String);

impl PartitionValue {
    /// `value`, if it follows the partition-value rule.
    pub fn new(value: impl Into<String>) -> Result<Self, PartitionValueError> {
        let value = value.into();
        validate_partition_value(&value)?;
        Ok(Self(value))
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for PartitionValue {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for PartitionValue {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartitionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for PartitionValue {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PartitionValue {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de> Deserialize<'de> for PartitionValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s.clone()).map_err(|e| serde::de::Error::custom(format!("partition value {s:?} {e}")))
    }
}

/// The partition of one record: where it lands in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition {
    /// `environment`.
    pub environment: PartitionValue,
    /// `organization`.
    pub organization: PartitionValue,
    /// `logtype` (registered).
    pub logtype: PartitionValue,
    /// UTC year, 2000–9999.
    pub year: u16,
    /// Month 1–12.
    pub month: u8,
    /// Day 1–31.
    pub day: u8,
    /// Hour 0–23.
    pub hour: u8,
}

/// How far, in hours, a record's `time` may lie from its hour partition for readers to find it
/// by `time` alone: a filter on `time` prunes hour partitions with this much slack on each side.
/// Every UTC offset is within it, so producers whose `year/month/day/hour` are a local hour are
/// covered; a data file holding a record further away is marked ([`FAR_TIME_MARK`]).
pub const HOUR_SLACK_HOURS: i64 = 14;

/// What a data file's name carries before `.parquet` when it holds a record whose `time` lies
/// further than [`HOUR_SLACK_HOURS`] from its hour partition (the contract lets
/// `year/month/day/hour` choose any hour): readers pruning hour partitions by `time` keep such
/// files whatever their hour, so no record is missed.
pub const FAR_TIME_MARK: &str = ".far";

/// The partition index of a lake written by sluice: an empty object
/// `{PARTITION_INDEX}/organization={o}/environment={e}` for every environment folder an
/// organization has under `logs/`, written before the first data file there. A reader scoped to
/// some organizations finds their environments with one listing each, instead of listing every
/// environment of the lake (which another tenant may have made thousands of).
pub const PARTITION_INDEX: &str = "_sluice/partitions";

/// Present when the partition index holds every environment of every organization of the lake
/// (written by `sluice serve` once it has indexed a lake; a lake without it, one written by
/// Firehose say, is listed in full).
pub const PARTITION_INDEX_COMPLETE: &str = "_sluice/partitions/complete";

/// Whether the data file `name` is marked as holding a record far from its hour.
pub fn is_far_time_file(name: &str) -> bool {
    name.strip_suffix(".parquet").is_some_and(|stem| stem.ends_with(FAR_TIME_MARK))
}

impl Partition {
    /// The first microsecond of this partition's hour, UTC.
    pub fn hour_start_micros(&self) -> i64 {
        chrono::NaiveDate::from_ymd_opt(i32::from(self.year), u32::from(self.month), u32::from(self.day))
            .and_then(|d| d.and_hms_opt(u32::from(self.hour), 0, 0))
            .map_or(0, |t| t.and_utc().timestamp_micros())
    }

    /// Whether a record of this partition at `time_micros` lies further than
    /// [`HOUR_SLACK_HOURS`] from the hour.
    pub fn is_far(&self, time_micros: i64) -> bool {
        let slack = HOUR_SLACK_HOURS * 3_600_000_000;
        let start = self.hour_start_micros();
        time_micros < start - slack || time_micros >= start + 3_600_000_000 + slack
    }

    /// The relative path of this partition under `{lake}/logs/`, with zero-padded date parts:
    /// `environment=dev/organization=42/logtype=web/year=2023/month=02/day=17/hour=16`.
    pub fn path(&self) -> String {
        format!(
            "environment={}/organization={}/logtype={}/year={:04}/month={:02}/day={:02}/hour={:02}",
            self.environment, self.organization, self.logtype, self.year, self.month, self.day, self.hour
        )
    }

    /// The Firehose partition keys (`metadata.partitionKeys`), as zero-padded strings.
    pub fn keys(&self) -> PartitionKeys {
        PartitionKeys {
            environment: self.environment.to_string(),
            organization: self.organization.to_string(),
            logtype: self.logtype.to_string(),
            year: format!("{:04}", self.year),
            month: format!("{:02}", self.month),
            day: format!("{:02}", self.day),
            hour: format!("{:02}", self.hour),
        }
    }

    /// Appends [`Partition::keys`] as a JSON object to `out`, as `serde_json` writes it, without
    /// building the strings.
    pub fn write_keys_json(&self, out: &mut Vec<u8>) {
        let text = |out: &mut Vec<u8>, key: &str, value: &str| {
            out.extend_from_slice(key.as_bytes());
            crate::json::write_str(out, value);
        };
        text(out, "{\"environment\":", &self.environment);
        text(out, ",\"organization\":", &self.organization);
        text(out, ",\"logtype\":", &self.logtype);
        let number = |out: &mut Vec<u8>, key: &str, n: u16, width: usize| {
            out.extend_from_slice(key.as_bytes());
            out.push(b'"');
            let mut buf = [b'0'; 5];
            let width = width.max(n.checked_ilog10().map_or(1, |l| l as usize + 1));
            crate::time::digits(&mut buf[..width], n.into());
            out.extend_from_slice(&buf[..width]);
            out.push(b'"');
        };
        number(out, ",\"year\":", self.year, 4);
        number(out, ",\"month\":", self.month.into(), 2);
        number(out, ",\"day\":", self.day.into(), 2);
        number(out, ",\"hour\":", self.hour.into(), 2);
        out.push(b'}');
    }

    /// Parses a path written by [`Partition::path`] (a trailing `/` or file name is not allowed).
    /// Every value is validated again, so a parsed partition is always safe to use as a path.
    pub fn parse_path(path: &str) -> Option<Self> {
        let mut parts = path.split('/');
        let mut next = |key: &str| -> Option<&str> { parts.next()?.strip_prefix(key)?.strip_prefix('=') };
        let environment = next("environment")?;
        let organization = next("organization")?;
        let logtype = next("logtype")?;
        let year = next("year")?;
        let month = next("month")?;
        let day = next("day")?;
        let hour = next("hour")?;
        if parts.next().is_some() {
            return None;
        }
        let num = |s: &str, width: usize| -> Option<u16> {
            (s.len() == width && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
        };
        let p = Self {
            environment: PartitionValue::new(environment).ok()?,
            organization: PartitionValue::new(organization).ok()?,
            logtype: PartitionValue::new(logtype).ok()?,
            year: num(year, 4)?,
            month: u8::try_from(num(month, 2)?).ok()?,
            day: u8::try_from(num(day, 2)?).ok()?,
            hour: u8::try_from(num(hour, 2)?).ok()?,
        };
        chrono::NaiveDate::from_ymd_opt(i32::from(p.year), u32::from(p.month), u32::from(p.day))?;
        (p.hour < 24).then_some(p)
    }
}

/// Firehose's `metadata.partitionKeys` object, in path order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionKeys {
    /// `environment`.
    pub environment: String,
    /// `organization`.
    pub organization: String,
    /// `logtype`.
    pub logtype: String,
    /// `YYYY`.
    pub year: String,
    /// `MM`.
    pub month: String,
    /// `DD`.
    pub day: String,
    /// `HH`.
    pub hour: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rule_examples() {
        for ok in ["dev", "hot", "42", "a.b-c_d", "A", &"x".repeat(64)] {
            assert_eq!(validate_partition_value(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_partition_value(""), Err(PartitionValueError::Empty));
        assert_eq!(validate_partition_value(".."), Err(PartitionValueError::LeadingDot));
        assert_eq!(validate_partition_value(".hidden"), Err(PartitionValueError::LeadingDot));
        assert_eq!(validate_partition_value(&"x".repeat(65)), Err(PartitionValueError::TooLong(65)));
        for (bad, c) in [("a/b", '/'), ("a=b", '='), ("a b", ' '), ("é", 'é'), ("a\\b", '\\'), ("a\0", '\0')] {
            assert_eq!(validate_partition_value(bad), Err(PartitionValueError::BadChar(c)), "{bad:?}");
        }
    }

    fn partition(env: String, org: String, lt: String, h: u8) -> Partition {
        let v = |s: String| PartitionValue::new(s).expect("valid");
        Partition { environment: v(env), organization: v(org), logtype: v(lt), year: 2024, month: 2, day: 29, hour: h }
    }

    proptest! {
        /// A partition value is either rejected, or yields a path that stays inside its prefix
        /// and parses back to the same value.
        #[test]
        fn value_rejected_or_round_trips(env in "[A-Za-z0-9._/=-]{0,66}", org in "(\\PC{0,3}|[0-9a-z.]{1,70})", lt in "[a-z./=_-]{0,8}", hour in 0u8..24) {
            let valid = [&env, &org, &lt].iter().all(|v| validate_partition_value(v).is_ok());
            if valid {
                let p = partition(env, org, lt, hour);
                let path = p.path();
                // Stays inside its prefix: every segment is `key=value` with no traversal.
                let segments: Vec<&str> = path.split('/').collect();
                prop_assert_eq!(segments.len(), 7);
                for (seg, key) in segments.iter().zip(PARTITION_COLUMNS) {
                    let value = seg.strip_prefix(key).and_then(|s| s.strip_prefix('='));
                    prop_assert!(value.is_some_and(|v| !v.is_empty() && !v.starts_with('.')));
                }
                let joined = std::path::Path::new("/lake/logs").join(&path);
                prop_assert!(joined.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))));
                prop_assert!(joined.starts_with("/lake/logs"));
                prop_assert_eq!(Partition::parse_path(&path), Some(p));
            }
        }

        /// The keys written straight to JSON are what `serde_json` writes for [`Partition::keys`].
        #[test]
        fn keys_json_is_the_serialized_keys(env in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,7}", org in "[0-9a-z][0-9a-z.]{0,7}", year in 0u16..=u16::MAX, month in 0u8..=255, hour in 0u8..24) {
            let mut p = partition(env, org, "web".into(), hour);
            p.year = year;
            p.month = month;
            let mut out = Vec::new();
            p.write_keys_json(&mut out);
            prop_assert_eq!(String::from_utf8(out).expect("utf-8"), serde_json::to_string(&p.keys()).expect("json"));
        }

        /// Arbitrary strings never parse into a partition that renders to a different path.
        #[test]
        fn parse_is_strict(s in "\\PC{0,120}") {
            if let Some(p) = Partition::parse_path(&s) {
                prop_assert_eq!(p.path(), s);
            }
        }
    }
}
