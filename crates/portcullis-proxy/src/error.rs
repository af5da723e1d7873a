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
    /// A number above its maximum.
    #[error("proxy.{key} must be at most {max}, got {value}")]
    TooLarge {
        /// The config key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// The maximum.
        max: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that only wraps another, as hyper-util's client errors do.
    #[derive(Debug)]
    struct Wrapper(BoxError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn io_timed_out_is_upstream_timeout() {
        let err = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(classify(&err), Cause::UpstreamTimeout);
        assert_eq!(classify(&err).as_str(), "upstream_timeout");
    }

    #[test]
    fn io_timed_out_deep_in_the_chain_is_upstream_timeout() {
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let err = Wrapper(Box::new(Wrapper(Box::new(io))));
        assert_eq!(classify(&err), Cause::UpstreamTimeout);
    }

    #[test]
    fn overloaded_is_upstream_overloaded() {
        let err = UpstreamOverloaded::new();
        assert_eq!(classify(&err), Cause::UpstreamOverloaded);
        assert_eq!(classify(&err).as_str(), "upstream_overloaded");
        let wrapped = Wrapper(Box::new(UpstreamOverloaded::new()));
        assert_eq!(classify(&wrapped), Cause::UpstreamOverloaded);
    }

    #[test]
    fn own_timeout_is_upstream_timeout() {
        let wrapped = Wrapper(Box::new(UpstreamTimedOut::new("request")));
        assert_eq!(classify(&wrapped), Cause::UpstreamTimeout);
    }

    #[test]
    fn refused_and_unknown_errors_are_unreachable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), Cause::UpstreamUnreachable);
        assert_eq!(
            classify(&Wrapper(Box::new(refused))),
            Cause::UpstreamUnreachable
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), Cause::UpstreamUnreachable);
    }

    #[test]
    fn messages_are_lowercase_and_specific() {
        assert_eq!(
            UpstreamOverloaded::new().to_string(),
            "upstream connection limit reached"
        );
        assert_eq!(
            UpstreamTimedOut::new("response headers").to_string(),
            "upstream response headers timed out"
        );
        let err = ConfigError::ZeroDuration {
            key: "connect_timeout",
        };
        assert_eq!(
            err.to_string(),
            "proxy.connect_timeout must be greater than 0s"
        );
    }
}
