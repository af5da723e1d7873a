//! One structured access line per request, with redaction, and the `x-request-id`
//! header (R7).
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{HeaderMap, Request}, routing::get, Router};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use portcullis_accesslog::{AccessLogLayer, RequestIdLayer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The handler answers with the request id it saw.
//! async fn handler(headers: HeaderMap) -> String {
//!     headers["x-request-id"].to_str().unwrap_or_default().to_owned()
//! }
//! let access_log = AccessLogLayer::new()
//!     .redact_query_params(["api_key"])?       // ?api_key=[redacted]
//!     .redact_headers(["x-api-key"])?          // on top of Authorization, Cookie, …
//!     .log_request_headers(["x-tenant", "x-api-key"])?;
//! let app = Router::new()
//!     .route("/droplets/{id}", get(handler))
//!     .layer(access_log)
//!     .layer(RequestIdLayer::new()); // outermost: the access log sees the id
//!
//! // A valid client id is kept, on the request and on the response.
//! let req = Request::get("/droplets/7?api_key=s3cret").header("x-request-id", "abc-1");
//! let res = app.clone().oneshot(req.body(Body::empty())?).await?;
//! assert_eq!(res.headers()["x-request-id"], "abc-1");
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "abc-1");
//!
//! // An invalid one is replaced by a UUID v7, which the service sees too.
//! let req = Request::get("/droplets/7").header("x-request-id", "not valid!");
//! let res = app.oneshot(req.body(Body::empty())?).await?;
//! let id = res.headers()["x-request-id"].to_str()?.to_owned();
//! assert_eq!(id.len(), 36);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), id);
//! # Ok(()) }
//! ```
//!
//! With a JSON subscriber (`tracing_subscriber::fmt().json()`), the first request
//! gives one line such as:
//!
//! ```text
//! {"timestamp":"…","level":"INFO","fields":{"message":"request","request_id":"abc-1",
//!  "peer_addr":"192.0.2.7:51234","method":"GET","path":"/droplets/7?api_key=[redacted]",
//!  "route":"/droplets/{id}","route_name":"droplets","service":"compute",
//!  "endpoint":"10.0.0.5:8080","status":200,"cause":"","fault":"","bytes_in":0,
//!  "bytes_out":5,"duration_ms":1.92,"upstream_ms":1.41,"user_agent":"curl/8.5.0",
//!  "http_version":"HTTP/1.1","headers":"{\"x-tenant\":\"acme\",\"x-api-key\":\"[redacted]\"}"},
//!  "target":"portcullis::access"}
//! ```
//!
//! # Request ids
//!
//! [`RequestIdLayer::new`] keeps the client's `x-request-id` when there is exactly
//! one and it is valid ([`is_valid_request_id`]: 1 to 128 bytes of
//! `A-Z a-z 0-9 . _ : -`). Otherwise, and always with
//! [`RequestIdLayer::always_generate`], every `x-request-id` the client sent is
//! replaced by a new UUID v7 (time-ordered; hyphenated, lower case; its random bits
//! come from a fast per-thread generator seeded from the operating system, so ids
//! are unique but not secret). The id is set
//! on the request, so the upstream gets it and `ErrorResponse::for_request` of
//! `portcullis-core` echoes it, and on the response, replacing any `x-request-id`
//! the inner service or upstream set. The header is the only source of truth: no
//! extension is added.
//!
//! # The access line
//!
//! [`AccessLogLayer`] writes one event per request at `INFO`, target
//! `portcullis::access`, message `request`. Every field is written on every line
//! except the four marked *optional*, which are left out when they do not apply:
//!
//! | field | value |
//! | --- | --- |
//! | `request_id` | the request's `x-request-id` header as the layer got it, else `""` |
//! | `peer_addr` | the [`PeerAddr`](portcullis_core::PeerAddr) request extension, else `""` |
//! | `method` | the request method |
//! | `path` | the request target (path and query) as received, byte for byte, with redacted query values |
//! | `route` | [`MatchedRoute`](portcullis_core::MatchedRoute)`.template` from the **response** extensions, else `unmatched` |
//! | `route_name` | `MatchedRoute.name`, else `""` |
//! | `service` | [`ServiceName`](portcullis_core::ServiceName) from the response extensions, else `""` |
//! | `endpoint` | [`SelectedEndpoint`](portcullis_core::SelectedEndpoint)`.id` from the response extensions, else `""` |
//! | `status` | the response status; `0` when there is no response |
//! | `cause` | the [`Cause`](portcullis_core::Cause) in the response extensions (`as_str()`), else `""` |
//! | `fault` | from the cause: `upstream` ([`Cause::is_upstream`](portcullis_core::Cause::is_upstream)), `client` (other 4xx causes), `gateway` (the rest, and a service `Err`); else `""` |
//! | `bytes_in` | request body bytes the inner service actually read (data frames) |
//! | `bytes_out` | response body bytes sent (data frames) |
//! | `duration_ms` | from the call to the end of the response body (f64, [`tokio::time::Instant`]) |
//! | `upstream_ms` | *optional*: [`UpstreamDuration`](portcullis_core::UpstreamDuration) from the response extensions (f64); left out when absent |
//! | `user_agent` | the `User-Agent` header, else `""` |
//! | `http_version` | `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`, … |
//! | `headers` | *optional*: the configured request headers as a JSON object text, see below; left out when none are configured |
//! | `aborted` | *optional*: `true` when the response was not sent to its end |
//! | `error` | *optional*: the error of the inner service or of the response body |
//!
//! **Was it the proxy or the service?** A `cause` means the gateway answered itself
//! (the response also carries `portcullis-error: <cause>`), and `fault` says whose
//! fault that was. An empty `cause` with a 5xx `status` means the *service* answered
//! 5xx and the gateway only forwarded it.
//!
//! The `headers` field holds the request headers named with
//! [`AccessLogLayer::log_request_headers`], in that order, as one JSON object text
//! (`{"x-tenant":"acme","authorization":"[redacted]"}`, so `jq '.fields.headers |
//! fromjson'` reads it). Repeated headers are joined with `, `; absent ones are left
//! out.
//!
//! # When the line is written
//!
//! Exactly once per request:
//!
//! - when the response body ends (its last frame is read, or `is_end_stream` says
//!   so; an empty body that hyper never polls counts as ended when dropped);
//! - when the response body is dropped before its end: `aborted = true` (not for
//!   responses that have no body on the wire: `HEAD`, 1xx, 204, 304);
//! - when the response body fails: `aborted = true` and `error`;
//! - when the inner service returns `Err`: `status = 0`, `fault = "gateway"`,
//!   `error`;
//! - when the response future is dropped before the response head (the client went
//!   away): `status = 0`, `aborted = true`.
//!
//! `bytes_in` is read when the line is written: request body bytes read after that
//! (a service that answers early and keeps reading) are not counted.
//!
//! # Redaction
//!
//! Bodies are never logged. The values of `Authorization`, `Cookie`, `Set-Cookie`,
//! `Proxy-Authorization` and of the headers given to
//! [`AccessLogLayer::redact_headers`] are always written as `[redacted]` (and never
//! even copied). The values of the query parameters given to
//! [`AccessLogLayer::redact_query_params`] are replaced by `[redacted]` in `path`,
//! on the raw bytes, keeping everything else in order: `?api_key=abc&x=1` gives
//! `?api_key=[redacted]&x=1`. Names are case-sensitive and match as sent or
//! percent-decoded (`api%5Fkey` is `api_key`). Redacting `user-agent` writes
//! `user_agent` as `[redacted]`.
//!
//! The service also marks those headers' values as sensitive
//! ([`http::HeaderValue::set_sensitive`]) on the request, and `Set-Cookie` on the
//! response, whether or not lines are written, so that `Debug` output hides them
//! and HTTP/2 never indexes them.
//!
//! All values that come from the client are written with `%` through a bounded,
//! escaping `Display`: control characters (and bidirectional overrides) appear as
//! `\u{1b}`, a backslash as `\\`, bytes that are not UTF-8 as `\xff`, and a value
//! cut at its limit ends with `…`. Nothing panics on odd bytes.
//!
//! # Ordering
//!
//! - Put [`RequestIdLayer`] outside [`AccessLogLayer`]: the line logs the
//!   request's `x-request-id` header as the access log got it.
//! - Put both outside the router and the proxy: the route, service, endpoint,
//!   upstream time and cause are read from the *response* extensions that the
//!   layers inside set, and `duration_ms` should cover them.
//! - Whatever sets [`PeerAddr`](portcullis_core::PeerAddr) (the listener) must run
//!   before the access log.
//! - The inner service sees the request body as [`RequestBody`], and the response
//!   body becomes [`ResponseBody`]; both pass frames, trailers, `size_hint` and
//!   `is_end_stream` through unchanged, so hyper still sends `Content-Length`.
//!
//! # Cost
//!
//! The service first asks `tracing` whether an `INFO` event on
//! `portcullis::access` is wanted (a cached callsite interest). When it is not, or
//! the layer is [disabled](AccessLogLayer::disabled), nothing is captured, counted
//! or formatted and nothing is allocated; only sensitive headers are marked. When
//! it is, the request's parts are captured in one allocation (cheap `Bytes` clones)
//! and the fields are formatted lazily, by the subscriber, straight into its
//! writer. A filter that decides on event *fields* rather than on target and level
//! cannot be honoured by that first check: filter access lines by target.
//!
//! # Limits and defaults
//!
//! | what | limit |
//! | --- | --- |
//! | `path` | 2048 bytes of the request target, then `…` |
//! | `user_agent` | 256 bytes, then `…` |
//! | `request_id` | 200 bytes, then `…` (128 after [`RequestIdLayer`]) |
//! | `method` | 64 bytes |
//! | `error` | 512 bytes |
//! | `headers` | at most 32 names; 256 bytes and 8 values per name |
//! | `redact_headers`, `redact_query_params` | at most 64 each; parameter names 1 to 128 bytes |
//!
//! Defaults ([`AccessLogConfig`]): enabled, no extra redacted headers, no redacted
//! query parameters, no `headers` field.
//!
//! # Feature flags
//!
//! None.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod display;
mod error;
mod future;
mod layer;
mod record;
mod request_id;
mod service;
#[cfg(test)]
mod tests;

pub use body::{RequestBody, ResponseBody};
pub use config::AccessLogConfig;
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use layer::AccessLogLayer;
pub use request_id::{
    RequestId, RequestIdFuture, RequestIdLayer, X_REQUEST_ID, is_valid_request_id,
};
pub use service::AccessLog;
