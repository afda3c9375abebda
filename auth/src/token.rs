//! Bearer tokens: the claims sluice reads, verification with a pinned algorithm, and minting.
//!
//! A token is a JWT signed with HS256 and a shared secret, or with RS256/ES256 and a key from a
//! JWKS (a file or a URL, Cognito-style). The server pins the algorithm: a token whose header
//! names another one (including `none`) is refused before its signature is looked at. `exp` is
//! required; `aud` and `iss` are checked when the server is configured with them.

use std::{
    collections::BTreeSet,
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use sluice_schemas::{Caller, Orgs, PartitionValue};

use crate::error::{Error, Result};

/// Shortest HS256 secret accepted, in bytes (the size of the HMAC-SHA256 output).
pub const MIN_SECRET_BYTES: usize = 32;

/// A role a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Send records (`POST /v1/logs`, `POST /v1/flush`).
    LogsWrite,
    /// Query, search and trace.
    LogsRead,
    /// Start CSV exports and download them.
    ExportsWrite,
    /// Every role.
    Admin,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Self; 4] = [Self::LogsWrite, Self::LogsRead, Self::ExportsWrite, Self::Admin];

    /// The role's name in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogsWrite => "logs:write",
            Self::LogsRead => "logs:read",
            Self::ExportsWrite => "exports:write",
            Self::Admin => "admin",
        }
    }

    /// The role of a name, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling: what a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The subject (`sub`).
    pub sub: String,
    /// Its organizations.
    pub orgs: Orgs,
    /// Its roles.
    pub roles: BTreeSet<Role>,
}

impl Principal {
    /// Every organization and every role: the caller when authentication is off.
    pub fn operator(sub: &str) -> Self {
        Self { sub: sub.to_owned(), orgs: Orgs::All, roles: BTreeSet::from([Role::Admin]) }
    }

    /// Whether it has `role` (`admin` has them all).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// The caller as the ingest and query APIs see it (its organizations and subject).
    pub fn caller(&self) -> Caller {
        Caller { sub: self.sub.clone(), orgs: self.orgs.clone() }
    }

    /// The key that owns what this caller starts (see [`Caller::owner_key`]).
    pub fn owner_key(&self) -> String {
        self.caller().owner_key()
    }
}

/// The `org` claim: one organization, a list, or `*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrgClaim {
    /// One organization, or `*`.
    One(String),
    /// Several organizations.
    Many(Vec<String>),
}

/// The `roles` claim: a list, or one string of names separated by spaces or commas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RolesClaim {
    /// A list of names.
    Many(Vec<String>),
    /// Names separated by spaces or commas.
    Text(String),
}

/// The claims of a sluice token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who the token is for.
    pub sub: String,
    /// Organizations.
    pub org: OrgClaim,
    /// Roles.
    pub roles: RolesClaim,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// The organizations of an `org` claim, validated.
pub fn parse_orgs(claim: &OrgClaim) -> Result<Orgs> {
    let list: Vec<&str> = match claim {
        OrgClaim::One(s) => vec![s.as_str()],
        OrgClaim::Many(v) => v.iter().map(String::as_str).collect(),
    };
    if list.contains(&"*") {
        return Ok(Orgs::All);
    }
    if list.is_empty() {
        return Err(Error::EmptyOrganizations);
    }
    let mut set = BTreeSet::new();
    for org in list {
        let org =
            PartitionValue::new(org).map_err(|reason| Error::BadOrganization { value: org.to_owned(), reason })?;
        set.insert(org);
    }
    Ok(Orgs::Some(set))
}

/// The roles of a `roles` claim. Names sluice does not know are ignored (tokens from an identity
/// provider may carry other groups).
pub fn parse_roles(claim: &RolesClaim) -> BTreeSet<Role> {
    let names: Vec<&str> = match claim {
        RolesClaim::Many(v) => v.iter().map(String::as_str).collect(),
        RolesClaim::Text(s) => s.split([' ', ',']).filter(|s| !s.is_empty()).collect(),
    };
    names.into_iter().filter_map(Role::parse).collect()
}

/// Where verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A shared secret (HS256).
    Secret(Vec<u8>),
    /// A JWKS file or `https://` URL, and the algorithm its keys sign with (RS256 or ES256).
    Jwks {
        /// Path or URL.
        location: String,
        /// The pinned algorithm.
        algorithm: Algorithm,
    },
}

/// What the server checks tokens against.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Keys.
    pub keys: KeySource,
    /// Required audience, when set.
    pub audience: Option<String>,
    /// Required issuer, when set.
    pub issuer: Option<String>,
}

/// Shortest time between two fetches of a JWKS URL (a token with an unknown key id triggers one).
const JWKS_REFETCH: Duration = Duration::from_secs(60);

