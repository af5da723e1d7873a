//! What [`Metrics`](crate::Metrics) records, shared by a layer and its services.

use std::sync::Arc;

use ::metrics::{Counter, Gauge, Histogram, Label, SharedString, counter, gauge, histogram};
use portcullis_core::Cause;
use tokio::time::Instant;

use crate::cache::{DEFAULT_CACHE_CAPACITY, HandleCache, PtrStr};
use crate::labels::{INTERNAL, MethodLabel, StatusClass, UNMATCHED};
use crate::metrics::{
    HTTP_REJECTIONS_TOTAL, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_IN_FLIGHT,
    HTTP_REQUESTS_TOTAL, UPSTREAM_ERRORS_TOTAL, UPSTREAM_REQUEST_DURATION_SECONDS,
};

/// State shared by every clone of a [`MetricsLayer`](crate::MetricsLayer) and its
/// services: the label values that do not come from the response, and the
/// metric handles of the label sets seen so far.
#[derive(Debug)]
pub(crate) struct Shared {
    unmatched: Arc<str>,
    empty: Arc<str>,
    http: HandleCache<HttpKey, (Counter, Histogram)>,
    upstream: HandleCache<PtrStr, Histogram>,
}

pub(crate) type HttpKey = (PtrStr, PtrStr, MethodLabel, StatusClass);

/// State shared by every clone of an [`InFlightLayer`](crate::InFlightLayer) and
/// its services.
#[derive(Debug)]
pub(crate) struct InFlightShared {
    empty: Arc<str>,
    gauges: HandleCache<PtrStr, Gauge>,
}

/// The labels of one request's `requests_total` and `request_duration_seconds`.
#[derive(Debug)]
pub(crate) struct RequestLabels {
    pub(crate) service: Arc<str>,
    pub(crate) route: Arc<str>,
    pub(crate) method: MethodLabel,
    pub(crate) class: StatusClass,
}

/// A request whose response head was seen but whose body has not ended: records
/// the request once, when dropped.
#[derive(Debug)]
pub(crate) struct Pending {
    shared: Arc<Shared>,
    labels: RequestLabels,
    start: Instant,
}

// === impl Shared ===

impl Shared {
    /// Caches of at most `capacity` label sets each.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            unmatched: Arc::from(UNMATCHED),
            empty: Arc::from(""),
            http: HandleCache::new(capacity),
            upstream: HandleCache::new(capacity),
        }
    }

    /// The handle cache of `requests_total` and `request_duration_seconds`.
    #[cfg(test)]
    pub(crate) fn http_cache(&self) -> &HandleCache<HttpKey, (Counter, Histogram)> {
        &self.http
    }

    /// The `route` label of requests without a `MatchedRoute`.
    pub(crate) fn unmatched(&self) -> &Arc<str> {
        &self.unmatched
    }

    /// The `service` label of requests without a `ServiceName`.
    pub(crate) fn no_service(&self) -> &Arc<str> {
        &self.empty
    }

    /// Records one request that took `seconds`.
    pub(crate) fn request(&self, labels: &RequestLabels, seconds: f64) {
        let (count, duration) = self.http_handles(labels);
        count.increment(1);
        duration.record(seconds);
    }

    fn http_handles(&self, labels: &RequestLabels) -> (Counter, Histogram) {
        let key = (
            PtrStr(Arc::clone(&labels.service)),
            PtrStr(Arc::clone(&labels.route)),
            labels.method,
            labels.class,
        );
        self.http.get_or_register(key, || register(labels))
    }

    /// Records the upstream's time to response head.
    pub(crate) fn upstream_duration(&self, service: &Arc<str>, seconds: f64) {
        self.upstream
            .get_or_register(
                PtrStr(Arc::clone(service)),
                || histogram!(UPSTREAM_REQUEST_DURATION_SECONDS, "service" => shared(service)),
            )
            .record(seconds);
    }

    /// Counts a response the gateway made itself, by where the fault lies.
    pub(crate) fn cause(&self, cause: Cause, service: &Arc<str>, route: &Arc<str>) {
        if cause.is_upstream() {
            counter!(UPSTREAM_ERRORS_TOTAL, "service" => shared(service), "cause" => cause.as_str())
                .increment(1);
        } else {
            self.rejection(route, cause.as_str());
        }
    }

    /// Counts a failure of the inner service (an `Err`, no response).
    pub(crate) fn internal_error(&self, method: MethodLabel, start: Instant) {
        let labels = RequestLabels {
            service: self.empty.clone(),
            route: self.unmatched.clone(),
            method,
            class: StatusClass::SERVER_ERROR,
        };
        self.request(&labels, start.elapsed().as_secs_f64());
        self.rejection(&self.unmatched, INTERNAL);
    }

    fn rejection(&self, route: &Arc<str>, cause: &'static str) {
        counter!(HTTP_REJECTIONS_TOTAL, "route" => shared(route), "cause" => cause).increment(1);
    }
}

/// Registers the handles of one label set with the current recorder.
fn register(labels: &RequestLabels) -> (Counter, Histogram) {
    let labels = vec![
        Label::new("service", shared(&labels.service)),
        Label::new("route", shared(&labels.route)),
        Label::new("method", labels.method.as_str()),
        Label::new("status_class", labels.class.as_str()),
    ];
    let count = counter!(HTTP_REQUESTS_TOTAL, labels.iter());
    let duration = histogram!(HTTP_REQUEST_DURATION_SECONDS, labels);
    (count, duration)
}

/// A label value sharing the `Arc`: no copy of the string.
pub(crate) fn shared(value: &Arc<str>) -> SharedString {
    SharedString::from(Arc::clone(value))
}

// === impl InFlightShared ===

impl InFlightShared {
    pub(crate) fn new() -> Self {
        Self {
            empty: Arc::from(""),
            gauges: HandleCache::new(DEFAULT_CACHE_CAPACITY),
        }
    }

    /// The in-flight gauge of `service` (none: the empty label).
    pub(crate) fn gauge(&self, service: Option<&Arc<str>>) -> Gauge {
        let service = service.unwrap_or(&self.empty);
        self.gauges.get_or_register(
            PtrStr(Arc::clone(service)),
            || gauge!(HTTP_REQUESTS_IN_FLIGHT, "service" => shared(service)),
        )
    }
}

// === impl Pending ===

impl Pending {
    pub(crate) fn new(shared: Arc<Shared>, labels: RequestLabels, start: Instant) -> Self {
        Self {
            shared,
            labels,
            start,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.shared.request(&self.labels, seconds);
    }
}
