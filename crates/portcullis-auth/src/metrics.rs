//! Metric names and their descriptions.

/// Counter of authentication decisions, labelled `route` (the matched template or
/// `unmatched`), `scheme` (`api_key`, `basic`, `jwt`) and `decision` (`allowed`,
/// `missing`, `denied`, `unavailable`).
pub const AUTH_DECISIONS_TOTAL: &str = "portcullis_auth_decisions_total";

/// Registers the help text of this crate's metrics with the installed recorder.
///
/// Call it once after installing the recorder; without one it does nothing.
pub fn describe() {
    metrics::describe_counter!(
        AUTH_DECISIONS_TOTAL,
        metrics::Unit::Count,
        "Authentication decisions by route, scheme and decision \
         (allowed, missing, denied, unavailable)."
    );
}
