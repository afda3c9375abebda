//! The gate in front of every `/v1` route: who is calling (a bearer JWT, or everyone when
//! authentication is off), whether their roles allow the route, and whether they are within
//! their rate. The verified [`Principal`] goes into the request's extensions for the handlers,
//! which scope what they read and write to its organizations.
//!
//! | route | role | rate class |
//! |---|---|---|
//! | `POST /v1/logs`, `POST /v1/flush` | `logs:write` | ingest |
//! | `POST /v1/queries` | `logs:read` | query |
//! | `GET/DELETE /v1/queries/{id}…` | `logs:read` | — |
//! | `GET /v1/search`, `GET /v1/trace/{id}` | `logs:read` | query |
//! | `POST /v1/exports` | `exports:write` | query |
//! | `GET /v1/exports/{id}…` | `exports:write` | — |
//!
//! `admin` has every role. `/healthz` and `/metrics` are outside `/v1` and open.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    rate::RateLimiter,
    token::{Principal, Role, Verifier},
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

/// The gate: authentication, roles and rate limits.
#[derive(Debug)]
pub struct Gate {
    authn: Authn,
    ingest: RateLimiter,
    query: RateLimiter,
    body_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateClass {
    Ingest,
    Query,
}

/// The role a route needs and the rate it counts against.
fn rule(method: &Method, path: &str) -> (Option<Role>, Option<RateClass>) {
    let post = method == Method::POST;
    match path {
        "/v1/logs" | "/v1/flush" => (Some(Role::LogsWrite), Some(RateClass::Ingest)),
        "/v1/queries" => (Some(Role::LogsRead), post.then_some(RateClass::Query)),
        "/v1/search" => (Some(Role::LogsRead), Some(RateClass::Query)),
        "/v1/exports" => (Some(Role::ExportsWrite), post.then_some(RateClass::Query)),
        p if p.starts_with("/v1/trace/") => (Some(Role::LogsRead), Some(RateClass::Query)),
        p if p.starts_with("/v1/queries/") => (Some(Role::LogsRead), None),
        p if p.starts_with("/v1/exports/") => (Some(Role::ExportsWrite), None),
        _ => (None, None),
    }
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl Gate {
    /// A gate.
    pub fn new(authn: Authn, config: GateConfig) -> Arc<Self> {
        Arc::new(Self {
            authn,
            ingest: RateLimiter::new(config.ingest_per_sec),
            query: RateLimiter::new(config.query_per_sec),
            body_timeout: config.body_timeout,
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

    async fn principal(&self, headers: &HeaderMap) -> Result<Principal, Response> {
        let Authn::Jwt(verifier) = &self.authn else { return Ok(Principal::operator("anonymous")) };
        let Some(token) = bearer(headers) else {
            return Err(unauthorized(
                "unauthenticated",
                "this API needs `Authorization: Bearer <token>`; an operator mints one with `sluice token`".into(),
            ));
        };
        verifier.verify(token).await.map_err(|e| unauthorized("invalid_token", e.0))
    }
}

async fn gate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let mut req = crate::http::with_body_deadline(req, gate.body_timeout);
    let path = req.uri().path().to_owned();
    if !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let principal = match gate.principal(req.headers()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (role, class) = rule(req.method(), &path);
    if let Some(role) = role
        && !principal.has(role)
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{} {path} needs the role {role}; this token has none of it", req.method()),
        );
    }
    let limiter = match class {
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
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_route_has_a_role() {
        for (m, p) in [
            (Method::POST, "/v1/logs"),
            (Method::POST, "/v1/flush"),
            (Method::POST, "/v1/queries"),
            (Method::GET, "/v1/queries/x/results"),
            (Method::DELETE, "/v1/queries/x"),
            (Method::GET, "/v1/search"),
            (Method::GET, "/v1/trace/t"),
            (Method::POST, "/v1/exports"),
            (Method::GET, "/v1/exports/x/download"),
        ] {
            assert!(rule(&m, p).0.is_some(), "{m} {p}");
        }
        assert_eq!(rule(&Method::GET, "/v1/queries/x").1, None);
        assert_eq!(rule(&Method::POST, "/v1/logs").1, Some(RateClass::Ingest));
    }
}
