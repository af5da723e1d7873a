//! Metric names (through the `metrics` facade) and their descriptions.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Gauge `{service,endpoint}`: 1 when the endpoint takes traffic, else 0.
pub const ENDPOINT_HEALTHY: &str = "portcullis_endpoint_healthy";
/// Counter `{service,result}`: probes by result (`ok` or the failure kind).
pub const HEALTH_PROBES_TOTAL: &str = "portcullis_health_probes_total";
/// Histogram `{service}`: probe duration in seconds.
pub const HEALTH_PROBE_DURATION_SECONDS: &str = "portcullis_health_probe_duration_seconds";
/// Counter `{service}`: passive ejections.
pub const ENDPOINT_EJECTIONS_TOTAL: &str = "portcullis_endpoint_ejections_total";

/// Registers help text and units of this crate's metrics with the installed recorder.
pub fn describe() {
    describe_gauge!(
        ENDPOINT_HEALTHY,
        "Whether an endpoint takes traffic (1) or not (0)"
    );
    describe_counter!(HEALTH_PROBES_TOTAL, "Active health probes by result");
    describe_histogram!(
        HEALTH_PROBE_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of active health probes"
    );
    describe_counter!(
        ENDPOINT_EJECTIONS_TOTAL,
        "Endpoints ejected by passive health checking"
    );
}

pub(crate) fn set_healthy(service: &str, endpoint: &str, healthy: bool) {
    metrics::gauge!(
        ENDPOINT_HEALTHY,
        "service" => service.to_owned(),
        "endpoint" => endpoint.to_owned()
    )
    .set(if healthy { 1.0 } else { 0.0 });
}

pub(crate) fn probed(service: &str, result: &'static str, seconds: f64) {
    metrics::counter!(HEALTH_PROBES_TOTAL, "service" => service.to_owned(), "result" => result)
        .increment(1);
    metrics::histogram!(HEALTH_PROBE_DURATION_SECONDS, "service" => service.to_owned())
        .record(seconds);
}

pub(crate) fn ejected(service: &str) {
    metrics::counter!(ENDPOINT_EJECTIONS_TOTAL, "service" => service.to_owned()).increment(1);
}
