//! Metric names (R14) and [`describe`]: one place documents every metric the
//! gateway exports, including those other crates emit.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Counter of requests answered, by `{service, route, method, status_class}`.
///
/// Emitted by [`MetricsLayer`](crate::MetricsLayer) when the response body ends
/// or is dropped.
pub const HTTP_REQUESTS_TOTAL: &str = "portcullis_http_requests_total";

/// Histogram of request durations in seconds, from the call to the end of the
/// response body, by `{service, route, method, status_class}`.
///
/// Emitted by [`MetricsLayer`](crate::MetricsLayer).
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "portcullis_http_request_duration_seconds";

/// Gauge of requests in flight, by `{service}`.
///
/// Emitted by [`InFlightLayer`](crate::InFlightLayer).
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "portcullis_http_requests_in_flight";

/// Counter of responses the gateway made itself for a reason other than the
/// upstream (`no_route`, `bad_credentials`, `body_too_large`, …, and `internal`
/// when the inner service failed), by `{route, cause}`.
///
/// Emitted by [`MetricsLayer`](crate::MetricsLayer).
pub const HTTP_REJECTIONS_TOTAL: &str = "portcullis_http_rejections_total";

/// Histogram of the upstream's time to response head in seconds, by `{service}`.
///
/// Emitted by [`MetricsLayer`](crate::MetricsLayer) from the proxy's
/// [`UpstreamDuration`](portcullis_core::UpstreamDuration).
pub const UPSTREAM_REQUEST_DURATION_SECONDS: &str = "portcullis_upstream_request_duration_seconds";

/// Counter of upstream failures, by `{service, cause}`; timeouts are their own
/// cause, `upstream_timeout`.
///
/// Emitted by [`MetricsLayer`](crate::MetricsLayer) for every response whose
/// [`Cause`](portcullis_core::Cause) is an upstream one.
pub const UPSTREAM_ERRORS_TOTAL: &str = "portcullis_upstream_errors_total";

/// Counter of authentication decisions, by `{route, scheme, decision}`.
///
/// Emitted by `portcullis-auth`; declared here so that [`describe`] documents it.
pub const AUTH_DECISIONS_TOTAL: &str = "portcullis_auth_decisions_total";

/// Counter of rate-limit decisions, by `{route, decision}`.
///
/// Emitted by `portcullis-ratelimit`; declared here so that [`describe`] documents it.
pub const RATELIMIT_DECISIONS_TOTAL: &str = "portcullis_ratelimit_decisions_total";

/// Counter of retries after upstream connect failures, by `{outcome}` (`retried`,
/// `budget_exhausted`, `no_endpoint`).
///
/// Emitted by `portcullis-proxy`; declared here so that [`describe`] documents it.
pub const UPSTREAM_RETRIES_TOTAL: &str = "portcullis_upstream_retries_total";

/// Gauge, 1 when an endpoint is healthy and 0 when not, by `{service, endpoint}`.
///
/// Emitted by `portcullis-health`; declared here so that [`describe`] documents it.
pub const ENDPOINT_HEALTHY: &str = "portcullis_endpoint_healthy";

/// Registers the help text and unit of every metric above with the current
/// recorder.
///
/// Call it once after installing a recorder; `Exporter::install` does. Calling
/// it again is harmless.
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "Requests answered, by service, route template, method and status class."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from receiving a request to the end of its response body."
    );
    describe_gauge!(
        HTTP_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Requests being served, by service."
    );
    describe_counter!(
        HTTP_REJECTIONS_TOTAL,
        Unit::Count,
        "Responses the gateway made itself, not because of the upstream, by route and cause."
    );
    describe_histogram!(
        UPSTREAM_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from sending a request upstream to receiving the response head."
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        Unit::Count,
        "Upstream failures (unreachable, invalid response, timeout, overloaded, no healthy endpoint), by service and cause."
    );
    describe_counter!(
        AUTH_DECISIONS_TOTAL,
        Unit::Count,
        "Authentication decisions, by route, scheme and decision."
    );
    describe_counter!(
        RATELIMIT_DECISIONS_TOTAL,
        Unit::Count,
        "Rate-limit decisions, by route and decision."
    );
    describe_counter!(
        UPSTREAM_RETRIES_TOTAL,
        Unit::Count,
        "Requests sent again to another endpoint, by outcome (retried, budget_exhausted, no_endpoint) and reason (connect_failure, status, timeout, reset)."
    );
    describe_gauge!(
        ENDPOINT_HEALTHY,
        Unit::Count,
        "1 when the endpoint is healthy, 0 when not."
    );
}
