//! Errors of the ingest crate.

use std::path::PathBuf;

/// What went wrong in ingest, delivery, import or replay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake failed (its storage, a Parquet file, a lock).
    #[error(transparent)]
    Lake(#[from] sluice_lake::Error),
    /// The object store failed.
    #[error("lake storage: {0}")]
    Store(#[from] object_store::Error),
    /// A file or the write-ahead log could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The write-ahead log is damaged beyond its torn tail.
    #[error("write-ahead log {path}: {reason}")]
    WalCorrupt {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the log folder.
    #[error("{what} is in use by another sluice process ({holder}); {fix}")]
    InUse {
        /// What is taken.
        what: String,
        /// Who holds it, as the holder wrote it down.
        holder: String,
        /// What to do about it.
        fix: String,
    },
    /// A request was taken in part: its first `taken` records are logged, the rest are not.
    #[error(
        "the server is overloaded ({reason}); the first {taken} records of this request were taken (they are \
         durable), the rest were not: send the records after them again later"
    )]
    Partial {
        /// Records taken.
        taken: usize,
        /// Why the rest were not.
        reason: String,
    },
    /// The log cannot be written now (an earlier write failed and the disk has no room yet).
    #[error("the write-ahead log cannot be written: {0}")]
    LogFailed(String),
    /// The pipeline is shutting down, or one of its parts stopped.
    #[error("{0} has stopped")]
    Stopped(&'static str),
    /// A task on the blocking pool ended without its result.
    #[error("{what}: {source}")]
    Task {
        /// What the task did.
        what: &'static str,
        /// Why it ended.
        source: tokio::task::JoinError,
    },
    /// A JSON document could not be read or written.
    #[error("{what}: {source}")]
    Json {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A CSV file could not be read.
    #[error("CSV {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
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
