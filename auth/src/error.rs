//! Why a token, a key or a setting of authentication was refused. Every message is safe to show
//! the caller and says what to do.

use jsonwebtoken::Algorithm;
use sluice_schemas::PartitionValueError;

/// The errors of `sluice-auth`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An HS256 secret too short to resist guessing.
    #[error("the JWT secret is {bytes} bytes; it must be at least {minimum} (make one with `openssl rand -base64 48`)")]
    SecretTooShort {
        /// Its length.
        bytes: usize,
        /// The shortest allowed.
        minimum: usize,
    },
    /// A JWKS URL over plain `http://` to another machine.
    #[error(
        "the JWKS URL {location} is plain http://, so its keys could be replaced on the way; use https:// \
         (http:// is accepted for a loopback address only)"
    )]
    JwksOverPlainHttp {
        /// The URL.
        location: String,
    },
    /// A JWKS URL that did not answer with a set.
    #[error("cannot fetch the JWKS at {location}: {error}")]
    JwksUnreachable {
        /// The URL.
        location: String,
        /// What the HTTP client said.
        error: reqwest::Error,
    },
    /// A JWKS file that cannot be read.
    #[error("cannot read the JWKS file {location}: {error}")]
    JwksFile {
        /// The path.
        location: String,
        /// What the file system said.
        error: std::io::Error,
    },
    /// A JWKS that is not `{"keys": [...]}`.
    #[error("{location} is not a JWKS ({{\"keys\": [...]}}): {error}")]
    NotAJwks {
        /// Its path or URL.
        location: String,
        /// What the JSON parser said.
        error: serde_json::Error,
    },
    /// A JWKS that holds no keys.
    #[error("the JWKS at {location} holds no keys")]
    EmptyJwks {
        /// Its path or URL.
        location: String,
    },
    /// An algorithm other than RS256 and ES256 with a JWKS.
    #[error("{0:?} is not supported with a JWKS; use RS256 or ES256")]
    UnsupportedJwksAlgorithm(Algorithm),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(reqwest::Error),
    /// A token without `kid` while the JWKS holds several keys.
    #[error("the token has no `kid` and the JWKS holds several keys")]
    NoKeyId,
    /// A JWKS key jsonwebtoken cannot use.
    #[error("the JWKS key is unusable: {0}")]
    UnusableKey(jsonwebtoken::errors::Error),
    /// A key id the JWKS does not hold, even after a fresh fetch.
    #[error("the token's key id {kid:?} is not in the server's JWKS")]
    UnknownKeyId {
        /// The token's `kid` (empty when it has none).
        kid: String,
    },
    /// Not `header.payload.signature`.
    #[error("the token is not a JWT (header.payload.signature): {0}")]
    NotAJwt(jsonwebtoken::errors::Error),
    /// A header that is not JSON, or not one this server reads.
    #[error("the token's header is not accepted ({error}); this server accepts only {accepted:?}")]
    BadHeader {
        /// The server's algorithm.
        accepted: Algorithm,
        /// What jsonwebtoken said.
        error: jsonwebtoken::errors::Error,
    },
    /// Signed with another algorithm than the server's.
    #[error("the token is signed with {signed:?}; this server accepts only {accepted:?}")]
    WrongAlgorithm {
        /// The token's algorithm.
        signed: Algorithm,
        /// The server's.
        accepted: Algorithm,
    },
    /// `exp` has passed.
    #[error("the token has expired; get a new one")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    /// The signature does not match the key.
    #[error("the token's signature does not match the server's key")]
    BadSignature,
    /// `aud` is not the server's.
    #[error("the token is for another audience (`aud`)")]
    WrongAudience,
    /// `iss` is not the server's.
    #[error("the token is from another issuer (`iss`)")]
    WrongIssuer,
    /// A required claim is missing.
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    /// `sub` is empty.
    #[error("the token's `sub` claim is empty")]
    EmptySubject,
    /// `org` is an empty list.
    #[error("the token's `org` claim is empty; it needs an organization id, a list, or \"*\"")]
    EmptyOrganizations,
    /// An organization that cannot be a partition value.
    #[error("the organization {value:?} {reason}")]
    BadOrganization {
        /// The value as given.
        value: String,
        /// Why it cannot be a partition value.
        reason: PartitionValueError,
    },
    /// A role name sluice does not know (when minting).
    #[error("{role:?} is not a role; use {}", known.join(", "))]
    UnknownRole {
        /// The name as given.
        role: String,
        /// The roles there are.
        known: Vec<&'static str>,
    },
    /// Any other reason jsonwebtoken refused the token.
    #[error("the token is not valid: {0}")]
    Invalid(jsonwebtoken::errors::Error),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// Not a duration such as `90s`, `30m`, `12h` or `7d`.
    #[error("{text:?} is not a duration such as 90s, 30m, 12h or 7d (a bare number is seconds)")]
    BadDuration {
        /// The text as given.
        text: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