enum Keys {
    Secret(DecodingKey),
    Jwks { set: Mutex<(JwkSet, Instant)>, url: Option<String>, client: reqwest::Client },
}

/// Checks bearer tokens.
pub struct Verifier {
    algorithm: Algorithm,
    validation: Validation,
    keys: Keys,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// Checks an HS256 secret's length.
pub fn check_secret(secret: &[u8]) -> Result<()> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::SecretTooShort { bytes: secret.len(), minimum: MIN_SECRET_BYTES });
    }
    Ok(())
}

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// Refuses a JWKS URL over plain `http://` to anything but this machine: whoever can change
/// the answer on the way could sign tokens of their own.
fn check_jwks_url(location: &str) -> Result<()> {
    let Some(rest) = location.strip_prefix("http://") else { return Ok(()) };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(Error::JwksOverPlainHttp { location: location.to_owned() })
}

async fn load_jwks(location: &str, client: &reqwest::Client) -> Result<JwkSet> {
    let text = if is_url(location) {
        let r = client
            .get(location)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| Error::JwksUnreachable { location: location.to_owned(), error })?;
        r.text().await.map_err(|error| Error::JwksUnreachable { location: location.to_owned(), error })?
    } else {
        std::fs::read_to_string(location).map_err(|error| Error::JwksFile { location: location.to_owned(), error })?
    };
    serde_json::from_str(&text).map_err(|error| Error::NotAJwks { location: location.to_owned(), error })
}

/// An HTTP client that speaks TLS with the process's crypto provider.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    crate::install_crypto();
    reqwest::Client::builder().timeout(timeout).build().map_err(Error::HttpClient)
}

impl Verifier {
    /// A verifier for `config`; a JWKS is loaded now (and a URL re-fetched when a token names a
    /// key id it does not hold, at most once a minute).
    pub async fn new(config: &JwtConfig) -> Result<Self> {
        let (algorithm, keys) = match &config.keys {
            KeySource::Secret(secret) => {
                check_secret(secret)?;
                (Algorithm::HS256, Keys::Secret(DecodingKey::from_secret(secret)))
            }
            KeySource::Jwks { location, algorithm } => {
                if !matches!(algorithm, Algorithm::RS256 | Algorithm::ES256) {
                    return Err(Error::UnsupportedJwksAlgorithm(*algorithm));
                }
                check_jwks_url(location)?;
                let client = http_client(Duration::from_secs(10))?;
                let set = load_jwks(location, &client).await?;
                if set.keys.is_empty() {
                    return Err(Error::EmptyJwks { location: location.clone() });
                }
                let url = is_url(location).then(|| location.clone());
                (*algorithm, Keys::Jwks { set: Mutex::new((set, Instant::now())), url, client })
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token whose `nbf` is still ahead is not valid yet (jsonwebtoken checks it only when
        // asked).
        validation.validate_nbf = true;
        validation.leeway = 30;
        match &config.audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        if let Some(i) = &config.issuer {
            validation.set_issuer(&[i]);
        }
        Ok(Self { algorithm, validation, keys })
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey> {
        let (set, url, client) = match &self.keys {
            Keys::Secret(k) => return Ok(k.clone()),
            Keys::Jwks { set, url, client } => (set, url, client),
        };
        let find = |kid: Option<&str>| -> Option<Result<DecodingKey>> {
            let guard = set.lock().expect("jwks lock");
            let jwk = match kid {
                Some(kid) => guard.0.find(kid)?,
                None if guard.0.keys.len() == 1 => &guard.0.keys[0],
                None => return Some(Err(Error::NoKeyId)),
            };
            Some(DecodingKey::from_jwk(jwk).map_err(Error::UnusableKey))
        };
        if let Some(k) = find(kid) {
            return k;
        }
        let stale = set.lock().expect("jwks lock").1.elapsed() >= JWKS_REFETCH;
        if let (Some(url), true) = (url, stale) {
            set.lock().expect("jwks lock").1 = Instant::now();
            match load_jwks(url, client).await {
                Ok(fresh) => set.lock().expect("jwks lock").0 = fresh,
                Err(e) => tracing::warn!(error = %e, "JWKS refresh failed"),
            }
            if let Some(k) = find(kid) {
                return k;
            }
        }
        Err(Error::UnknownKeyId { kid: kid.unwrap_or_default().to_owned() })
    }

    /// Verifies `token` and returns who it speaks for.
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => Error::BadHeader { accepted: self.algorithm, error: e },
            _ => Error::NotAJwt(e),
        })?;
        if header.alg != self.algorithm {
            return Err(Error::WrongAlgorithm { signed: header.alg, accepted: self.algorithm });
        }
        let key = self.key(header.kid.as_deref()).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => Error::Expired,
            ErrorKind::InvalidSignature => Error::BadSignature,
            ErrorKind::InvalidAudience => Error::WrongAudience,
            ErrorKind::InvalidIssuer => Error::WrongIssuer,
            ErrorKind::MissingRequiredClaim(c) => Error::MissingClaim(c.clone()),
            ErrorKind::ImmatureSignature => Error::NotYetValid,
            _ => Error::Invalid(e),
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(Error::EmptySubject);
        }
        Ok(Principal { orgs: parse_orgs(&claims.org)?, roles: parse_roles(&claims.roles), sub: claims.sub })
    }
}

