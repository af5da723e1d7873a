//! Shared small types of the Portcullis gateway: the [`Cause`] of every response the
//! gateway makes itself, the error-response shape (R6), and the request extensions
//! that layers hand to each other ([`PeerAddr`], [`LocalAddr`], [`MatchedRoute`],
//! [`Identity`], [`SelectedEndpoint`], [`ServiceName`]).
//!
//! # Example
//!
//! ```
//! use portcullis_core::{Cause, ErrorResponse};
//! use http_body_util::BodyExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let res = ErrorResponse::new(Cause::UpstreamOverloaded)
//!     .request_id("abc-1")
//!     .service("billing")
//!     .retry_after(1)
//!     .build();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["portcullis-error"], "upstream_overloaded");
//! assert_eq!(res.headers()["retry-after"], "1");
//! assert_eq!(res.extensions().get::<Cause>(), Some(&Cause::UpstreamOverloaded));
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(
//!     &body[..],
//!     br#"{"error":"upstream_overloaded","status":503,"request_id":"abc-1","service":"billing"}"#
//! );
//! # Ok(()) }
//! ```
//!
//! # Request and response extensions
//!
//! Layers inside the router learn things the global layers outside it need (the
//! matched route, the service, the endpoint, the upstream's time). They travel
//! back out on the **response**: the router copies [`MatchedRoute`] and
//! [`ServiceName`] into the response extensions, the proxy adds
//! [`SelectedEndpoint`] and [`UpstreamDuration`], and a rejecting layer adds its
//! [`Cause`]. Global layers (access log, metrics) read them there.
//!
//! # Who answered?
//!
//! Every response the gateway produces itself carries a `portcullis-error: <cause>`
//! header, a small JSON body `{"error", "status", "request_id", "service"}` and the
//! [`Cause`] in its response extensions, so that access logs and metrics can tell a
//! gateway fault from a service fault without parsing bodies.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod cause;
mod error_response;
mod extensions;

pub use body::ErrorBody;
pub use cause::Cause;
pub use error_response::{ErrorContext, ErrorResponse, PORTCULLIS_ERROR};
pub use extensions::{
    ClientAddr, CloseConnection, ConnectionSlot, Identity, LocalAddr, MatchedRoute, PeerAddr,
    SelectedEndpoint, ServiceName, Tls, UpstreamDuration,
};
