use std::error::Error as StdError;
use std::fmt;

use portcullis_core::Cause;

/// A boxed error, as carried through hyper and tower.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A mistake in [`ProxyConfig`](crate::ProxyConfig) or an upstream URL.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("proxy.{key} must be greater than 0s")]
    ZeroDuration {
        /// The config key.
        key: &'static str,
    },
    /// A count that must be positive is zero.
    #[error("proxy.{key} must be greater than 0")]
    Zero {
        /// The config key.
        key: &'static str,
    },
    /// A size below its minimum.
    #[error("proxy.{key} must be at least {min}, got {value}")]
    TooSmall {
        /// The config key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// The minimum.
        min: u64,
    },
    /// An upstream URL that is not `http://host[:port]`.
    #[error("upstream {url:?} is not valid: {reason}")]
    BadUpstream {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

/// The connection cap of an upstream was reached and no slot freed in time.
#[derive(Debug)]
pub struct UpstreamOverloaded {
    _priv: (),
}

impl UpstreamOverloaded {
    pub(crate) fn new() -> Self {
        Self { _priv: () }
    }
}

impl fmt::Display for UpstreamOverloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream connection limit reached")
    }
}

impl StdError for UpstreamOverloaded {}

/// The upstream did not answer (or finish) within its deadline.
#[derive(Debug)]
pub struct UpstreamTimedOut {
    what: &'static str,
}

impl UpstreamTimedOut {
    pub(crate) fn new(what: &'static str) -> Self {
        Self { what }
    }
}

impl fmt::Display for UpstreamTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream {} timed out", self.what)
    }
}

impl StdError for UpstreamTimedOut {}

/// Maps an error of the upstream exchange to the cause the client is told.
///
/// This is the one place where proxy errors become causes: it walks the source
/// chain looking for the typed errors above, hyper's and std's.
pub fn classify(err: &(dyn StdError + 'static)) -> Cause {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<UpstreamOverloaded>() {
            return Cause::UpstreamOverloaded;
        }
        if e.is::<UpstreamTimedOut>() {
            return Cause::UpstreamTimeout;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Cause::UpstreamTimeout;
            }
        }
        if let Some(he) = e.downcast_ref::<hyper::Error>() {
            if he.is_timeout() {
                return Cause::UpstreamTimeout;
            }
            if he.is_parse() || he.is_parse_status() || he.is_parse_too_large() {
                return Cause::UpstreamInvalidResponse;
            }
            if he.is_user() {
                // The client's own request body failed (bad chunking, limit, reset).
                return Cause::BadRequest;
            }
        }
        cur = e.source();
    }
    Cause::UpstreamUnreachable
}
