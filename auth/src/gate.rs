//! The gate in front of every gated route (`/v1`, and the shippers' `/otlp`, `/es`, `/firehose`): who is calling (a bearer JWT, or everyone when
//! authentication is off), whether the route exists and the caller's roles allow it, and whether
//! the caller is within its rate. Routes and what they need are declared where they are
//! declared ([`crate::routes`]); a `/v1` path no route declares is refused (404) before anything
//! else. The verified caller ([`sluice_schemas::Caller`]: subject and organizations) goes into
//! the request's extensions for the handlers, which scope what they read and write to its
//! organizations. `admin` has every role. Other paths (`/healthz`, `/metrics`) are open. Firehose
//! delivery presents an access key instead of a token ([`crate::keys`]).

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    keys::AccessKeys,
    rate::RateLimiter,
    routes::{RateClass, RouteTable},
    token::{Principal, Verifier},
};

/// How callers are authenticated.
#[derive(Debug)]
pub enum Authn {
    /// Not at all: every caller is an operator (loopback only; `sluice serve --auth none`).
    None,
    /// Bearer JWTs.
    Jwt(Box<Verifier>),
}

/// Limits of the gate.
#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// Ingest requests a second per caller (0: no limit).
    pub ingest_per_sec: f64,
    /// Queries, searches, traces and exports started a second per caller (0: no limit).
    pub query_per_sec: f64,
    /// Time to receive a request body.
    pub body_timeout: Duration,
}

/// The gate: the routes that exist, authentication, roles and rate limits.
#[derive(Debug)]
pub struct Gate {
    authn: Authn,
    routes: RouteTable,
    ingest: RateLimiter,
    query: RateLimiter,
    body_timeout: Duration,
    access_keys: AccessKeys,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

fn unauthorized(code: &str, message: String) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, code, message);
    let challenge = if code == "invalid_token" {
        "Bearer realm=\"sluice\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"sluice\""
    };
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

/// The token of a request: `Authorization: Bearer <token>`, or, for shippers that cannot send a
/// bearer token, `ApiKey <token>` (Elasticsearch clients' `api_key`) or `Basic` with the token as
/// the password (any user name).
fn bearer(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey") {
        token.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let pair = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
        String::from_utf8(pair).ok()?.split_once(':')?.1.to_owned()
    } else {
        return None;
    };
    Some(token).filter(|t| !t.is_empty())
}

/// The header AWS Firehose sends its access key in.
pub const FIREHOSE_KEY_HEADER: &str = "x-amz-firehose-access-key";

impl Gate {
    /// A gate for the routes of `routes`.
    pub fn new(authn: Authn, config: GateConfig, routes: RouteTable) -> Arc<Self> {
        Self::with_access_keys(authn, config, routes, AccessKeys::default())
    }

    /// A gate for the routes of `routes` that also takes Firehose's `access_keys` at
    /// `/firehose`.
    pub fn with_access_keys(
        authn: Authn,
        config: GateConfig,
        routes: RouteTable,
        access_keys: AccessKeys,
    ) -> Arc<Self> {
        Arc::new(Self {
            authn,
            routes,
            ingest: RateLimiter::new(config.ingest_per_sec),
            query: RateLimiter::new(config.query_per_sec),
            body_timeout: config.body_timeout,
            access_keys,
        })
    }

    /// Whether callers must authenticate.
    pub fn requires_auth(&self) -> bool {
        matches!(self.authn, Authn::Jwt(_))
    }

    /// `router` behind the gate.
    pub fn protect(self: &Arc<Self>, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(Arc::clone(self), gate))
    }

    async fn principal(&self, path: &str, headers: &HeaderMap) -> Result<Principal, Response> {
        if path == "/firehose" && !(self.access_keys.is_empty() && matches!(self.authn, Authn::None)) {
            let key = headers.get(FIREHOSE_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            return self.access_keys.principal(key).ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_access_key",
                    "the X-Amz-Firehose-Access-Key is not one of the server's access keys (--firehose-keys); \
                     see docs/firehose.md",
                )
            });
        }
        let Authn::Jwt(verifier) = &self.authn else { return Ok(Principal::operator("anonymous")) };
        let Some(token) = bearer(headers) else {
            return Err(unauthorized(
                "unauthenticated",
                "this API needs `Authorization: Bearer <token>`; an operator mints one with `sluice token`".into(),
            ));
        };
        verifier.verify(&token).await.map_err(|e| unauthorized("invalid_token", e.to_string()))
    }
}

async fn gate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let mut req = crate::http::with_body_deadline(req, gate.body_timeout);
    let path = req.uri().path().to_owned();
    if !crate::routes::gated(&path) {
        return next.run(req).await;
    }
    // Fails closed: a path no route declared is not there, whoever asks.
    let Some(access) = gate.routes.access(req.method(), &path) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {} {path} in this API; the API is in docs/ingest.md and docs/query.md", req.method()),
        );
    };
    let principal = match gate.principal(&path, req.headers()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !principal.has(access.role) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{} {path} needs the role {}; this token has none of it", req.method(), access.role),
        );
    }
    let limiter = match access.rate {
        Some(RateClass::Ingest) => Some(&gate.ingest),
        Some(RateClass::Query) => Some(&gate.query),
        None => None,
    };
    // A bucket per subject and organizations: two tenants' tokens never share one, whatever
    // their subjects say.
    if let Some(Err(wait)) = limiter.map(|l| l.check(&principal.owner_key())) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this token; retry after {secs} s (the Retry-After header)"),
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    req.extensions_mut().insert(principal.caller());
    next.run(req).await
}
