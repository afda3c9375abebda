//! Errors of the producer crate.

/// Why records could not be published.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topic is not an SNS topic ARN.
    #[error("{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME); the stack's `topic_arn` output is one")]
    NotATopicArn {
        /// The text given as the topic.
        arn: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    /// The input could not be read.
    #[error("reading {what}: {source}")]
    Input {
        /// What was being read.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server could not be reached.
    #[error("{url}: {source} (after {attempts} attempts); is `sluice serve` running there?")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        source: reqwest::Error,
    },
    /// The server refused a request for good (not 429/503).
    #[error("{url} answered {status}{hint}: {body}")]
    Refused {
        /// The endpoint.
        url: String,
        /// Its status.
        status: u16,
        /// What to change, when known.
        hint: &'static str,
        /// Its answer.
        body: String,
    },
    /// The server or SNS stayed overloaded (or kept failing) through every attempt.
    #[error(
        "{what} stayed overloaded or failing for {attempts} attempts{detail}; nothing after it was sent, try again later"
    )]
    Exhausted {
        /// The endpoint or topic.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// What the last failure said.
        detail: String,
    },
    /// An answer could not be read.
    #[error("{url}: unreadable answer: {reason}")]
    Answer {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// SNS refused a call (credentials, a topic that does not exist, …).
    #[error("{detail}")]
    Sns {
        /// The topic.
        topic: String,
        /// What the SDK said, with what to check.
        detail: String,
    },
    /// A task ended without its result (it panicked, or the runtime is shutting down).
    #[error("{what}: {source}")]
    Task {
        /// What the task did.
        what: &'static str,
        /// Why it ended.
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// An error reading `what`.
    pub fn input(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Input { what, source }
    }

    /// A task doing `what` that ended without its result.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Task { what, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
