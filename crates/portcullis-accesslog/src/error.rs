//! [`ConfigError`].

/// A mistake in the access log configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An entry of a header list is not a valid header name.
    #[error("{key} must be a header name, got {value:?}")]
    InvalidHeaderName {
        /// The key path of the entry, such as `accesslog.redact_headers[1]`.
        key: String,
        /// The offending entry, as given.
        value: String,
    },
    /// An entry of `redact_query_params` is not a usable query parameter name.
    #[error(
        "{key} must be a query parameter name of 1 to 128 bytes without '&', '=', '#', '?', \
         whitespace or control characters, got {value:?}"
    )]
    InvalidQueryParam {
        /// The key path of the entry, such as `accesslog.redact_query_params[0]`.
        key: String,
        /// The offending entry, as given.
        value: String,
    },
    /// A list is longer than allowed.
    #[error("{key} may hold at most {max} entries, got {value}")]
    TooMany {
        /// The key path of the list.
        key: &'static str,
        /// The most entries allowed.
        max: usize,
        /// The number of entries given.
        value: usize,
    },
}
