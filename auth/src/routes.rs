//! Routes declared with what they need: each `/v1` route is declared through [`Routes`] with its
//! role and rate class, in the crate that declares the route, and the declarations form the
//! [`RouteTable`] the gate ([`crate::gate`]) checks every `/v1` request against. A `/v1` path no
//! route declared is refused by the gate (404), never let through with whatever valid token: a
//! route added without a role cannot be reached at all.

use axum::{
    Router,
    handler::Handler,
    http::Method,
    routing::{MethodFilter, on},
};

use crate::token::Role;

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// Ingest requests (`--ingest-rate`).
    Ingest,
    /// Queries, searches, traces and exports started (`--query-rate`).
    Query,
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The role a caller must have.
    pub role: Role,
    /// The rate its calls count against, if any.
    pub rate: Option<RateClass>,
}

impl Access {
    /// `role`, counted against `rate`.
    pub const fn new(role: Role, rate: RateClass) -> Self {
        Self { role, rate: Some(rate) }
    }

    /// `role`, not counted against a rate (following what a caller started: its status, its
    /// pages, its download).
    pub const fn unmetered(role: Role) -> Self {
        Self { role, rate: None }
    }
}

/// One declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The method.
    pub method: Method,
    /// The path, with `{name}` for one segment.
    pub path: String,
    /// What it needs.
    pub access: Access,
}

/// Every declared `/v1` route, for the gate.
#[derive(Debug, Clone, Default)]
pub struct RouteTable(Vec<Declared>);

impl RouteTable {
    /// What `method` on `path` needs; `None` when no route declares it. `HEAD` is `GET`'s.
    pub fn access(&self, method: &Method, path: &str) -> Option<Access> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        self.0.iter().find(|d| d.method == method && matches(&d.path, path)).map(|d| d.access)
    }

    /// The declared routes.
    pub fn iter(&self) -> impl Iterator<Item = &Declared> {
        self.0.iter()
    }

    /// This table and `other`'s routes.
    pub fn merge(mut self, other: Self) -> Self {
        self.0.extend(other.0);
        self
    }
}

/// Whether `path` is behind the gate: the native API (`/v1`) and the shippers' protocols
/// (`/otlp`, `/es`, `/firehose`). Everything else (`/healthz`, `/metrics`) is open.
pub fn gated(path: &str) -> bool {
    ["/v1", "/otlp", "/es", "/firehose"]
        .iter()
        .any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Whether `path` matches the pattern `pattern` (`{name}` matches one non-empty segment).
fn matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut s) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// A router being declared: every `/v1` route with its access.
#[derive(Debug)]
pub struct Routes<S = ()> {
    router: Router<S>,
    table: RouteTable,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self { router: Router::new(), table: RouteTable::default() }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `method` on `path` (a [`gated`] path), needing `access`, handled by `handler`.
    ///
    /// # Panics
    /// When `path` is not gated, or `method` is not one axum routes.
    pub fn route<H: Handler<T, S>, T: 'static>(
        mut self,
        method: Method,
        path: &str,
        access: Access,
        handler: H,
    ) -> Self {
        assert!(gated(path), "{path}: routes with access are gated paths; use `open` for others");
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
        self.router = self.router.route(path, on(filter, handler));
        self.table.0.push(Declared { method, path: path.to_owned(), access });
        self
    }

    /// `method` on `path`, not gated and open to every caller (`/healthz`, `/metrics`).
    ///
    /// # Panics
    /// When `path` is gated.
    pub fn open<H: Handler<T, S>, T: 'static>(mut self, method: Method, path: &str, handler: H) -> Self {
        assert!(!gated(path), "{path}: a gated route needs its access declared");
        let filter = MethodFilter::try_from(method).expect("a method axum routes");
        self.router = self.router.route(path, on(filter, handler));
        self
    }

    /// The routes declared so far.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The routes with their state.
    pub fn with_state(self, state: S) -> Routes<()> {
        Routes { router: self.router.with_state(state), table: self.table }
    }
}

impl Routes<()> {
    /// These routes and `other`'s.
    pub fn merge(self, other: Self) -> Self {
        Self { router: self.router.merge(other.router), table: self.table.merge(other.table) }
    }

    /// The router, and the table the gate checks requests against.
    pub fn into_parts(self) -> (Router, RouteTable) {
        (self.router, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_a_name() {
        assert!(matches("/v1/queries/{id}", "/v1/queries/abc"));
        assert!(!matches("/v1/queries/{id}", "/v1/queries/"));
        assert!(!matches("/v1/queries/{id}", "/v1/queries/abc/results"));
        assert!(matches("/v1/queries/{id}/results", "/v1/queries/abc/results"));
        assert!(!matches("/v1/logs", "/v1/logs/"));
        assert!(!matches("/v1/logs", "/v1/log"));
    }

    #[test]
    fn the_api_and_the_protocols_are_gated() {
        for p in ["/v1", "/v1/logs", "/otlp/v1/logs", "/es", "/es/", "/es/_bulk", "/firehose"] {
            assert!(gated(p), "{p}");
        }
        for p in ["/healthz", "/metrics", "/v10", "/esx", "/firehoses", "/"] {
            assert!(!gated(p), "{p}");
        }
    }

    #[test]
    fn only_declared_routes_have_access() {
        async fn nothing() {}
        let (_, table) = Routes::new()
            .route(Method::GET, "/v1/x/{id}", Access::unmetered(Role::LogsRead), nothing)
            .route(Method::DELETE, "/v1/x/{id}", Access::unmetered(Role::LogsWrite), nothing)
            .with_state(())
            .into_parts();
        assert_eq!(table.access(&Method::GET, "/v1/x/1").map(|a| a.role), Some(Role::LogsRead));
        assert_eq!(table.access(&Method::HEAD, "/v1/x/1").map(|a| a.role), Some(Role::LogsRead));
        assert_eq!(table.access(&Method::DELETE, "/v1/x/1").map(|a| a.role), Some(Role::LogsWrite));
        assert_eq!(table.access(&Method::POST, "/v1/x/1"), None);
        assert_eq!(table.access(&Method::GET, "/v1/y"), None);
    }
}
