//! `sluice token`: mints a bearer token with the server's HS256 secret.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Result, bail};
use clap::Args;
use sluice_auth::token;

use crate::config::Partial;

/// Flags of `sluice token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The organization(s) the token may write and read: an id, several (repeat the flag or
    /// separate with commas), or `*` for every organization (operators).
    #[arg(long = "org", required = true, value_delimiter = ',', value_name = "ORG")]
    orgs: Vec<String>,
    /// Roles: logs:write, logs:read, exports:write, admin (comma-separated).
    #[arg(long, required = true, value_delimiter = ',', value_name = "R[,R…]")]
    roles: Vec<String>,
    /// How long the token is valid: 90s, 30m, 12h, 7d.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    ttl: String,
    /// Who the token is for (the `sub` claim; rate limits, running queries and kept results
    /// count per subject and organizations) [default: a new `token-…` name for each token]
    #[arg(long, value_name = "NAME")]
    sub: Option<String>,
    /// The `aud` claim [default: the server's jwt_audience]
    #[arg(long, env = "SLUICE_JWT_AUDIENCE", value_name = "AUD")]
    aud: Option<String>,
    /// The `iss` claim [default: the server's jwt_issuer]
    #[arg(long, env = "SLUICE_JWT_ISSUER", value_name = "ISS")]
    iss: Option<String>,
    /// The server's settings file, for its jwt_secret, jwt_audience and jwt_issuer (SLUICE_JWT_SECRET
    /// and the flags override it).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Longest validity of a token.
const MAX_TTL_DAYS: u64 = 366;

/// `sluice token`.
pub fn run(args: TokenArgs) -> Result<ExitCode> {
    let file = match &args.config {
        Some(p) => Partial::from_file(p)?,
        None => Partial::default(),
    };
    let secret = std::env::var("SLUICE_JWT_SECRET").ok().filter(|s| !s.is_empty()).or(file.jwt_secret);
    let Some(secret) = secret else {
        bail!(
            "no secret to sign with: set SLUICE_JWT_SECRET to the server's secret, or pass --config with the \
             server's settings file (tokens for a JWKS server come from its identity provider)"
        );
    };
    let ttl = token::parse_duration(&args.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    if ttl.is_zero() || ttl.as_secs() > MAX_TTL_DAYS * 86_400 {
        bail!("--ttl {} is out of range: from 1s to {MAX_TTL_DAYS}d", args.ttl);
    }
    // Each token its own subject unless one is given, so tokens minted for different callers
    // never share a rate limit or a quota by accident.
    let sub = args.sub.unwrap_or_else(|| format!("token-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let mut claims = token::claims(&sub, &args.orgs, &args.roles, ttl)?;
    claims.aud = args.aud.or(file.jwt_audience);
    claims.iss = args.iss.or(file.jwt_issuer);
    let t = token::mint(secret.as_bytes(), &claims)?;
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
