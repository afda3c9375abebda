//! Errors of the lake crate.

use std::path::PathBuf;

/// What went wrong with a lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A lake URL could not be understood.
    #[error("lake URL {url:?}: {reason}")]
    LakeUrl {
        /// The URL as given.
        url: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The object store failed.
    #[error("lake storage: {0}")]
    Store(#[from] object_store::Error),
    /// Reading or writing Parquet failed.
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow data failed.
    #[error("building Arrow data: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON document of the lake (a merged file's list of replaced files) could not be read.
    #[error("{what}: {source}")]
    Json {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// Another process holds what this one needs.
    #[error("{what} is in use by another sluice process ({holder}); {fix}")]
    InUse {
        /// What is taken.
        what: String,
        /// Who holds it, as the holder wrote it down.
        holder: String,
        /// What to do about it.
        fix: String,
    },
    /// The lease on the lake was lost to another process: this one must stop writing.
    #[error("the lease on the lake was taken by another process; stopped")]
    LeaseLost,
    /// A file of a folder to compact has a column the lake schema does not (a log type removed?)
    /// or of another type.
    #[error("{file}: column {column:?} {reason}")]
    Column {
        /// The file.
        file: String,
        /// The column.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A merge read or wrote another number of rows than its files' footers say.
    #[error("merging {files} files read {read} rows and wrote {written}, but their footers say {expected}")]
    RowCount {
        /// Files merged.
        files: usize,
        /// Rows read.
        read: u64,
        /// Rows written.
        written: u64,
        /// Rows the footers hold.
        expected: u64,
    },
    /// A task on the blocking pool failed (it panicked, or the runtime is shutting down).
    #[error("{what}: {source}")]
    Task {
        /// What the task did.
        what: &'static str,
        /// Why it ended.
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// A blocking task doing `what` that ended without its result.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Task { what, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
