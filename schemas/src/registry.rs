//! The log-type registry: log types are data (`schemas/logtypes/*.toml`), not code.

use std::{collections::BTreeMap, fs, path::Path};

use serde::Deserialize;

use crate::{
    columns::{self, Column, ColumnType},
    error::{Error, Result},
    partition::validate_partition_value,
};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

/// The type of a typed extra column, as written in a definition file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtraType {
    /// Text; a JSON number is accepted and kept as its text.
    String,
    /// 64-bit integer; a string of digits is accepted.
    Bigint,
    /// 64-bit float; a numeric string is accepted.
    Double,
    /// `true` / `false`.
    Boolean,
    /// RFC 3339 text or epoch milliseconds, stored as a UTC timestamp.
    Timestamp,
    /// Any JSON, stored as JSON text.
    Json,
}

impl ExtraType {
    /// The lake column type.
    pub fn column_type(self) -> ColumnType {
        match self {
            Self::String => ColumnType::String,
            Self::Bigint => ColumnType::Bigint,
            Self::Double => ColumnType::Double,
            Self::Boolean => ColumnType::Boolean,
            Self::Timestamp => ColumnType::Timestamp,
            Self::Json => ColumnType::Json,
        }
    }
}

/// A typed column that one log type adds to the common columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraColumn {
    /// The record field it is read from (camelCase, as producers send it).
    pub field: String,
    /// The lake column name (snake_case).
    pub name: String,
    /// Its type.
    pub ty: ExtraType,
    /// What it holds.
    pub description: String,
}

/// One registered log type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogType {
    /// The name, as it appears in `logType` and in the `logtype` partition.
    pub name: String,
    /// The name the search UI shows.
    pub title: String,
    /// The table it replaces in the old relational logging, if any.
    pub legacy_table: Option<String>,
    /// What it logs.
    pub description: String,
    /// Typed extra columns.
    pub columns: Vec<ExtraColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogTypeFile {
    name: String,
    title: Option<String>,
    legacy_table: Option<String>,
    description: Option<String>,
    #[serde(default)]
    columns: Vec<ColumnFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    field: String,
    name: Option<String>,
    #[serde(rename = "type")]
    ty: ExtraType,
    description: Option<String>,
}

/// `camelCase` or `PascalCase` → `snake_case`.
pub fn snake_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    let chars: Vec<char> = field.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c == ' ' || c == '.' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

fn is_snake_case(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Record fields with a fixed meaning in the contract; no log type may redefine them.
pub const CONTRACT_FIELDS: [&str; 18] = [
    "organizationID",
    "environment",
    "logType",
    "time",
    "year",
    "month",
    "day",
    "hour",
    "transactionId",
    "server",
    "action",
    "type",
    "description",
    "caller",
    "success",
    "detail",
    "events",
    "attributes",
];

impl LogType {
    /// Parses one definition file.
    pub fn from_toml(file: &str, text: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidDefinition { file: file.to_owned(), reason };
        let def: LogTypeFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        validate_partition_value(&def.name).map_err(|e| invalid(format!("name {:?} {e}", def.name)))?;
        if !is_snake_case(&def.name) {
            invalid_name(&def.name).map_err(invalid)?;
        }
        let reserved: Vec<String> =
            columns::common_columns().into_iter().chain(columns::partition_columns()).map(|c| c.name).collect();
        let mut cols: Vec<ExtraColumn> = Vec::with_capacity(def.columns.len());
        for c in def.columns {
            let name = c.name.unwrap_or_else(|| snake_case(&c.field));
            if !is_snake_case(&name) {
                return Err(invalid(format!(
                    "column name {name:?} is not lowercase snake_case (a-z, 0-9, _; starting with a letter)"
                )));
            }
            if CONTRACT_FIELDS.contains(&c.field.as_str()) || reserved.contains(&name) {
                return Err(invalid(format!(
                    "column `{}` ({name}) is part of the record contract and cannot be redefined",
                    c.field
                )));
            }
            if cols.iter().any(|o| o.name == name || o.field == c.field) {
                return Err(invalid(format!("column `{name}` is defined twice")));
            }
            cols.push(ExtraColumn { field: c.field, name, ty: c.ty, description: c.description.unwrap_or_default() });
        }
        Ok(Self {
            title: def.title.unwrap_or_else(|| def.name.clone()),
            name: def.name,
            legacy_table: def.legacy_table,
            description: def.description.unwrap_or_default(),
            columns: cols,
        })
    }

    /// The extra column read from record field `field`, if this log type types it.
    pub fn extra(&self, field: &str) -> Option<&ExtraColumn> {
        self.columns.iter().find(|c| c.field == field)
    }
}

fn invalid_name(name: &str) -> std::result::Result<(), String> {
    Err(format!(
        "name {name:?} must be lowercase snake_case (a-z, 0-9, _), because it is also a table name (logs_{name})"
    ))
}

/// All registered log types, and the lake schema they make together.
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<String, LogType>,
    /// Union of every log type's extras, in order of first appearance (log types by name).
    extras: Vec<ExtraColumn>,
    /// For each log type, the position in `extras` of each of its columns.
    slots: BTreeMap<String, Vec<usize>>,
}

