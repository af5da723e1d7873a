use std::ops::{ControlFlow, Range};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, HOST};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri};
use portcullis_core::{Cause, ErrorResponse};
use tower_service::Service;

use crate::ambiguous::{dot_segments, host_key, remove_dot_segments};
use crate::spec::{MAX_HOST_LEN, PathEdit, RewritePart, strip_at_boundary};
use crate::table::{Captures, Route, Table};
use crate::{ConfigError, PathParams, ResponseBody, ResponseFuture, RouteSpec};

/// A route table as a tower [`Service`]: finds the most specific route for a
/// request and calls that route's service.
///
/// Cloning is cheap (the table is shared behind an `Arc`). Each call clones the
/// matched route's service and drives the clone to readiness inside the
/// [`ResponseFuture`], so the router itself is always ready. Unmatched requests
/// get a 404 `no_route`, wrong methods a 405 `method_not_allowed` with `Allow`.
/// See the [crate docs](crate) for the matching order.
pub struct Router<S> {
    table: Arc<Table<S>>,
}

/// Collects routes for a [`Router`]; made by [`Router::builder`].
#[must_use]
pub struct RouterBuilder<S> {
    routes: Vec<(RouteSpec, S)>,
    errors: Vec<ConfigError>,
}

/// What the table says about a request.
enum Decision<'t, S> {
    /// The route, its parameters' spans in the raw path, and whether that path
    /// has a `..` segment.
    Route(&'t Route<S>, Vec<Range<usize>>, bool),
    MethodNotAllowed(Option<HeaderValue>),
    NoRoute,
    /// A malformed host, or a path that would select another outcome once its
    /// dot segments are removed: why.
    Ambiguous(&'static str),
}

// === impl RouterBuilder ===

impl<S> RouterBuilder<S> {
    /// Adds a route and the service that answers its requests.
    pub fn route(mut self, spec: RouteSpec, service: S) -> Self {
        self.routes.push((spec, service));
        self
    }

    /// Adds a route whose spec may have failed to build, so that
    /// [`build`](Self::build) reports its error together with all the others.
    pub fn try_route(mut self, spec: Result<RouteSpec, ConfigError>, service: S) -> Self {
        match spec {
            Ok(spec) => self.routes.push((spec, service)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Compiles the table. Reports every problem at once: errors passed to
    /// [`try_route`](Self::try_route), duplicate routes, and templates that
    /// conflict on the same host (`/a/{id}` and `/a/{name}`).
    pub fn build(self) -> Result<Router<S>, Vec<ConfigError>> {
        let mut errors = self.errors;
        match Table::build(self.routes) {
            Ok(table) if errors.is_empty() => Ok(Router {
                table: Arc::new(table),
            }),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }
}

impl<S> std::fmt::Debug for RouterBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field(
                "routes",
                &self.routes.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            )
            .field("errors", &self.errors)
            .finish()
    }
}

// === impl Router ===

impl<S> Router<S> {
    /// An empty builder.
    pub fn builder() -> RouterBuilder<S> {
        RouterBuilder {
            routes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.table.routes.len()
    }

    /// Whether there are no routes (every request gets a 404).
    pub fn is_empty(&self) -> bool {
        self.table.routes.is_empty()
    }
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
        }
    }
}

impl<S> std::fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self
                    .table
                    .routes
                    .iter()
                    .map(|r| (&*r.matched.name, &*r.matched.template))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Router<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, S::Future>;

    /// Always ready: the matched route's service is driven to readiness inside
    /// the response future.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let table: &Table<S> = &self.table;
        let (route, spans, dotdot) = match decide(table, &req) {
            Decision::Route(route, spans, dotdot) => (route, spans, dotdot),
            Decision::Ambiguous(why) => return bad_request(&req, None, why),
            Decision::NoRoute => {
                tracing::debug!(cause = "no_route", "no route matched");
                let res = ErrorResponse::for_request(Cause::NoRoute, &req).build();
                return ResponseFuture::rejected(res, None, None);
            }
            Decision::MethodNotAllowed(allow) => {
                tracing::debug!(cause = "method_not_allowed", "no route for the method");
                let mut res = ErrorResponse::for_request(Cause::MethodNotAllowed, &req).build();
                if let Some(allow) = allow {
                    res.headers_mut().insert(ALLOW, allow);
                }
                return ResponseFuture::rejected(res, None, None);
            }
        };
        tracing::trace!(route = %route.matched.name, "matched route");

        let ext = req.extensions_mut();
        ext.insert(route.matched.clone());
        if let Some(service) = &route.service_name {
            ext.insert(service.clone());
        }
        // The captures point into the path the client sent: keep it before editing.
        let original = route.params().map(|names| {
            let path = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            (names.clone(), path)
        });
        match edit_uri(route, req.uri(), &spans, dotdot) {
            Ok(None) => {}
            Ok(Some(uri)) => *req.uri_mut() = uri,
            Err(why) => return bad_request(&req, Some(route), why),
        }
        if let Some((names, path)) = original {
            req.extensions_mut()
                .insert(PathParams::new(names, path, spans));
        }
        ResponseFuture::routed(
            route.service.clone(),
            req,
            route.matched.clone(),
            route.service_name.clone(),
        )
    }
}

