//! [`ConfigError`]: a mistake in the authentication configuration.

use std::path::PathBuf;

/// A mistake in an [`AuthConfig`](crate::AuthConfig) or in a builder call.
///
/// Keys are relative to the auth section (`keys[1].sha256`); the binary prefixes
/// the section's own path. Messages never contain secrets: a secret's value is
/// never echoed, only its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is not acceptable.
    #[error("{key} {reason}, got {value:?}")]
    Invalid {
        /// The key path, such as `keys[0].sha256`.
        key: String,
        /// The offending value (`[redacted]` for secrets).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required value is missing, or two values exclude each other.
    #[error("{key}: {reason}")]
    Missing {
        /// The key path.
        key: String,
        /// What is expected.
        reason: String,
    },
    /// A PEM file could not be read.
    #[error("{key}: cannot read {path}")]
    ReadPem {
        /// The key path, such as `keys[0].pem_file`.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM key could not be parsed as a key for its algorithm.
    #[error("{key}: not a valid {alg} public key in PEM form ({reason})")]
    BadPem {
        /// The key path, such as `keys[0].pem`.
        key: String,
        /// The configured algorithm.
        alg: &'static str,
        /// The parser's reason.
        reason: String,
    },
    /// The configuration needs a cargo feature this build lacks.
    #[error("{key} needs the `{feature}` feature of portcullis-auth")]
    FeatureDisabled {
        /// The key path.
        key: String,
        /// The feature.
        feature: &'static str,
    },
    /// A background task had to be started outside a tokio runtime.
    #[error("{key}: fetching keys in the background needs a tokio runtime")]
    NoRuntime {
        /// The key path.
        key: String,
    },
}

// === impl ConfigError ===

impl ConfigError {
    pub(crate) fn invalid(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Missing {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
