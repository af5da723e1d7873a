//! Route table and matching for the Portcullis gateway (R8): routes match on
//! host, path (exact, prefix, template), method and headers, and each route
//! dispatches to its own tower service.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, extract::Request, http::StatusCode, routing::get};
//! use http_body_util::BodyExt;
//! use portcullis_core::{MatchedRoute, ServiceName};
//! use portcullis_router::{PathParams, RouteSpec, Router};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two services, each a plain axum app that knows nothing about `/v1`.
//! let droplets = axum::Router::new().route(
//!     "/droplets/{id}",
//!     get(|req: Request| async move {
//!         let id = req.extensions().get::<PathParams>().and_then(|p| p.get("id"));
//!         format!("droplet {} at {}", id.unwrap_or("?"), req.uri())
//!     }),
//! );
//! let health = axum::Router::new().route("/healthz", get(|| async { "ok" }));
//!
//! let router = Router::builder()
//!     .route(
//!         RouteSpec::new("droplets", "/v1/droplets/{id}")?
//!             .host("api.example.com")?
//!             .methods(["GET"])?
//!             .service("droplets")
//!             .strip_prefix("/v1")?,
//!         droplets,
//!     )
//!     .route(RouteSpec::new("health", "/healthz")?, health)
//!     .build()
//!     .map_err(|errors| format!("{errors:?}"))?;
//!
//! // Routed: the prefix is stripped and the template travels back out.
//! let req = Request::get("/v1/droplets/7?verbose=1")
//!     .header("host", "API.example.com:8443")
//!     .body(Body::empty())?;
//! let res = router.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! let route = res.extensions().get::<MatchedRoute>().unwrap();
//! assert_eq!(&*route.template, "/v1/droplets/{id}");
//! assert_eq!(res.extensions().get::<ServiceName>(), Some(&ServiceName::new("droplets")));
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(&body[..], b"droplet 7 at /droplets/7?verbose=1");
//!
//! // No route: the gateway's own 404.
//! let req = Request::get("/v1/droplets/7").header("host", "other.example.com").body(Body::empty())?;
//! let res = router.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::NOT_FOUND);
//! assert_eq!(res.headers()["portcullis-error"], "no_route");
//!
//! // Wrong method on a matching path: 405 with `Allow`.
//! let req = Request::delete("/v1/droplets/7").header("host", "api.example.com").body(Body::empty())?;
//! let res = router.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
//! assert_eq!(res.headers()["allow"], "GET");
//! # Ok(()) }
//! ```
//!
//! To serve it from an axum app, mount it as a fallback:
//! `axum::Router::new().fallback_service(router)`.
//!
//! # Path kinds
//!
//! - **Exact**: `/healthz` matches only `/healthz`.
//! - **Prefix**: a path ending in `/`. `/v1/` matches `/v1/…` and `/v1` itself;
//!   `/` matches everything.
//! - **Template**: matchit 0.8 syntax. `/droplets/{id}` captures one non-empty
//!   segment; `/files/{*rest}` captures the non-empty rest of the path (not
//!   `/files/`). Captures are raw, not percent-decoded, and reach the service as
//!   [`PathParams`].
//!
//! Paths are matched on the raw bytes the client sent: no decoding, no
//! normalisation (`/a/../b`, `//a` and `%2F` are matched as written). A path
//! with dot segments must select the same route once they are resolved, see
//! [Ambiguous paths and hosts](#ambiguous-paths-and-hosts).
//!
//! # Matching order
//!
//! The most specific route wins:
//!
//! 1. **Host.** The exact host (`api.example.com`), then wildcards
//!    (`*.example.com`, matching any subdomain depth but not `example.com`),
//!    longest suffix first, then routes without a host. The host comes from the
//!    URI authority when there is one (absolute-form, HTTP/2 `:authority`), else
//!    from the `Host` header; the port and a trailing dot are dropped, case is
//!    ignored and IPv6 literals are compared in canonical form (`[0::1]` is
//!    `[::1]`).
//! 2. **Path**, within one host: the exact path, then the template matchit picks
//!    (static segments beat parameters beat catch-alls), then prefixes, longest
//!    first.
//! 3. **Method and headers**, among routes with the same host and path: routes
//!    with a method set before routes for any method, then routes with more
//!    header predicates before fewer, then configuration order.
//!
//! Candidates are tried in that order and the first whose method and header
//! predicates hold wins. A request that fails every candidate of a more specific
//! host or path falls through to the next: a `GET`-only `/healthz` on
//! `api.example.com` lets a `POST /healthz` reach a catch-all `/` route for any
//! host. Only the single template matchit picks is a candidate: if
//! `/u/me/{what}` matches `/u/me/keys` but refuses the method, `/u/{id}/keys` on
//! the same host is not tried.
//!
//! When no route matches, the answer is a 404 `no_route`; when some route
//! matched the host and path but none of them allows the method, a 405
//! `method_not_allowed` with an `Allow` header listing those routes' methods,
//! sorted (`GET, POST`). Both are the gateway's error response
//! ([`portcullis_core::ErrorResponse`]) with the `Cause` in the response
//! extensions. Header predicates that fail give a 404, not a 405.
//!
//! # Path editing
//!
//! A route may edit the raw path before calling its service; the query string is
//! kept byte for byte, the scheme and authority too.
//!
//! - [`RouteSpec::strip_prefix`]`("/v1")`: `/v1/x` → `/x`, `/v1` → `/`;
//!   `/v10/x` is left alone (segment boundary).
//! - [`RouteSpec::rewrite`] on a template: a target over the captures,
//!   `/internal/droplets/{id}`. On a prefix route: a new prefix that replaces
//!   the matched one (`/v1/` → `/new/`: `/v1/a%2Fb` becomes `/new/a%2Fb`).
//!
//! A `strip_prefix` that could never apply to the route's path (`/v1` on
//! `/api/`) is a [`ConfigError::StripPrefixNotOnPath`]; configured paths, strip
//! prefixes and rewrite targets may not contain `.` or `..` segments.
//!
//! If the edited URI is not valid, starts with `//`, or climbs out of its target
//! (see below), the answer is a 400 `bad_request`; the router never panics on a
//! request.
//!
//! # Ambiguous paths and hosts
//!
//! The router forwards the raw request (R1), but upstreams resolve what they
//! receive: a path that means one thing to the router and another to the
//! upstream would let a request pass one route's filters (say, none) and be
//! served as another's (say, one with authentication). Such requests are
//! refused with a 400 `bad_request` ([`Cause::BadRequest`](portcullis_core::Cause)
//! in the response extensions); whatever is accepted is still forwarded byte
//! for byte.
//!
//! - **Dot segments.** When the path (not the query) has a segment that is `.`
//!   or `..`, with any dot possibly written `%2e`/`%2E`, the router also
//!   matches the path after RFC 3986 §5.2.4 dot-segment removal (decoding only
//!   those dots; `%2F` stays opaque), as nginx matches locations. If that
//!   selects another route, or another outcome (404 instead of a route, 405
//!   instead of 404), the request is refused: with routes `/public/` and
//!   `/admin/`, `/public/../admin/x` and `/public/%2e%2e/admin/x` get a 400.
//!   When both select the same route the raw path is forwarded unchanged
//!   (`//a/../b` through a catch-all `/` reaches the upstream as `//a/../b`).
//! - **Edits that climb out.** When the route edits the path and the raw path
//!   has a `..` segment, the edited path after dot-segment removal must still
//!   start with the target's fixed prefix: `/` for a strip, the new prefix of a
//!   prefix rewrite, the literal text before the first `{` of a rewrite
//!   template (`/static/` for `/static/{rest}`). `/files/a/../../admin` through
//!   `/files/{*rest}` → `/static/{rest}` is refused. It must not start with
//!   `//` either.
//! - **Edits that start with `//`.** An edited path such as `//evil.com/x`
//!   (`strip_prefix("/s")` on `/s//evil.com/x`) reads as a network-path
//!   reference to an upstream that resolves it against a base URL: refused.
//!   Raw paths that were not edited pass as sent.
//! - **Malformed hosts.** The host the router reads (URI authority, else the
//!   `Host` header), on every request, must be a reg-name (letters, digits, `-`,
//!   `.`, `_`; 1 to 255 bytes; IPv4 literals are such names) or a bracketed IPv6
//!   literal, optionally followed by `:` and one to five digits. Anything else
//!   (`api.example.com:@evil.com`, `api.example.com:80:90`, an empty `Host`,
//!   `[::1`) is refused, even when no route names a host, since the `Host` is
//!   forwarded. Userinfo in an absolute-form URI is ignored. A request without
//!   any host (HTTP/1.0) matches only routes without a host.
//!
//! # Extensions
//!
//! On a match the router puts into the **request** extensions
//! [`MatchedRoute`](portcullis_core::MatchedRoute) (name and configured path,
//! e.g. `/droplets/{id}`), [`ServiceName`](portcullis_core::ServiceName) when
//! the route names one, and [`PathParams`] when the template has parameters. It
//! copies `MatchedRoute` and `ServiceName` into the **response** extensions
//! (unless the service already set them) so that access logs and metrics outside
//! the router can read them.
//!
//! # Ordering
//!
//! The router sits after the global layers (request id, access log, metrics,
//! framing guard, hop-by-hop, forwarding headers) and before the per-route
//! layers, which wrap each route's service. Global layers see the matched route
//! only on the response.
//!
//! # Limits and defaults
//!
//! - A route matches every host, method and header set unless told otherwise.
//! - Hosts longer than 255 bytes are malformed (400).
//! - The common path costs one byte scan for `.` and `%`; only paths with dot
//!   segments are matched twice, and only they allocate for it.
//! - Methods are compared exactly: a `GET` route does not take `HEAD` unless listed.
//! - The router is always ready; each call clones the route's service (make it
//!   cheap to clone, e.g. an `axum::Router` or a `BoxCloneSyncService`) and
//!   waits for its readiness inside the response future.
//! - Templates on one host must not be ambiguous to matchit: `/a/{id}` and
//!   `/a/{name}`, or `/a/{id}` and `/a/{*rest}`, are a [`ConfigError::Conflict`];
//!   routes that differ only by method or headers share one template string.
//! - Everything is checked when the router is built ([`ConfigError`], all
//!   mistakes at once); matching allocates only the extensions and, for a path
//!   edit, the new URI.
//!
//! # Feature flags
//!
//! None.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod ambiguous;
mod body;
mod error;
mod future;
mod params;
mod service;
mod spec;
mod table;

#[cfg(test)]
mod tests;

pub use body::ResponseBody;
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use params::PathParams;
pub use service::{Router, RouterBuilder};
pub use spec::{HeaderPredicate, RouteSpec};