/// The 400 `bad_request` for an ambiguous request or a refused path edit, out
/// of the way of the common path.
#[cold]
#[inline(never)]
fn bad_request<S, B, F>(
    req: &Request<B>,
    route: Option<&Route<S>>,
    why: &'static str,
) -> ResponseFuture<S, B, F> {
    tracing::debug!(cause = "bad_request", why, "request refused");
    let res = ErrorResponse::for_request(Cause::BadRequest, req).build();
    match route {
        Some(route) => {
            ResponseFuture::rejected(res, Some(route.matched.clone()), route.service_name.clone())
        }
        None => ResponseFuture::rejected(res, None, None),
    }
}

/// Finds the route for `req`, or says why there is none. A path with dot
/// segments is matched a second time without them (RFC 3986 §5.2.4), as an
/// upstream would resolve it: both must agree.
fn decide<'t, S, B>(table: &'t Table<S>, req: &Request<B>) -> Decision<'t, S> {
    let mut buf = [0u8; MAX_HOST_LEN];
    let host = match request_host(req) {
        None => None,
        Some(raw) => match host_key(raw, &mut buf) {
            Some(key) => Some(key),
            None => return Decision::Ambiguous("malformed host"),
        },
    };
    let path = req.uri().path();
    let raw = decide_path(table, host, path, req);
    let Some(dots) = dot_segments(path) else {
        return raw;
    };
    let normal = remove_dot_segments(path);
    let same = match (&raw, &decide_path(table, host, &normal, req)) {
        (Decision::Route(a, ..), Decision::Route(b, ..)) => std::ptr::eq(*a, *b),
        (Decision::MethodNotAllowed(a), Decision::MethodNotAllowed(b)) => a == b,
        (Decision::NoRoute, Decision::NoRoute) => true,
        _ => false,
    };
    match raw {
        _ if !same => Decision::Ambiguous("dot segments select another route"),
        Decision::Route(route, spans, _) => Decision::Route(route, spans, dots.dotdot),
        other => other,
    }
}

/// Finds the route for `host` and `path` (raw or without dot segments).
fn decide_path<'t, S, B>(
    table: &'t Table<S>,
    host: Option<&[u8]>,
    path: &str,
    req: &Request<B>,
) -> Decision<'t, S> {
    let (method, headers) = (req.method(), req.headers());
    let mut saw_path = false;
    let mut saw_method = false;
    let found = table.find(host, path, |group, captures| {
        saw_path = true;
        for &id in group {
            let Some(route) = table.routes.get(id) else {
                continue;
            };
            if !route.method_ok(method) {
                continue;
            }
            saw_method = true;
            if route.headers_ok(headers) {
                return ControlFlow::Break((route, spans(route, captures, path)));
            }
        }
        ControlFlow::Continue(())
    });
    match found {
        Some((route, spans)) => Decision::Route(route, spans, false),
        None if saw_path && !saw_method => Decision::MethodNotAllowed(allow(table, host, path)),
        None => Decision::NoRoute,
    }
}

/// The `Allow` value for a 405: every method of the routes whose host and path
/// match, sorted and comma-separated.
fn allow<S>(table: &Table<S>, host: Option<&[u8]>, path: &str) -> Option<HeaderValue> {
    let mut methods: Vec<&Method> = Vec::new();
    table.find(host, path, |group, _| {
        for route in group.iter().filter_map(|&id| table.routes.get(id)) {
            methods.extend(route.methods().unwrap_or_default());
        }
        ControlFlow::<()>::Continue(())
    });
    methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    methods.dedup();
    let list: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    HeaderValue::from_str(&list.join(", ")).ok()
}

