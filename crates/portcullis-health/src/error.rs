//! Configuration errors.

/// A mistake in a [`HealthCheckConfig`](crate::HealthCheckConfig) or
/// [`PassiveHealthConfig`](crate::PassiveHealthConfig), with the key path and the
/// offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `health.path` is not an origin-form path (must start with `/`).
    #[error("health.path must be an origin-form path starting with '/', got {value:?}")]
    InvalidPath {
        /// The configured path.
        value: String,
    },
    /// `health.method` is not a valid HTTP method.
    #[error("health.method must be an HTTP method, got {value:?}")]
    InvalidMethod {
        /// The configured method.
        value: String,
    },
    /// A duration that must be above zero is zero.
    #[error("{key} must be > 0, got {value:?}")]
    ZeroDuration {
        /// The key path, such as `health.interval`.
        key: &'static str,
        /// The configured duration.
        value: String,
    },
    /// `health.jitter` is not below `health.interval`.
    #[error("health.jitter must be below health.interval ({interval}), got {value}")]
    JitterTooLarge {
        /// The configured jitter.
        value: String,
        /// The configured interval.
        interval: String,
    },
    /// A count that must be at least 1 is 0.
    #[error("{key} must be >= 1, got {value}")]
    ZeroCount {
        /// The key path, such as `health.rise`.
        key: &'static str,
        /// The configured value.
        value: u32,
    },
    /// `health.expected_status` is empty.
    #[error("health.expected_status must list at least one status")]
    NoExpectedStatus,
    /// An entry of `health.expected_status` is not in 100..=599.
    #[error("health.expected_status entries must be in 100..=599, got {value}")]
    InvalidStatus {
        /// The configured status.
        value: u16,
    },
    /// A key of `health.headers` is not a valid header name.
    #[error("health.headers has an invalid header name {name:?}")]
    InvalidHeaderName {
        /// The configured name.
        name: String,
    },
    /// A value of `health.headers` is not a valid header value (the value itself
    /// is not repeated: it may be a secret).
    #[error("health.headers.{name} has an invalid header value")]
    InvalidHeaderValue {
        /// The header name.
        name: String,
    },
    /// `health.headers` names a connection-level or framing header the probe sets itself.
    #[error("health.headers must not set the connection-level header {name:?}")]
    ForbiddenHeader {
        /// The header name.
        name: String,
    },
    /// `passive.max_ejected_percent` is above 100.
    #[error("passive.max_ejected_percent must be <= 100, got {value}")]
    InvalidPercent {
        /// The configured percentage.
        value: u8,
    },
    /// `passive.max_ejection_time` is below `passive.base_ejection_time`.
    #[error("passive.max_ejection_time ({max}) must be >= passive.base_ejection_time ({base})")]
    EjectionTimeOrder {
        /// The configured base ejection time.
        base: String,
        /// The configured maximum ejection time.
        max: String,
    },
}
