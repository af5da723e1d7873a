use std::sync::Arc;

/// A mistake in a route, found when the [`RouteSpec`](crate::RouteSpec) or the
/// [`Router`](crate::Router) is built; nothing is checked per request.
///
/// Every variant names the route and the offending value.
/// [`RouterBuilder::build`](crate::RouterBuilder::build) reports all of them at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The route name is empty.
    #[error("route name must not be empty")]
    EmptyName,
    /// The path is not a valid exact path, prefix or template.
    #[error("route {route:?}: invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The route's name.
        route: Arc<str>,
        /// The path as configured.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host is not a host name, an IP literal or a `*.` wildcard.
    #[error("route {route:?}: invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The route's name.
        route: Arc<str>,
        /// The host as configured.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A method name is not a valid HTTP method token.
    #[error("route {route:?}: invalid method {method:?}")]
    InvalidMethod {
        /// The route's name.
        route: Arc<str>,
        /// The method as configured.
        method: String,
    },
    /// The method list is empty: the route could never match.
    #[error("route {route:?}: the method list is empty")]
    EmptyMethods {
        /// The route's name.
        route: Arc<str>,
    },
    /// A header name is not a valid HTTP header name.
    #[error("route {route:?}: invalid header name {header:?}")]
    InvalidHeaderName {
        /// The route's name.
        route: Arc<str>,
        /// The header name as configured.
        header: String,
    },
    /// The same header has two predicates in one route.
    #[error("route {route:?}: header {header:?} has more than one predicate")]
    DuplicateHeader {
        /// The route's name.
        route: Arc<str>,
        /// The header name.
        header: String,
    },
    /// The prefix to strip is malformed or can never be stripped from the route's paths.
    #[error("route {route:?}: invalid strip_prefix {prefix:?}: {reason}")]
    InvalidStripPrefix {
        /// The route's name.
        route: Arc<str>,
        /// The prefix as configured.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The prefix to strip can never apply to the route's path: it is neither a
    /// segment-boundary prefix of the path's fixed part (the literal part before
    /// the first `{` for a template) nor, for prefix and template routes, an
    /// extension of it. Such a strip would silently do nothing.
    #[error("route {route:?}: strip_prefix {prefix:?} can never apply to its path {path:?}")]
    StripPrefixNotOnPath {
        /// The route's name.
        route: Arc<str>,
        /// The prefix as configured.
        prefix: String,
        /// The route's path as configured.
        path: String,
    },
    /// The rewrite target is malformed.
    #[error("route {route:?}: invalid rewrite {rewrite:?}: {reason}")]
    InvalidRewrite {
        /// The route's name.
        route: Arc<str>,
        /// The rewrite target as configured.
        rewrite: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The rewrite target uses a parameter that the route's path does not capture.
    #[error(
        "route {route:?}: rewrite {rewrite:?} uses parameter {param:?}, which the path does not capture"
    )]
    UnknownParam {
        /// The route's name.
        route: Arc<str>,
        /// The rewrite target as configured.
        rewrite: String,
        /// The unknown parameter name.
        param: String,
    },
    /// Both `strip_prefix` and `rewrite` were set; a route edits its path one way.
    #[error("route {route:?}: strip_prefix and rewrite cannot both be set")]
    StripAndRewrite {
        /// The route's name.
        route: Arc<str>,
    },
    /// Two routes have the same host, path and header predicates, and methods
    /// that overlap: one of them could never match.
    #[error(
        "route {route:?}: duplicates route {other:?} (same host, path {path:?}, methods and headers)"
    )]
    DuplicateRoute {
        /// The route's name.
        route: Arc<str>,
        /// The earlier route it duplicates.
        other: Arc<str>,
        /// The shared path.
        path: String,
    },
    /// Two templates on the same host match the same paths (`/a/{id}` and
    /// `/a/{name}`), so neither would be more specific.
    #[error("route {route:?}: template {path:?} conflicts with {other_path:?} of route {other:?}")]
    Conflict {
        /// The route's name.
        route: Arc<str>,
        /// The route's template.
        path: String,
        /// The route it conflicts with.
        other: Arc<str>,
        /// That route's template.
        other_path: String,
    },
}