/// The byte ranges of the route's parameters in `path`, in template order.
fn spans<S>(route: &Route<S>, captures: Captures<'_, '_, '_>, path: &str) -> Vec<Range<usize>> {
    let (Some(names), Some(params)) = (route.params(), captures) else {
        return Vec::new();
    };
    // matchit's values are sub-slices of `path`: their offsets are where their
    // addresses differ. Anything else (impossible) yields no spans at all.
    let base = path.as_ptr() as usize;
    names
        .iter()
        .map(|name| {
            let value = params.get(&**name)?;
            let start = (value.as_ptr() as usize).checked_sub(base)?;
            let end = start.checked_add(value.len())?;
            path.get(start..end).map(|_| start..end)
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// The request's raw `host[:port]`: from the URI authority (absolute-form,
/// HTTP/2 `:authority`; userinfo dropped), else from the `Host` header; `None`
/// when there is neither. [`host_key`] checks it.
fn request_host<B>(req: &Request<B>) -> Option<&[u8]> {
    match req.uri().authority() {
        Some(authority) => authority.as_str().rsplit('@').next().map(str::as_bytes),
        None => req.headers().get(HOST).map(HeaderValue::as_bytes),
    }
}

/// The URI with the route's path edit applied to the raw path, the query kept;
/// `None` when the path is left alone. `Err` says why the edit is refused: the
/// result starts with `//` (a network-path reference to an upstream that
/// resolves it against a base URL), climbs out of the target's fixed prefix
/// once its dot segments are removed (checked when the raw path has a `..`
/// segment), or is not a valid URI.
fn edit_uri<S>(
    route: &Route<S>,
    uri: &Uri,
    spans: &[Range<usize>],
    dotdot: bool,
) -> Result<Option<Uri>, &'static str> {
    let path = uri.path();
    let query = uri.query();
    let extra = query.map_or(0, |q| q.len() + 1);
    let mut out = match &route.edit {
        PathEdit::None => return Ok(None),
        PathEdit::Strip(prefix) => match strip_at_boundary(path, prefix) {
            None => return Ok(None),
            Some(rest) => {
                let mut out = String::with_capacity(rest.len() + 1 + extra);
                out.push_str(if rest.is_empty() { "/" } else { rest });
                out
            }
        },
        PathEdit::Prefix(to) => {
            let from = &*route.matched.template;
            let mut out = String::with_capacity(to.len() + path.len() + extra);
            if let Some(rest) = path.strip_prefix(from) {
                out.push_str(to);
                out.push_str(rest);
            } else {
                // The prefix matched without its trailing slash (`/v1` for `/v1/`).
                let to = to.strip_suffix('/').unwrap_or(to);
                out.push_str(if to.is_empty() { "/" } else { to });
            }
            out
        }
        PathEdit::Template(parts) => {
            let mut out = String::with_capacity(path.len() + extra + 16);
            for part in parts {
                match part {
                    RewritePart::Literal(s) => out.push_str(s),
                    RewritePart::Param(i) => {
                        let value = spans
                            .get(*i)
                            .and_then(|s| path.get(s.clone()))
                            .ok_or("parameter span out of the path")?;
                        out.push_str(value);
                    }
                }
            }
            out
        }
    };
    if out.starts_with("//") {
        return Err("edited path starts with //");
    }
    // An upstream that removes dot segments reads the edited path resolved: a
    // `.` (or `%2e`) segment may hide a `//` start there (`/.//host/x`).
    if dotdot || crate::ambiguous::dot_segments(&out).is_some() {
        let normal = remove_dot_segments(&out);
        if normal.starts_with("//") {
            return Err("edited path starts with // once its dot segments are removed");
        }
        if dotdot {
            let fixed = fixed_prefix(&route.edit);
            let within = normal.starts_with(fixed) || fixed.strip_suffix('/') == Some(&*normal);
            if !within {
                return Err("edited path climbs out of its target");
            }
        }
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    let invalid = "edited uri is not valid";
    let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(out)).map_err(|_| invalid)?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map(Some).map_err(|_| invalid)
}

/// What an edited path must still start with once its dot segments are
/// removed: `/` after a strip, the new prefix of a prefix rewrite, the literal
/// text before the first parameter of a rewrite template.
fn fixed_prefix(edit: &PathEdit) -> &str {
    match edit {
        PathEdit::None | PathEdit::Strip(_) => "/",
        PathEdit::Prefix(to) => to,
        PathEdit::Template(parts) => match parts.first() {
            Some(RewritePart::Literal(text)) => text,
            _ => "/",
        },
    }
}
