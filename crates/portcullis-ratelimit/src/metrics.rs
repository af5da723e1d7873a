//! Metric names and descriptions (R14).

use std::sync::Arc;

use ::metrics::{SharedString, Unit};

/// Counter of rate-limit decisions, labelled `route` (the matched template or
/// `unmatched`) and `decision`: `allowed`, `limited` (429, by Redis or locally),
/// `fallback` (allowed by the local fallback while Redis was unreachable) or
/// `unavailable` (503, Redis unreachable and `fail_closed`).
pub const DECISIONS_TOTAL: &str = "portcullis_ratelimit_decisions_total";
/// Gauge of keys tracked in memory, labelled `limit`; set at each sweep.
pub const TRACKED_KEYS: &str = "portcullis_ratelimit_tracked_keys";
/// Counter of requests of new keys counted in a limit's overflow states because the limit
/// already tracked `max_keys` keys, labelled `limit`.
pub const OVERFLOW_TOTAL: &str = "portcullis_ratelimit_overflow_total";
/// Histogram of the time Redis took to answer a decision, in seconds.
pub const REDIS_DURATION_SECONDS: &str = "portcullis_ratelimit_redis_duration_seconds";
/// Counter of failed Redis decisions, labelled `kind` (`timeout` or `error`).
pub const REDIS_ERRORS_TOTAL: &str = "portcullis_ratelimit_redis_errors_total";
/// Gauge of the Redis circuit breaker: 0 closed (using Redis), 1 open (skipping
/// Redis), 2 half-open (one request probing Redis).
pub const REDIS_BREAKER_STATE: &str = "portcullis_ratelimit_redis_breaker_state";

/// Registers the help text of this crate's metrics with the installed recorder.
///
/// Call it once after installing the recorder; without one it does nothing.
pub fn describe() {
    ::metrics::describe_counter!(
        DECISIONS_TOTAL,
        Unit::Count,
        "Rate-limit decisions by route and decision (allowed, limited, fallback, unavailable)."
    );
    ::metrics::describe_gauge!(
        TRACKED_KEYS,
        Unit::Count,
        "Keys tracked in memory per limit, as of the last sweep."
    );
    ::metrics::describe_counter!(
        OVERFLOW_TOTAL,
        Unit::Count,
        "Requests of new keys counted in a limit's overflow states because max_keys was reached."
    );
    ::metrics::describe_histogram!(
        REDIS_DURATION_SECONDS,
        Unit::Seconds,
        "Time Redis took to answer a rate-limit decision."
    );
    ::metrics::describe_counter!(
        REDIS_ERRORS_TOTAL,
        Unit::Count,
        "Rate-limit decisions Redis did not answer in time or answered with an error, by kind."
    );
    ::metrics::describe_gauge!(
        REDIS_BREAKER_STATE,
        Unit::Count,
        "Redis circuit breaker: 0 closed, 1 open, 2 half-open."
    );
}

/// The `decision` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed,
    Limited,
    Fallback,
    Unavailable,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Limited => "limited",
            Decision::Fallback => "fallback",
            Decision::Unavailable => "unavailable",
        }
    }
}

pub(crate) fn decision(route: Option<&Arc<str>>, decision: Decision) {
    let route = match route {
        Some(template) => SharedString::from_shared(Arc::clone(template)),
        None => SharedString::const_str("unmatched"),
    };
    ::metrics::counter!(DECISIONS_TOTAL, "route" => route, "decision" => decision.as_str())
        .increment(1);
}

pub(crate) fn shed(limit: &Arc<str>) {
    ::metrics::counter!(OVERFLOW_TOTAL, "limit" => SharedString::from_shared(Arc::clone(limit)))
        .increment(1);
}

pub(crate) fn tracked(limit: &Arc<str>, keys: usize) {
    #[allow(clippy::cast_precision_loss)] // a gauge; exact below 2^53 keys
    let keys = keys as f64;
    ::metrics::gauge!(TRACKED_KEYS, "limit" => SharedString::from_shared(Arc::clone(limit)))
        .set(keys);
}

#[cfg(feature = "redis")]
pub(crate) fn redis_duration(seconds: f64) {
    ::metrics::histogram!(REDIS_DURATION_SECONDS).record(seconds);
}

#[cfg(feature = "redis")]
pub(crate) fn redis_error(kind: &'static str) {
    ::metrics::counter!(REDIS_ERRORS_TOTAL, "kind" => kind).increment(1);
}

#[cfg(feature = "redis")]
pub(crate) fn breaker_state(state: u8) {
    ::metrics::gauge!(REDIS_BREAKER_STATE).set(f64::from(state));
}
