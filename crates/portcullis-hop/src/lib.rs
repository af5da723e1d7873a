//! Removes hop-by-hop headers (RFC 9110 §7.6.1) in both directions.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{HeaderMap, Request}, routing::get, Router};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use portcullis_hop::HopByHopLayer;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The handler answers with the request header names it saw, and a hop-by-hop header.
//! async fn handler(headers: HeaderMap) -> ([(&'static str, &'static str); 2], String) {
//!     let names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
//!     ([("keep-alive", "timeout=5"), ("x-served-by", "app")], names.join(","))
//! }
//! let app = Router::new().route("/", get(handler)).layer(HopByHopLayer::new());
//!
//! let req = Request::get("/")
//!     .header("connection", "close, X-Secret")
//!     .header("x-secret", "only for the next hop")
//!     .header("x-request-id", "7")
//!     .header("proxy-authorization", "Basic Zm9vOmJhcg==")
//!     .body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! assert!(res.headers().get("keep-alive").is_none());
//! assert_eq!(res.headers()["x-served-by"], "app");
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(&body[..], b"x-request-id");
//! # Ok(()) }
//! ```
//!
//! # What is removed
//!
//! From the request before the inner service is called, and from its response
//! afterwards (1xx responses included):
//!
//! - `Connection`, and every header that any `Connection` header names. Options are
//!   matched in any case, over all `Connection` lines, ignoring whitespace and empty
//!   list elements (`close,,  X-Foo ,` names `x-foo`).
//! - `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`,
//!   `Transfer-Encoding` and `Upgrade`.
//! - Not `Trailer`: it declares the trailer fields of the message, end to end
//!   (RFC 9110 §6.6.2), and hyper sends only declared trailer fields, so removing
//!   it would lose the trailers themselves.
//! - `TE`, except that when a request's `TE` lists `trailers`, exactly
//!   `TE: trailers` is forwarded (gRPC needs it). A response never keeps `TE`.
//!
//! Other headers keep their order: the header map is rebuilt rather than edited
//! with `HeaderMap::remove`, which would move the last header into the gap. A
//! message without hop-by-hop headers is left untouched.
//!
//! # Upgrades
//!
//! A request is a real upgrade request when it is HTTP/1.1, has an `Upgrade` header,
//! and its `Connection` header lists the `upgrade` option; [`is_upgrade_request`]
//! tells. Such a request keeps `Upgrade` as sent and is forwarded with
//! `Connection: upgrade` (only that option; everything else `Connection` named is
//! still removed). Its response keeps `Upgrade` and gets `Connection: upgrade` only
//! when its status is `101 Switching Protocols`. Any other response, and a 101 to a
//! request that was not an upgrade request, loses `Upgrade`. HTTP/2 requests never
//! upgrade this way.
//!
//! # Ordering
//!
//! - Put this layer *inside* (after) the framing guard of `portcullis-body`: the
//!   guard must see `Transfer-Encoding` next to `Content-Length` to refuse a
//!   smuggling attempt, and this layer removes `Transfer-Encoding`.
//! - Put it *outside* (before) the layers that add headers for the upstream, such as
//!   `portcullis-forwarded`: otherwise a client could send
//!   `Connection: X-Forwarded-For` and have this layer delete the header the gateway
//!   just set.
//! - Authentication that reads `Proxy-Authorization` must run before this layer.
//!
//! # Limits and defaults
//!
//! There are no knobs. Per message the layer collects the `Connection` options into
//! one small vector, whose size is bounded by the server's header size limit, and
//! rebuilds the header map only when a hop-by-hop header is present. Bodies are not
//! touched: trailers inside a chunked or HTTP/2 body pass through.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod future;
mod layer;
mod service;
mod strip;
#[cfg(test)]
mod tests;

pub use future::ResponseFuture;
pub use layer::HopByHopLayer;
pub use service::HopByHop;
pub use strip::is_upgrade_request;
