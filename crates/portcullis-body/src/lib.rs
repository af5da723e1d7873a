//! Request framing guard, length-required and streaming body limits as tower
//! layers (R4, R5): no request smuggling, no oversize bodies.
//!
//! # Example
//!
//! ```
//! use axum::{body::{Body, Bytes}, http::Request, routing::post, Router};
//! use http_body_util::BodyExt;
//! use portcullis_body::{BodyLimitLayer, FramingGuardLayer, LengthRequiredLayer};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/upload", post(|body: Bytes| async move { format!("got {}", body.len()) }))
//!     .layer(BodyLimitLayer::new(8))
//!     .layer(LengthRequiredLayer::new())
//!     .layer(FramingGuardLayer::new()); // outermost: runs first
//!
//! let ok = Request::post("/upload")
//!     .header("host", "api.example.com")
//!     .header("content-length", "5")
//!     .body(Body::from("hello"))?;
//! let res = app.clone().oneshot(ok).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "got 5");
//!
//! let big = Request::post("/upload")
//!     .header("host", "api.example.com")
//!     .header("content-length", "9")
//!     .body(Body::from("123456789"))?;
//! let res = app.clone().oneshot(big).await?;
//! assert_eq!(res.status(), 413);
//! assert_eq!(res.headers()["portcullis-error"], "body_too_large");
//!
//! let smuggle = Request::post("/upload")
//!     .header("host", "api.example.com")
//!     .header("content-length", "5")
//!     .header("transfer-encoding", "chunked")
//!     .body(Body::from("hello"))?;
//! let res = app.oneshot(smuggle).await?;
//! assert_eq!(res.status(), 400);
//! assert_eq!(res.headers()["portcullis-error"], "bad_framing");
//! assert_eq!(res.headers()["connection"], "close");
//! # Ok(()) }
//! ```
//!
//! Every rejection is a response built by `portcullis-core` (R6): the status, a
//! `portcullis-error: <cause>` header, a JSON body, the
//! [`Cause`](portcullis_core::Cause) in the response extensions, and
//! `Connection: close` for 400 and 413. Services never return `Err` for them.
//!
//! # Framing guard
//!
//! [`FramingGuardLayer`] answers 400 `bad_request` to a request with
//! - no `Host` on HTTP/1.1 (HTTP/2 has `:authority`; HTTP/1.0 needs none),
//! - more than one `Host`,
//! - a control byte (0x00-0x1F except HTAB, 0x7F) in a header value;
//!
//! and 400 `bad_framing` to a request with
//! - `Content-Length` together with `Transfer-Encoding`,
//! - more than one `Content-Length` value (two lines or a comma list), **even if
//!   equal**: RFC 9110 §8.6 lets a recipient fold equal values, but peers that fold
//!   and peers that take the first or last value disagree as soon as a value is
//!   rewritten on the way, and no honest client sends two,
//! - a `Content-Length` that is not 1 to 19 ASCII digits,
//! - a `Transfer-Encoding` other than exactly one `chunked` (any case):
//!   `chunked, chunked`, `gzip, chunked` and two lines are refused; the gateway
//!   decodes no other coding, and passing one on would let the upstream frame the
//!   body differently,
//! - `Transfer-Encoding` on HTTP/1.0 or on HTTP/2,
//! - a [`RawHeadVerdict::Bad`] in its extensions (the verdict's cause is used),
//!   see [raw request heads](#raw-request-heads).
//!
//! # Length required
//!
//! [`LengthRequiredLayer`] answers 411 `length_required` when the request has a
//! `Transfer-Encoding` header, or has no `Content-Length` while its body is
//! neither at its end ([`Body::is_end_stream`](http_body::Body::is_end_stream))
//! nor of known exact size ([`SizeHint::exact`](http_body::SizeHint::exact); hyper
//! sends such a body upstream with a `Content-Length`). A `GET` without a body
//! passes. Use it on routes whose upstream cannot take chunked bodies.
//!
//! # Body limit
//!
//! [`BodyLimitLayer`] answers 413 `body_too_large` at once, without calling the
//! inner service, when `Content-Length` (or the body's size hint) is over the
//! limit. Otherwise it hands the inner service a [`Limited`] body that counts
//! bytes: the data frame that would cross the limit is never passed on; the body
//! yields a boxed [`LengthLimitError`] instead and marks the request. When the
//! inner service's response, or its `Err`, comes back after that mark, it is
//! dropped and the client gets 413. A response that came back before the limit
//! was hit passes unchanged (the body error then reaches whoever still reads it).
//!
//! The ordering trap: this only works if the inner service *surfaces* body
//! errors. A handler that buffers the body fails and answers; a reverse proxy
//! aborts its upstream request (hyper's client stops sending and resets the
//! connection), so the upstream never sees a complete oversize request. An inner
//! service that swallows the error and carries on would have sent a truncated
//! body as if complete; don't put one behind this layer.
//!
//! # Raw request heads
//!
//! hyper normalises framing before any layer runs: with `Content-Length` and
//! `Transfer-Encoding` it drops `Content-Length`, and it trims trailing
//! whitespace, so `Transfer-Encoding: chunked\t` reads as `chunked`. A
//! [`HeadInspector`] per HTTP/1 connection sees the raw bytes first; the listener
//! feeds it every byte it reads, before hyper does, takes one [`RawHeadVerdict`]
//! per request with [`HeadInspector::next_verdict`] and inserts it into that
//! request's extensions, where the framing guard finds it.
//!
//! ```
//! use portcullis_body::{HeadInspector, RawHeadVerdict};
//! use portcullis_core::Cause;
//!
//! let mut inspector = HeadInspector::new(64 * 1024);
//! inspector.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
//! inspector.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n");
//! assert_eq!(inspector.next_verdict(), Some(RawHeadVerdict::Ok));
//! assert_eq!(
//!     inspector.next_verdict(),
//!     Some(RawHeadVerdict::Bad {
//!         cause: Cause::BadFraming,
//!         reason: "transfer-encoding other than chunked",
//!     })
//! );
//! assert!(inspector.is_passthrough()); // the gateway answers 400 and closes
//! ```
//!
//! On the raw head the inspector also refuses (400 `bad_request`) header lines
//! without a colon or with whitespace before it, obsolete line folding, bare CRs
//! and control bytes; and (400 `bad_framing`) a `Content-Length` whose raw value,
//! without leading SP/HTAB and trailing SP, is not 1 to 19 digits (a trailing
//! HTAB is refused), a `Transfer-Encoding` whose raw value, without leading
//! whitespace, is not exactly `chunked` (no trailing whitespace of any kind), two
//! of either header, both together, and `Transfer-Encoding` on HTTP/1.0.
//!
//! It follows bodies the way hyper does (Content-Length, chunked with extensions
//! and trailers), so a head inside a body is never read as a head. It stops
//! reporting (*passthrough*) after an HTTP/2 preface, after the verdict of an
//! `Upgrade` or `CONNECT` request (tunnel bytes follow), after a bad head, and on
//! a malformed chunked body (hyper rejects it itself). Requests that arrive after
//! that carry no verdict; the guard's own checks still apply to them.
//!
//! # Ordering
//!
//! - Put [`FramingGuardLayer`] early among the global layers, before hop-by-hop
//!   header removal (which deletes `Transfer-Encoding` and would hide it) and
//!   before anything that forwards or buffers the body.
//! - [`LengthRequiredLayer`] and [`BodyLimitLayer`] are route layers, after the
//!   router. After hop-by-hop removal `Transfer-Encoding` is gone, so
//!   `LengthRequired` judges the body itself; that is why it does not rely on the
//!   header alone.
//! - [`BodyLimitLayer`] must wrap the service that reads the body (handler or
//!   proxy) and nothing that swallows body errors may sit between them.
//!
//! # Limits and defaults
//!
//! | knob | default |
//! | --- | --- |
//! | [`BodyLimitLayer::new`] `max_bytes` | none: chosen per route (the gateway's config has the default) |
//! | [`HeadInspector::new`] `max_head_bytes` | none: use the HTTP/1 server's header limit |
//! | verdicts waiting per connection | unbounded count (run-length: `Ok` verdicts are a counter), at most one `Bad` |
//!
//! Memory per request is constant: bodies are never buffered, only counted. The
//! inspector buffers only the current head.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod error;
mod framing;
mod future;
mod length;
mod limit;
mod raw;
mod timeout;

pub use body::{Limited, ResponseBody};
pub use error::LengthLimitError;
pub use framing::{FramingGuard, FramingGuardLayer};
pub use future::ResponseFuture;
pub use length::{LengthRequired, LengthRequiredLayer};
pub use limit::{BodyLimit, BodyLimitLayer};
pub use raw::{HeadInspector, RawHeadVerdict};
pub use timeout::{BodyTimedOut, BodyTimeout, BodyTimeoutFuture, BodyTimeoutLayer, TimedBody};
