//! Who may call sluice's HTTP API, and how hard.
//!
//! * [`token`]: bearer JWTs — claims (`sub`, `org`, `roles`, `exp`), verification with a pinned
//!   algorithm (HS256 secret, or RS256/ES256 from a JWKS), minting for `sluice token`.
//! * [`routes`]: routes declared with the role they need and the rate they count against.
//! * [`gate`]: the middleware in front of every gated route (`/v1`, `/otlp`, `/es`, `/firehose`): the routes that exist,
//!   authentication, the role each route needs, and rate limits per caller.
//! * [`keys`]: access keys of Firehose HTTP endpoint delivery, each bound to organizations.
//! * [`slots`]: places for work that takes time, per caller and in all.
//! * [`webhook`]: calling a caller's URL when its export or upload ends, public addresses only.
//! * [`http`]: serving a router with deadlines on request headers and bodies.

mod api_error;
mod error;
pub mod gate;
pub mod http;
pub mod keys;
pub mod rate;
pub mod routes;
pub mod slots;
pub mod token;
pub mod webhook;

pub use api_error::ApiError;
pub use error::{Error, Result};
pub use gate::{Authn, Gate, GateConfig};
pub use jsonwebtoken::Algorithm;
pub use token::{Claims, JwtConfig, KeySource, OrgClaim, Principal, Role, RolesClaim, Verifier};

/// Installs the process's TLS crypto provider (aws-lc-rs, the one the AWS SDK uses) for HTTP
/// clients that do not bring their own. Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
