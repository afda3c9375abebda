//! Errors of the query engine, typed so that what is the user's to fix (a 4xx) and what is the
//! engine's failure (a 5xx) is decided by variant, never by the text of a message.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// What went wrong with a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is not allowed here: the user's to fix.
    #[error("{0}")]
    Rejected(Rejection),
    /// The SQL is invalid, names what does not exist, or fails on a value (`1/0`, a cast): the
    /// user's to fix. The engine's own error.
    #[error("{}", .0.strip_backtrace())]
    Sql(Box<DataFusionError>),
    /// Athena found the SQL invalid (its error category 2).
    #[error("{reason}")]
    AthenaSql {
        /// Athena's reason.
        reason: String,
    },
    /// The query went over a limit.
    #[error("{0}")]
    Limit(Limit),
    /// The caller may not do this (an HTTP 403).
    #[error("{0}")]
    Forbidden(Forbidden),
    /// The query was cancelled.
    #[error("the query was cancelled")]
    Cancelled,
    /// Too many queries run for this caller, or on the server (an HTTP 429).
    #[error("{}", busy_message(*per_caller, *limit))]
    Busy {
        /// Whether the caller's own share is taken (otherwise the server's).
        per_caller: bool,
        /// The share.
        limit: usize,
    },
    /// A cursor this API did not hand out for this result (an HTTP 400).
    #[error("the cursor is not one this API handed out for this result; start again without it")]
    BadCursor,
    /// A location (a lake's, Athena's results') could not be understood.
    #[error("location {url:?}: {reason}")]
    Location {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The lake failed (its storage, a footer).
    #[error(transparent)]
    Store(#[from] sluice_lake::Error),
    /// The engine failed: not the user's fault.
    #[error("query engine: {}", .0.strip_backtrace())]
    Engine(Box<DataFusionError>),
    /// A result file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Athena, or S3 on its behalf, failed.
    #[error("{call}: {message}")]
    Aws {
        /// What was called.
        call: &'static str,
        /// What AWS said.
        message: String,
    },
}

fn busy_message(per_caller: bool, limit: usize) -> String {
    if per_caller {
        format!(
            "this token already runs {limit} queries, searches or exports; wait for one to finish (or cancel one) \
             and retry"
        )
    } else {
        format!("the server already runs {limit} queries, searches or exports; retry shortly")
    }
}

/// Why SQL is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Nothing but blanks and `;`.
    #[error("the SQL text is empty")]
    Empty,
    /// Over the size limit.
    #[error("the SQL text is {bytes} bytes; the limit is {limit} bytes")]
    TooLong {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Nested too deep.
    #[error("the SQL nests parentheses {depth} deep; the limit is {limit}: flatten the expression")]
    TooDeep {
        /// Its depth.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many operators.
    #[error("the SQL has {count} operators; the limit is {limit}: use IN (…) lists, a CASE, or several queries")]
    TooManyOperators {
        /// Its operators.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More than one statement.
    #[error("the SQL holds {count} statements; send one query at a time")]
    Statements {
        /// How many.
        count: usize,
    },
    /// A statement that is not a query (DDL, DML, `COPY`, `SET`, a transaction, …).
    #[error("Only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) are allowed here, not {statement}")]
    NotAQuery {
        /// The statement's first words.
        statement: String,
    },
}

/// A limit a query went over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    /// Memory: the query's own, its caller's share, or the server's (the engine's message says
    /// which and how much).
    #[error("the query needs more memory than it may have: {detail}; filter on partitions or time, or aggregate")]
    Memory {
        /// The engine's account.
        detail: String,
    },
    /// Time.
    #[error("{} took longer than {secs} s; narrow it by partition or time", if *planning { "planning the query" } else { "the query" })]
    Time {
        /// The limit.
        secs: u64,
        /// Whether planning (rather than running) took too long.
        planning: bool,
    },
    /// The size of one result.
    #[error("the result is over {bytes} bytes; aggregate, filter or add a LIMIT")]
    ResultSize {
        /// The limit.
        bytes: u64,
    },
    /// The disk results may take.
    #[error(
        "{}; delete finished results you no longer need (they expire after {ttl_secs} s), aggregate, filter or add a LIMIT",
        match .scope {
            DiskScope::Caller => format!("this token's results take {mib} MiB of disk, its quota"),
            DiskScope::Server => format!("the results of all callers take {mib} MiB of disk, the server's limit"),
            DiskScope::Reserve => format!("the disk of the results has less than {mib} MiB free, which results leave to ingest"),
        }
    )]
    Disk {
        /// Which limit.
        scope: DiskScope,
        /// Its size.
        mib: u64,
        /// How long results are kept.
        ttl_secs: u64,
    },
}

/// Which disk limit of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskScope {
    /// One caller's quota.
    Caller,
    /// All callers' quota.
    Server,
    /// The free space results leave to the log.
    Reserve,
}

/// Why the caller may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// Athena reads the whole Glue database: only operators run queries on it.
    #[error(
        "this server runs queries and exports on Athena, which reads the whole Glue database, so only operator \
         tokens (org \"*\") may use them; search and trace work with this token, or ask for a server with --engine \
         datafusion"
    )]
    AthenaNeedsOperator,
}

impl Error {
    /// Whether the error is the user's to fix (an HTTP 4xx).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Rejected(_)
                | Self::Sql(_)
                | Self::AthenaSql { .. }
                | Self::Limit(_)
                | Self::Cancelled
                | Self::Forbidden(_)
                | Self::Busy { .. }
                | Self::BadCursor
        )
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

impl From<Limit> for Error {
    fn from(l: Limit) -> Self {
        Self::Limit(l)
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        use datafusion::arrow::error::ArrowError;
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_) => Self::Sql(Box::new(e)),
            // What the data made of the query: `1/0`, a cast or a parse that fails on a value, an
            // overflow. The user's to fix, not the server's failure.
            DataFusionError::ArrowError(a, _)
                if matches!(
                    a.as_ref(),
                    ArrowError::DivideByZero
                        | ArrowError::ArithmeticOverflow(_)
                        | ArrowError::CastError(_)
                        | ArrowError::ParseError(_)
                        | ArrowError::InvalidArgumentError(_)
                        | ArrowError::ComputeError(_)
                ) =>
            {
                Self::Sql(Box::new(e))
            }
            DataFusionError::ResourcesExhausted(detail) => Self::Limit(Limit::Memory { detail: detail.clone() }),
            DataFusionError::ExecutionJoin(j) if j.is_cancelled() => Self::Cancelled,
            _ => Self::Engine(Box::new(e)),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