/// Signs `claims` with an HS256 `secret`.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String> {
    check_secret(secret)?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).map_err(Error::Sign)
}

/// The claims of a token for `orgs` with `roles`, valid for `ttl` from now (what `sluice token`
/// mints): the roles and organizations checked, the messages saying what to fix.
pub fn claims(sub: &str, orgs: &[String], roles: &[String], ttl: Duration) -> Result<Claims> {
    let mut checked = Vec::new();
    for role in roles {
        let Some(r) = Role::parse(role.trim()) else {
            return Err(Error::UnknownRole {
                role: role.clone(),
                known: Role::ALL.iter().map(|r| r.as_str()).collect(),
            });
        };
        checked.push(r.as_str().to_owned());
    }
    let org = if orgs.len() == 1 { OrgClaim::One(orgs[0].clone()) } else { OrgClaim::Many(orgs.to_vec()) };
    parse_orgs(&org)?;
    let now = now_secs();
    Ok(Claims {
        sub: sub.to_owned(),
        org,
        roles: RolesClaim::Many(checked),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        aud: None,
        iss: None,
    })
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Parses a duration such as `90s`, `30m`, `12h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let bad = || Error::BadDuration { text: s.to_owned() };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(org: OrgClaim, roles: &str, exp: u64) -> Claims {
        Claims {
            sub: "svc".into(),
            org,
            roles: RolesClaim::Text(roles.into()),
            exp,
            iat: None,
            aud: Some("sluice".into()),
            iss: None,
        }
    }

    #[tokio::test]
    async fn verifies_what_it_mints_and_nothing_else() {
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let config =
            JwtConfig { keys: KeySource::Secret(secret.clone()), audience: Some("sluice".into()), issuer: None };
        let v = Verifier::new(&config).await.expect("verifier");
        let t = mint(&secret, &claims(OrgClaim::Many(vec!["a".into(), "b".into()]), "logs:read,nope", now_secs() + 60))
            .expect("mint");
        let p = v.verify(&t).await.expect("valid");
        let org = |s: &str| PartitionValue::new(s).expect("valid");
        assert_eq!(p.orgs, Orgs::Some(BTreeSet::from([org("a"), org("b")])));
        assert_eq!(p.roles, BTreeSet::from([Role::LogsRead]));
        let expired = mint(&secret, &claims(OrgClaim::One("a".into()), "admin", now_secs() - 3600)).expect("mint");
        assert!(matches!(v.verify(&expired).await.unwrap_err(), Error::Expired));
        let other =
            mint(b"another-secret-another-secret-xx", &claims(OrgClaim::One("*".into()), "admin", now_secs() + 60))
                .expect("mint");
        assert!(matches!(v.verify(&other).await.unwrap_err(), Error::BadSignature));
        let bad_org = mint(&secret, &claims(OrgClaim::One("../x".into()), "admin", now_secs() + 60)).expect("mint");
        assert!(v.verify(&bad_org).await.is_err());
        assert!(mint(b"short", &claims(OrgClaim::One("a".into()), "admin", 1)).is_err());
    }

    #[test]
    fn a_jwks_over_plain_http_is_refused_except_on_loopback() {
        for ok in [
            "https://cognito-idp.eu-west-1.amazonaws.com/p/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://[::1]:9/k",
            "http://localhost/k",
            "/etc/sluice/jwks.json",
        ] {
            check_jwks_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["http://idp.example.com/jwks.json", "http://10.0.0.1:80/k", "http://127.0.0.1.evil.com/k"] {
            assert!(
                matches!(check_jwks_url(bad), Err(Error::JwksOverPlainHttp { location }) if location == bad),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_not_valid_yet_is_refused() {
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let config = JwtConfig { keys: KeySource::Secret(secret.clone()), audience: None, issuer: None };
        let v = Verifier::new(&config).await.expect("verifier");
        #[derive(Serialize)]
        struct Early<'a> {
            sub: &'a str,
            org: &'a str,
            roles: &'a str,
            exp: u64,
            nbf: u64,
        }
        let claims = Early { sub: "svc", org: "a", roles: "admin", exp: now_secs() + 7200, nbf: now_secs() + 3600 };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&secret))
            .expect("encode");
        assert!(matches!(v.verify(&t).await.unwrap_err(), Error::NotYetValid));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
