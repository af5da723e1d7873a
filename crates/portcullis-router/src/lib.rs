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
//! normalisation (`/a/../b`, `//a` and `%2F` are matched as written).
//!
//! # Matching order
//!
//! The most specific route wins:
//!
//! 1. **Host.** The exact host (`api.example.com`), then wildcards
//!    (`*.example.com`, matching any subdomain depth but not `example.com`),
//!    longest suffix first, then routes without a host. The host comes from the
//!    URI authority when there is one (absolute-form, HTTP/2 `:authority`), else
//!    from the `Host` header; the port and a trailing dot are dropped and case is
//!    ignored.
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
//! If the edited URI is not valid the answer is a 400 `bad_request`; the router
//! never panics on a request.
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
//! - Hosts longer than 255 bytes match only routes without a host.
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
