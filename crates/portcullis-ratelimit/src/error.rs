//! [`ConfigError`].

/// A mistake in a [`RateLimitConfig`](crate::RateLimitConfig).
///
/// [`RateLimitConfig::validate`](crate::RateLimitConfig::validate) returns every
/// one; [`RateLimitLayer::from_config`](crate::RateLimitLayer::from_config) the
/// first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit name is empty, too long or has characters other than ASCII letters,
    /// digits, `_`, `-` and `.`.
    #[error(
        "ratelimit.limits[{index}].name must be 1 to 64 ASCII letters, digits, '_', '-' or '.', got {value:?}"
    )]
    InvalidName {
        /// The limit's position in the list.
        index: usize,
        /// The name, as given.
        value: String,
    },
    /// Two limits have the same name.
    #[error("ratelimit.limits: the name {name:?} is used twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// With Redis, a limit's requests would be spaced less than a microsecond apart
    /// (the script's resolution).
    #[error(
        "ratelimit.limits[{name}].rate {rate} is too high for the Redis store (under 1µs per request)"
    )]
    RateTooHighForRedis {
        /// The limit.
        name: String,
        /// The rate.
        rate: u32,
    },
    /// With Redis, the fail-open share of a limit (its interval × `fleet_size`)
    /// would be longer than a year.
    #[error(
        "ratelimit.limits[{name}]: its share on one of {fleet_size} gateways would space requests more than a year apart"
    )]
    FleetShareTooLong {
        /// The limit.
        name: String,
        /// The fleet size.
        fleet_size: u32,
    },
    /// [`RateLimitLayer::select`](crate::RateLimitLayer::select) named a limit the
    /// layer does not have.
    #[error("no rate limit named {name:?}")]
    UnknownLimit {
        /// The name.
        name: String,
    },
    /// `rate` is 0.
    #[error("ratelimit.limits[{name}].rate must be > 0, got 0")]
    ZeroRate {
        /// The limit's name.
        name: String,
    },
    /// `per` is 0.
    #[error("ratelimit.limits[{name}].per must be > 0, got 0s")]
    ZeroPeriod {
        /// The limit's name.
        name: String,
    },
    /// `per` is longer than a year.
    #[error("ratelimit.limits[{name}].per must be at most 365days, got {value}")]
    PeriodTooLong {
        /// The limit's name.
        name: String,
        /// The period, as a human duration.
        value: String,
    },
    /// `rate` is so high that `per / rate` is below a nanosecond.
    #[error(
        "ratelimit.limits[{name}].rate is too high for its period (under 1ns per request), got {rate}"
    )]
    RateTooHigh {
        /// The limit's name.
        name: String,
        /// The rate.
        rate: u32,
    },
    /// `burst` is 0.
    #[error("ratelimit.limits[{name}].burst must be > 0, got 0")]
    ZeroBurst {
        /// The limit's name.
        name: String,
    },
    /// `burst` is so large that refilling it takes more than ten years.
    #[error(
        "ratelimit.limits[{name}].burst is too large for the rate (over ten years to refill), got {burst}"
    )]
    BurstTooLarge {
        /// The limit's name.
        name: String,
        /// The burst.
        burst: u32,
    },
    /// A `{ header = "…" }` key part is not a valid header name.
    #[error("ratelimit.limits[{name}].key has an invalid header name {value:?}")]
    InvalidHeader {
        /// The limit's name.
        name: String,
        /// The header name, as given.
        value: String,
    },
    /// `max_keys` is 0.
    #[error("ratelimit.max_keys must be > 0, got 0")]
    ZeroMaxKeys,
    /// `sweep_interval` is 0.
    #[error("ratelimit.sweep_interval must be > 0, got 0s")]
    ZeroSweepInterval,
    /// The Redis URL does not parse.
    #[error("ratelimit.store.url is not a valid Redis URL ({reason}), got {value:?}")]
    InvalidRedisUrl {
        /// The URL, with any password replaced by `***`.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The Redis timeout is 0.
    #[error("ratelimit.store.timeout must be > 0, got 0s")]
    ZeroRedisTimeout,
    /// `fleet_size` is 0.
    #[error("ratelimit.store.fleet_size must be > 0, got 0")]
    ZeroFleetSize,
    /// The Redis store is configured but the crate was built without its `redis`
    /// feature.
    #[error("ratelimit.store.kind = \"redis\" needs portcullis-ratelimit's `redis` feature")]
    RedisFeatureDisabled,
}
