//! Forwarding headers for a reverse proxy: `X-Forwarded-For`, `-Proto`, `-Host`,
//! `-Port` and RFC 7239 `Forwarded` with trusted proxies ([`ForwardedLayer`]), and
//! `Via` (RFC 9110 §7.6.3, [`ViaLayer`]).
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{body::Body, http::{HeaderMap, Request}, routing::get, Router};
//! use http_body_util::BodyExt;
//! use portcullis_core::PeerAddr;
//! use portcullis_forwarded::{ForwardedLayer, TrustedProxies, ViaLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The handler answers with the forwarding headers it received.
//! async fn echo(headers: HeaderMap) -> String {
//!     ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "via"]
//!         .iter()
//!         .map(|name| {
//!             let value = headers.get(*name).and_then(|v| v.to_str().ok()).unwrap_or("-");
//!             format!("{name}: {value}\n")
//!         })
//!         .collect()
//! }
//!
//! let peer: SocketAddr = "203.0.113.7:50000".parse()?;
//! let trusted = TrustedProxies::parse(["10.0.0.0/8"])?;
//! let app = Router::new().route("/", get(echo)).layer(
//!     ServiceBuilder::new()
//!         // Stands in for the listener, which records the TCP peer; see below for
//!         // how to do it from axum's `ConnectInfo`.
//!         .map_request(move |mut req: Request<Body>| {
//!             req.extensions_mut().insert(PeerAddr(peer));
//!             req
//!         })
//!         .layer(ViaLayer::new("portcullis"))
//!         .layer(ForwardedLayer::new(trusted)),
//! );
//!
//! // 203.0.113.7 is not a trusted proxy: its `X-Forwarded-For` is replaced.
//! let req = Request::get("/")
//!     .header("host", "api.example.com")
//!     .header("x-forwarded-for", "6.6.6.6")
//!     .body(Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.headers()["via"], "1.1 portcullis");
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(
//!     std::str::from_utf8(&body)?,
//!     "x-forwarded-for: 203.0.113.7\n\
//!      x-forwarded-proto: http\n\
//!      x-forwarded-host: api.example.com\n\
//!      x-forwarded-port: 80\n\
//!      via: 1.1 portcullis\n"
//! );
//! # Ok(()) }
//! ```
//!
//! # Setting `PeerAddr` in axum
//!
//! [`Forwarded`] reads the TCP peer from the [`PeerAddr`](portcullis_core::PeerAddr)
//! request extension, which the Portcullis listener sets. In a plain axum app, serve
//! with `into_make_service_with_connect_info::<SocketAddr>()` and copy axum's
//! `ConnectInfo` into it with a middleware placed *outside* the forwarding layer:
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{
//!     body::Body,
//!     extract::{ConnectInfo, Request},
//!     http::HeaderMap,
//!     middleware::{self, Next},
//!     response::Response,
//!     routing::get,
//!     Router,
//! };
//! use http_body_util::BodyExt;
//! use portcullis_core::PeerAddr;
//! use portcullis_forwarded::{ForwardedLayer, TrustedProxies};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async fn peer_addr(ConnectInfo(addr): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
//!     req.extensions_mut().insert(PeerAddr(addr));
//!     next.run(req).await
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(|headers: HeaderMap| async move { format!("{:?}", headers["x-forwarded-for"]) }))
//!     .layer(ForwardedLayer::new(TrustedProxies::none()))
//!     .layer(middleware::from_fn(peer_addr)); // added last, so it runs first
//!
//! // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//! // provides `ConnectInfo`; this test inserts it by hand.
//! let req = Request::get("/")
//!     .extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))))
//!     .body(Body::empty())?;
//! let body = app.oneshot(req).await?.into_body().collect().await?.to_bytes();
//! assert_eq!(&body[..], br#""192.0.2.1""#);
//! # Ok(()) }
//! ```
//!
//! # Forwarding headers
//!
//! [`ForwardedLayer::new`] takes the [`TrustedProxies`], a list of CIDRs. What the
//! upstream receives depends on the TCP peer ("else set" means: set as in the
//! right-hand column):
//!
//! | header | peer is a trusted proxy | any other peer, or no [`PeerAddr`](portcullis_core::PeerAddr) |
//! | --- | --- | --- |
//! | `X-Forwarded-For` | every line joined with `, `, then `, <peer>` | `<peer>` alone; removed when there is no peer |
//! | `X-Forwarded-Proto` | kept if sent, else set | `https` with the [`Tls`](portcullis_core::Tls) extension, else `http` |
//! | `X-Forwarded-Host` | kept if sent, else set | the request's host; removed when it has none |
//! | `X-Forwarded-Port` | kept if sent, else set | the [`LocalAddr`](portcullis_core::LocalAddr) port, else the host's port, else 443 or 80 |
//! | `Forwarded`, option off | passed as sent | removed (it could be spoofed) |
//! | `Forwarded`, option on | one element appended | replaced by one element; removed when there is no peer |
//!
//! The request's host is the URI authority (absolute-form requests, HTTP/2
//! `:authority`, which RFC 9112 §3.2.2 and RFC 9113 §8.3.1 put before `Host`)
//! without any userinfo, else the `Host` header. Peers are written in canonical form:
//! an IPv4-mapped IPv6 peer (`::ffff:192.0.2.1`) as IPv4, IPv6 without brackets in
//! `X-Forwarded-For`. Replacing a header keeps it where the client put it, and
//! removing one keeps the other headers in their order.
//!
//! # RFC 7239 `Forwarded`
//!
//! With [`ForwardedLayer::rfc7239`]`(true)` each hop adds one element,
//! `for=<peer>;proto=<http|https>;host=<host>` (no `host` when the request has none).
//! IPv4 peers are bare (`for=192.0.2.1`); IPv6 peers are quoted and bracketed
//! (`for="[2001:db8::1]"`); the host is quoted, with `"` and `\` escaped, when it is
//! not a token, as when it has a port (`host="example.com:8080"`). The `by`
//! parameter is not sent.
//!
//! # Via
//!
//! [`ViaLayer`] appends `<version> <name>` (version `1.0`, `1.1`, `2` or `3`) to the
//! request's `Via`, with the request's version, and to every response's `Via`, with
//! the response's version: error responses made by inner layers included. An
//! existing `Via` keeps its lines; the element is appended to the last one
//! (`Via: 1.1 cdn, 1.1 portcullis`). The name is an HTTP token or `host[:port]`:
//! [`ViaLayer::new`] takes a `&'static str` and panics on an invalid one, like
//! `HeaderName::from_static`; [`ViaLayer::try_new`] returns a [`ConfigError`] for
//! names from configuration; [`ViaLayer::default`] is `portcullis`.
//!
//! # Client IP
//!
//! [`client_ip`] returns the address to key rate limits and logs on: the rightmost
//! address of `X-Forwarded-For` plus the peer that is not a trusted proxy.
//! [`Forwarded`] puts it in the request extensions as
//! [`ClientAddr`](portcullis_core::ClientAddr) (from the headers as received), for
//! the layers after it.
//!
//! # Ordering
//!
//! - Put [`ForwardedLayer`] *inside* (after) `portcullis-hop`'s hop-by-hop layer:
//!   otherwise a client could send `Connection: X-Forwarded-For` and have the
//!   header the gateway set removed before it reaches the upstream.
//! - The layer that sets [`PeerAddr`](portcullis_core::PeerAddr) must run before it.
//!   Without a peer, the request is treated as coming from an untrusted client with
//!   no address.
//! - Put [`ViaLayer`] *outside* the layers that answer on their own (auth, rate
//!   limit, body limits, the proxy's errors) so that their responses carry `Via`
//!   too. Responses made by layers outside it do not get one.
//!
//! # Limits and defaults
//!
//! - Trusted proxies: none ([`TrustedProxies::none`]); `Forwarded`: off; `Via`
//!   name: `portcullis`.
//! - A request's `X-Forwarded-For` and `Forwarded` grow by one element per hop; their
//!   size stays bounded by the server's header size limit on the way in.
//! - Nothing is parsed from configuration per request; the per-request work is a
//!   few header look-ups and at most one rebuilt header value per header.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod headers;
mod layer;
mod service;
#[cfg(test)]
mod tests;
mod trusted;
mod via;

pub use error::ConfigError;
pub use layer::ForwardedLayer;
pub use service::Forwarded;
pub use trusted::{TrustedProxies, client_ip};
pub use via::{ResponseFuture, Via, ViaLayer};
