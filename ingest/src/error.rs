//! Errors of the ingest crate.

use std::path::PathBuf;

/// What went wrong in ingest, delivery, import or replay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
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
    /// Writing Parquet failed.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow data failed.
    #[error("building Arrow data: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
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
    /// Another process owns what this one needs (a log folder, a lake).
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
    /// The pipeline is shutting down or a worker stopped.
    #[error("the delivery stream has stopped: {0}")]
    Stopped(String),
    /// A JSON document could not be read.
    #[error("{what}: {source}")]
    Json {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// An HTTP request failed.
    #[error("{0}")]
    Http(String),
    /// A CSV file could not be read.
    #[error("CSV {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
    },
    /// `sluice compact` cannot run or cannot merge a folder.
    #[error("compaction: {0}")]
    Compaction(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