impl Registry {
    /// The built-in log types of `schemas/logtypes/`.
    pub fn builtin() -> Self {
        Self::from_definitions(builtin::BUILTIN.iter().map(|(f, t)| ((*f).to_owned(), (*t).to_owned())))
            .expect("built-in log-type definitions are checked by the test suite")
    }

    /// The built-in log types plus every `*.toml` in `dir` (a file with a built-in's name replaces it).
    pub fn with_dir(dir: &Path) -> Result<Self> {
        let io = |source| Error::Io { path: dir.to_owned(), source };
        let mut defs: BTreeMap<String, (String, String)> =
            builtin::BUILTIN.iter().map(|(f, t)| ((*f).to_owned(), ((*f).to_owned(), (*t).to_owned()))).collect();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                let key = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                defs.insert(key, (path.display().to_string(), text));
            }
        }
        Self::from_definitions(defs.into_values())
    }

    /// Builds a registry from (file name, TOML text) pairs.
    pub fn from_definitions(defs: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut types: BTreeMap<String, LogType> = BTreeMap::new();
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in defs {
            let lt = LogType::from_toml(&file, &text)?;
            if let Some(first) = files.insert(lt.name.clone(), file.clone()) {
                return Err(Error::DuplicateLogType { name: lt.name, first, second: file });
            }
            types.insert(lt.name.clone(), lt);
        }
        let mut extras: Vec<ExtraColumn> = Vec::new();
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for lt in types.values() {
            for c in &lt.columns {
                match extras.iter().find(|e| e.name == c.name) {
                    Some(e) if e.ty != c.ty => {
                        return Err(Error::ColumnConflict {
                            column: c.name.clone(),
                            first: owner[&c.name].clone(),
                            first_type: format!("{:?}", e.ty).to_lowercase(),
                            second: lt.name.clone(),
                            second_type: format!("{:?}", c.ty).to_lowercase(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        owner.insert(c.name.clone(), lt.name.clone());
                        extras.push(c.clone());
                    }
                }
            }
        }
        let slots = types
            .values()
            .map(|lt| {
                let slots = lt
                    .columns
                    .iter()
                    .map(|c| extras.iter().position(|e| e.name == c.name).expect("every column is in the union"));
                (lt.name.clone(), slots.collect())
            })
            .collect();
        Ok(Self { types, extras, slots })
    }

    /// The log type named `name`.
    pub fn get(&self, name: &str) -> Option<&LogType> {
        self.types.get(name)
    }

    /// Every log type, by name.
    pub fn log_types(&self) -> impl Iterator<Item = &LogType> {
        self.types.values()
    }

    /// Registered names, for messages ("valid values are …").
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }

    /// Every typed extra column of every log type (the union), in lake column order.
    pub fn extras(&self) -> &[ExtraColumn] {
        &self.extras
    }

    /// For each column of the log type `name`, its position in [`Registry::extras`].
    pub fn extra_slots(&self, name: &str) -> &[usize] {
        self.slots.get(name).map_or(&[], Vec::as_slice)
    }

    /// Position of the extra column `name` in [`Registry::extras`].
    pub fn extra_index(&self, name: &str) -> Option<usize> {
        self.extras.iter().position(|e| e.name == name)
    }

    /// The data columns of every Parquet file in the lake and of the `logs` table:
    /// the common columns, then the union of the extras.
    pub fn lake_columns(&self) -> Vec<Column> {
        let mut cols = columns::common_columns();
        cols.extend(self.extras.iter().map(extra_column));
        cols
    }

    /// The data columns of table `logs_<logtype>`: the common columns, then that type's extras.
    pub fn logtype_columns(&self, logtype: &str) -> Option<Vec<Column>> {
        let lt = self.get(logtype)?;
        let mut cols = columns::common_columns();
        cols.extend(lt.columns.iter().map(extra_column));
        Some(cols)
    }

    /// The Arrow schema of the lake's data files.
    pub fn lake_arrow_schema(&self) -> arrow_schema::Schema {
        columns::arrow_schema(&self.lake_columns())
    }
}

fn extra_column(e: &ExtraColumn) -> Column {
    Column { name: e.name.clone(), ty: e.ty.column_type(), nullable: true, description: e.description.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_six_seed_types() {
        let r = Registry::builtin();
        assert_eq!(r.names(), ["agw", "app", "connector", "container", "hub", "otel", "web"]);
        assert_eq!(r.get("agw").and_then(|t| t.legacy_table.as_deref()), Some("TransactionLog"));
    }

    #[test]
    fn extra_slots_point_at_each_column_in_the_union() {
        let r = Registry::builtin();
        for lt in r.log_types() {
            let slots = r.extra_slots(&lt.name);
            assert_eq!(slots.len(), lt.columns.len());
            for (c, &slot) in lt.columns.iter().zip(slots) {
                assert_eq!(r.extras()[slot].name, c.name);
                assert_eq!(r.extra_index(&c.name), Some(slot));
            }
        }
        assert!(r.extra_slots("nope").is_empty());
    }

    #[test]
    fn snake_case_examples() {
        for (i, o) in [
            ("statusCode", "status_code"),
            ("userId", "user_id"),
            ("organizationID", "organization_id"),
            ("HTTPStatus", "http_status"),
            ("durationMs", "duration_ms"),
            ("a1B", "a1_b"),
            ("already_snake", "already_snake"),
        ] {
            assert_eq!(snake_case(i), o);
        }
    }

    #[test]
    fn a_new_file_adds_a_log_type() {
        let dir = std::env::temp_dir().join(format!("sluice-schemas-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(
            dir.join("billing.toml"),
            "name = \"billing\"\n[[columns]]\nfield = \"amountCents\"\ntype = \"bigint\"\n",
        )
        .expect("write");
        let r = Registry::with_dir(&dir).expect("registry");
        fs::remove_dir_all(&dir).ok();
        assert!(r.get("billing").is_some());
        assert!(r.lake_columns().iter().any(|c| c.name == "amount_cents"));
        assert_eq!(r.names().len(), 8);
    }

    #[test]
    fn bad_definitions_are_refused_with_the_reason() {
        let cases = [
            ("name = \"Bad Name\"", "name"),
            ("name = \"x\"\n[[columns]]\nfield = \"time\"\ntype = \"string\"", "record contract"),
            ("name = \"x\"\n[[columns]]\nfield = \"a\"\ntype = \"money\"", "unknown variant"),
            ("name = \"x\"\nsurprise = 1", "unknown field"),
        ];
        for (text, needle) in cases {
            let err = Registry::from_definitions([("x.toml".to_owned(), text.to_owned())]).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let conflict = Registry::from_definitions([
            ("a.toml".to_owned(), "name = \"a\"\n[[columns]]\nfield = \"n\"\ntype = \"bigint\"".to_owned()),
            ("b.toml".to_owned(), "name = \"b\"\n[[columns]]\nfield = \"n\"\ntype = \"string\"".to_owned()),
        ])
        .unwrap_err();
        assert!(matches!(conflict, Error::ColumnConflict { .. }), "{conflict}");
    }
}
