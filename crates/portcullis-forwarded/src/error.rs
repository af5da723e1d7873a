//! [`ConfigError`].

/// A mistake in the configuration of this crate's layers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A trusted proxy is neither an IP address nor a CIDR.
    #[error("forwarded.trusted_proxies must hold IP addresses or CIDRs, got {value:?}")]
    InvalidTrustedProxy {
        /// The offending entry, as given.
        value: String,
    },
    /// The `Via` name is neither a token nor `host[:port]`.
    #[error("forwarded.via_name must be a token or host[:port], got {value:?}")]
    InvalidViaName {
        /// The offending name, as given.
        value: String,
    },
}
