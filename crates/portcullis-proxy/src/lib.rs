//! A streaming, bounded HTTP reverse-proxy [`tower_service::Service`] over hyper.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use portcullis_proxy::{Proxy, ProxyClient, ProxyConfig, Upstream};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An origin on a free port.
//! let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let origin_url = format!("http://{}", origin.local_addr()?);
//! tokio::spawn(async move {
//!     let app = Router::new().route("/hello", get(|| async { "hi from origin" }));
//!     axum::serve(origin, app).await
//! });
//!
//! let client = ProxyClient::new(ProxyConfig::default()).map_err(|e| format!("{e:?}"))?;
//! let proxy = Proxy::new(client, vec![Upstream::parse(&origin_url)?]);
//! let app = Router::new().fallback_service(proxy);
//!
//! let req = Request::get("/hello").header("host", "example.com").body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! let body = axum::body::to_bytes(res.into_body(), 1024).await?;
//! assert_eq!(&body[..], b"hi from origin");
//! # Ok(()) }
//! ```
//!
//! # What it guarantees
//!
//! - **Faithful forwarding (R1).** Method, path and query go upstream byte for byte
//!   (`//a/../b`, `%2F`, `;x=1` arrive as sent); absolute-form targets are sent in
//!   origin form with the path kept; `Host` is the client's unless
//!   [`ProxyConfig::set_upstream_host`] is set. Bodies stream both ways with
//!   back-pressure; trailers pass; redirects go back to the client; nothing is
//!   decompressed.
//! - **Bounded.** Connect, response-header and whole-request timeouts; a pool whose
//!   idle timeout really fires; a maximum of idle connections per upstream; a cap on
//!   open connections per upstream ([`ProxyConfig::max_connections_per_upstream`])
//!   beyond which requests wait [`ProxyConfig::connection_wait_timeout`] and then get
//!   503 `upstream_overloaded` with `Retry-After`; optionally a cap on requests in
//!   flight per upstream ([`ProxyConfig::max_requests_per_upstream`]) past which
//!   they get that answer at once.
//! - **Clean pool.** A connection whose response body was not read to its end, or
//!   that saw an error, is closed rather than returned to the pool (hyper's rule).
//!   Dropping the response future (client gone) cancels the upstream request.
//! - **Errors are specific (R6).** 502 `upstream_unreachable` (refused, reset,
//!   closed without answer), 502 `upstream_invalid_response` (not HTTP, bad status
//!   line, conflicting lengths), 503 `upstream_overloaded`, 504 `upstream_timeout`;
//!   each with the `portcullis-error` header, the JSON body, and the
//!   [`Cause`](portcullis_core::Cause) plus the
//!   [`SelectedEndpoint`](portcullis_core::SelectedEndpoint) in the response
//!   extensions. An upstream that dies mid-body makes the response body fail, so
//!   the server aborts the client's response instead of ending it cleanly.
//! - **Retries only where safe (R13).** A request without a body whose upstream
//!   could not be connected to goes to the next pick; a route's [`RetryPolicy`]
//!   ([`Proxy::retry`]) adds 5xx, timeouts and resets for idempotent methods
//!   without a body. Never after response bytes reached the client, never with a
//!   body, and within a retry budget (which connect failures, no work done
//!   upstream, do not spend).
//! - **Upgrades (R15).** A request that still carries `Upgrade` (put a hop-by-hop
//!   layer in front: it keeps `Upgrade` only on real upgrades) is tunnelled as raw
//!   bytes once the upstream answered 101; the server does not read past the
//!   upgrade request until then. The tunnel closes after
//!   [`ProxyConfig::tunnel_idle_timeout`] without traffic.
//!
//! # Ordering
//!
//! The proxy is the innermost service. Put hop-by-hop removal, forwarding headers
//! and `Via` in front of it; it does not add them itself. The request body is boxed
//! once so that every route shares one connection pool.
//!
//! # Limits and defaults
//!
//! See [`ProxyConfig`]: connect 5s, response headers 60s, whole request off, pool
//! idle 90s, 256 idle and 1024 open connections per upstream, 1s wait for a slot,
//! tunnel idle 300s.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod balance;
mod body;
mod caps;
mod config;
mod connector;
pub mod duration_str;
mod error;
mod retry;
mod service;
mod tunnel;

pub use balance::{Balance, Outcome, Picked};
pub use body::ProxyBody;
pub use config::ProxyConfig;
pub use error::{BoxError, ConfigError, UpstreamOverloaded, UpstreamTimedOut, classify};
pub use retry::{MAX_RETRIES, RetryBudget, RetryOn, RetryPolicy};
pub use service::{Proxy, ProxyClient, ResponseFuture, UPSTREAM_RETRIES_TOTAL, Upstream};
