//! Metric names and descriptions (R14).

/// Counter: new registrations, by `service` and `kind` (`service` or `endpoint`).
/// Lease renewals (heartbeats) and replacements are not counted.
pub const REGISTRATIONS_TOTAL: &str = "portcullis_registrations_total";
/// Counter: endpoints removed because their lease ran out, by `service`.
pub const LEASE_EXPIRIES_TOTAL: &str = "portcullis_lease_expiries_total";
/// Counter: state store failures, by `store` (`file`, `redis`) and `op` (`load`, `save`).
pub const STORE_ERRORS_TOTAL: &str = "portcullis_store_errors_total";

/// Registers the help text of this crate's metrics with the installed recorder.
pub fn describe() {
    ::metrics::describe_counter!(
        REGISTRATIONS_TOTAL,
        "New service and endpoint registrations"
    );
    ::metrics::describe_counter!(
        LEASE_EXPIRIES_TOTAL,
        "Endpoints removed because their lease ran out"
    );
    ::metrics::describe_counter!(STORE_ERRORS_TOTAL, "State store failures");
}

pub(crate) fn registered(service: &str, kind: &'static str) {
    ::metrics::counter!(REGISTRATIONS_TOTAL, "service" => service.to_owned(), "kind" => kind)
        .increment(1);
}

pub(crate) fn expired(service: &str) {
    ::metrics::counter!(LEASE_EXPIRIES_TOTAL, "service" => service.to_owned()).increment(1);
}

pub(crate) fn store_error(store: &'static str, op: &'static str) {
    ::metrics::counter!(STORE_ERRORS_TOTAL, "store" => store, "op" => op).increment(1);
}
