//! Errors of loading and checking log-type definitions.

use std::path::PathBuf;

/// Why a log-type registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition file is not valid TOML or does not have the expected fields.
    #[error("log-type definition {file}: {reason}")]
    InvalidDefinition {
        /// The file (or built-in name) the definition came from.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two log types define the same column with different types.
    #[error(
        "column `{column}` is `{first_type}` in log type `{first}` but `{second_type}` in `{second}`: \
         a column shared by log types must have one type; rename one of them"
    )]
    ColumnConflict {
        /// The column name.
        column: String,
        /// The first log type that defines it.
        first: String,
        /// Its type there.
        first_type: String,
        /// The second log type that defines it.
        second: String,
        /// Its type there.
        second_type: String,
    },
    /// Two definition files name the same log type.
    #[error("log type `{name}` is defined twice ({first} and {second})")]
    DuplicateLogType {
        /// The log type name.
        name: String,
        /// The first file.
        first: String,
        /// The second file.
        second: String,
    },
    /// A definition directory could not be read.
    #[error("cannot read log-type definitions in {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
