//! Prometheus metrics (R14) for tower and axum, on the `metrics` facade: requests
//! by service, route template, method and status class, gateway and upstream
//! latency, requests in flight, upstream errors and rejections by cause.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::Request, response::Response, routing::get, Router};
//! use http_body_util::BodyExt;
//! use portcullis_core::{MatchedRoute, ServiceName};
//! use portcullis_metrics::{InFlightLayer, MetricsLayer};
//! use tower::{util::MapResponseLayer, ServiceExt};
//! # #[cfg(not(feature = "exporter"))] fn main() {}
//! # #[cfg(feature = "exporter")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In the gateway the router puts these on the response; here a route layer does.
//! let label = MapResponseLayer::new(|mut res: Response| {
//!     res.extensions_mut().insert(MatchedRoute {
//!         name: "droplets".into(),
//!         template: "/droplets/{id}".into(),
//!     });
//!     res.extensions_mut().insert(ServiceName::new("droplets"));
//!     res
//! });
//! let app = Router::new()
//!     .route("/droplets/{id}", get(|| async { "a droplet" }))
//!     .route_layer(InFlightLayer::new())
//!     .route_layer(label)
//!     .layer(MetricsLayer::new());
//!
//! // `Exporter::install()` sets the global recorder (feature `exporter`); a local one
//! // keeps this example apart.
//! let (exporter, recorder) = portcullis_metrics::Exporter::build_local()?;
//! let _recorder = metrics::set_default_local_recorder(&recorder);
//! for path in ["/droplets/1", "/droplets/2", "/nowhere"] {
//!     let res = app.clone().oneshot(Request::get(path).body(Body::empty())?).await?;
//!     res.into_body().collect().await?; // the request is recorded at the end of its body
//! }
//!
//! let text = exporter.render();
//! assert!(text.contains(
//!     r#"portcullis_http_requests_total{service="droplets",route="/droplets/{id}",method="GET",status_class="2xx"} 2"#
//! ));
//! assert!(text.contains(
//!     r#"portcullis_http_requests_total{service="",route="unmatched",method="GET",status_class="4xx"} 1"#
//! ));
//! assert!(text.contains(r#"portcullis_http_requests_in_flight{service=""} 0"#));
//! # Ok(()) }
//! ```
//!
//! # What is recorded
//!
//! [`MetricsLayer`] records, for every request:
//!
//! | metric | labels | when |
//! | --- | --- | --- |
//! | [`HTTP_REQUESTS_TOTAL`] (counter) | `service`, `route`, `method`, `status_class` | end of the response body |
//! | [`HTTP_REQUEST_DURATION_SECONDS`] (histogram) | the same | end of the response body |
//! | [`UPSTREAM_REQUEST_DURATION_SECONDS`] (histogram) | `service` | response head, when it has an [`UpstreamDuration`](portcullis_core::UpstreamDuration) |
//! | [`UPSTREAM_ERRORS_TOTAL`] (counter) | `service`, `cause` | response head, when its [`Cause`](portcullis_core::Cause) is an upstream one |
//! | [`HTTP_REJECTIONS_TOTAL`] (counter) | `route`, `cause` | response head, when its `Cause` is any other |
//!
//! The request counter and duration are recorded together, once, when the
//! response body ends (its last frame, an error, or the end of the stream) or
//! when it is dropped unfinished (the client went away): the duration runs from
//! the call to the end of the body, so slow downloads count. A long stream is
//! counted when it ends; [`InFlightLayer`] shows it meanwhile. A request whose
//! response future is dropped before the response head is not counted. When the
//! inner service fails with an `Err`, the request is counted at once with
//! `status_class="5xx"`, `route="unmatched"`, `service=""`, and
//! [`HTTP_REJECTIONS_TOTAL`] counts it with `cause="internal"`.
//!
//! [`InFlightLayer`] keeps [`HTTP_REQUESTS_IN_FLIGHT`]`{service}`: up by one at
//! the call, down by one exactly once, when the response body ends or is
//! dropped, or when the response future fails or is dropped first.
//!
//! # Labels
//!
//! Label values never come from raw request data, so the number of series is
//! bounded by the configuration:
//!
//! - `route` is the [`MatchedRoute`](portcullis_core::MatchedRoute) template in
//!   the **response** extensions (`/droplets/{id}`), or `unmatched`.
//! - `service` is the [`ServiceName`](portcullis_core::ServiceName) in the response
//!   extensions ([`InFlightLayer`]: the request extensions), or empty.
//! - `method` is a standard method's name (`GET` … `PATCH`), or `other`.
//! - `status_class` is `1xx` … `5xx` (`other` for the non-standard 600–999).
//! - `cause` is [`Cause::as_str`](portcullis_core::Cause::as_str), or `internal`.
//!
//! Route and service names are shared with the router (`Arc<str>`), not copied.
//!
//! # Ordering
//!
//! - [`MetricsLayer`] is global: put it outside the router, so that it sees every
//!   request, including those no route matched, and reads the route, service,
//!   upstream time and cause that the layers inside put on the response. Put it
//!   inside the request-id and access-log layers and outside the framing guard,
//!   so that requests the guard refuses are counted too.
//! - [`InFlightLayer`] goes inside the router (a route layer), where the request
//!   carries its `ServiceName`.
//!
//! # Limits and defaults
//!
//! Neither layer buffers anything; bodies stream through unchanged (frames,
//! trailers, size hint, end of stream). Both record to the current `metrics`
//! recorder: without one, nothing is recorded.
//!
//! To keep the hot path short, each layer caches its metric handles by label set,
//! comparing the route and service strings by identity (the router's `Arc<str>`),
//! so a request neither builds nor hashes label strings: a hit takes a read lock
//! only, a new label set the write lock once. A [`MetricsLayer`] cache holds up to
//! 16,384 label sets ([`MetricsLayer::cache_capacity`]): services × routes × 10
//! methods × 6 status classes, so 50 routes of 5 services fit. Past it, a new label
//! set evicts a sixteenth of the cache, never all of it; evicted label sets are
//! still counted, their handles re-registered when seen again. A config reload
//! brings new `Arc`s, hence new entries. Cached handles stay bound to the recorder
//! that was current when a label set was first seen: install the recorder before
//! serving, and build new layers to switch recorders.
//!
//! [`describe`] registers the help text and unit of every metric, including those
//! other crates emit ([`AUTH_DECISIONS_TOTAL`], [`RATELIMIT_DECISIONS_TOTAL`],
//! [`ENDPOINT_HEALTHY`]).
//!
//! # Feature flags
//!
#![cfg_attr(
    feature = "exporter",
    doc = "- `exporter` (off by default): [`Exporter`], a Prometheus recorder with buckets for \
           every `_seconds` histogram ([`SECONDS_BUCKETS`]), text rendering for `/metrics`, \
           and a periodic upkeep task."
)]
#![cfg_attr(
    not(feature = "exporter"),
    doc = "- `exporter` (off by default): `Exporter`, a Prometheus recorder with buckets for \
           every `_seconds` histogram (`SECONDS_BUCKETS`), text rendering for `/metrics`, \
           and a periodic upkeep task."
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod cache;
#[cfg(feature = "exporter")]
mod exporter;
mod future;
mod labels;
mod layer;
mod metrics;
mod record;
mod service;
#[cfg(test)]
mod tests;
mod timing;

pub use crate::body::{InFlightBody, ResponseBody};
#[cfg(feature = "exporter")]
pub use crate::exporter::{Exporter, ExporterError, ExporterRecorder, SECONDS_BUCKETS};
pub use crate::future::{InFlightFuture, ResponseFuture};
pub use crate::layer::{InFlightLayer, MetricsLayer};
pub use crate::metrics::{
    AUTH_DECISIONS_TOTAL, ENDPOINT_HEALTHY, HTTP_REJECTIONS_TOTAL, HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_IN_FLIGHT, HTTP_REQUESTS_TOTAL, RATELIMIT_DECISIONS_TOTAL, UPSTREAM_ERRORS_TOTAL,
    UPSTREAM_REQUEST_DURATION_SECONDS, UPSTREAM_RETRIES_TOTAL, describe,
};
pub use crate::service::{InFlight, Metrics};
pub use crate::timing::{SERVER_TIMING, ServerTiming, ServerTimingFuture, ServerTimingLayer};
