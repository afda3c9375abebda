//! Errors of the query engine, split into the user's mistakes and the engine's failures.

/// What went wrong with a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is not allowed here (DDL, DML, `SET`, too long, …): the user's to fix.
    #[error("{0}")]
    Rejected(String),
    /// The SQL is invalid or refers to something that does not exist: the user's to fix.
    #[error("{0}")]
    Sql(String),
    /// The query went over a limit (time, memory, result size).
    #[error("{0}")]
    Limit(String),
    /// The caller may not do this (an HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The query was cancelled.
    #[error("the query was cancelled")]
    Cancelled,
    /// Too many queries run for this caller, or on the server (an HTTP 429).
    #[error("{0}")]
    Busy(String),
    /// The lake could not be opened.
    #[error("lake {url:?}: {reason}")]
    Lake {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The lake failed (its storage, a footer).
    #[error(transparent)]
    Store(#[from] sluice_lake::Error),
    /// The engine failed (I/O, a bug): not the user's fault.
    #[error("query engine: {0}")]
    Engine(String),
}

impl Error {
    /// Whether the error is the user's to fix (an HTTP 4xx).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Rejected(_) | Self::Sql(_) | Self::Limit(_) | Self::Cancelled | Self::Forbidden(_) | Self::Busy(_)
        )
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::{arrow::error::ArrowError, error::DataFusionError as D};
        match e.find_root() {
            D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) => Self::Sql(e.strip_backtrace()),
            // What the data made of the query: `1/0`, a cast or a parse that fails on a value, an
            // overflow. The user's to fix, not the server's failure.
            D::ArrowError(a, _)
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
                Self::Sql(e.strip_backtrace())
            }
            D::ResourcesExhausted(_) => Self::Limit(format!(
                "the query needs more memory than its limit: {}; filter on partitions or time, or aggregate",
                e.strip_backtrace()
            )),
            D::ExecutionJoin(_) | D::Execution(_) if e.strip_backtrace().contains("cancel") => Self::Cancelled,
            D::Execution(_) => Self::Sql(e.strip_backtrace()),
            _ => Self::Engine(e.strip_backtrace()),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
