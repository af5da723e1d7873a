//! Serde configuration: [`RateLimitConfig`], [`LimitConfig`], [`KeyPart`], [`StoreConfig`],
//! [`RedisConfig`], [`FailurePolicy`], and their [`validate`](RateLimitConfig::validate).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use http::HeaderName;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ConfigError;

/// Longest accepted `per`: one year.
pub(crate) const MAX_PER: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest accepted burst tolerance (`(burst - 1) × per / rate`): ten years.
pub(crate) const MAX_TOLERANCE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest accepted limit name.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Configuration of a [`RateLimitLayer`](crate::RateLimitLayer): its limits, the
/// memory bound of the local store, and the store.
///
/// ```toml
/// max_keys = 100000
/// sweep_interval = "60s"
///
/// [[limits]]
/// name = "per_ip"
/// key = "client_ip"
/// rate = 100
/// per = "1m"
/// burst = 20
///
/// [[limits]]
/// name = "per_tenant"
/// key = ["identity", { header = "x-tenant" }]
/// rate = 1000
/// per = "1h"
///
/// [store]
/// kind = "redis"
/// url = "redis://127.0.0.1:6379/"
/// on_failure = "fail_open"
/// fleet_size = 4
/// ```
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limits; a request must pass every one. Default: none (the layer lets
    /// everything through and adds no headers).
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// Most keys tracked in memory per limit; new keys past it share one overflow
    /// key (see the crate docs, "Bounded memory"). Default: 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// How often idle keys are swept from memory. Default: 60s.
    #[serde(default = "default_sweep_interval", with = "duration")]
    pub sweep_interval: Duration,
    /// Where the limits' state lives. Default: `local`.
    #[serde(default)]
    pub store: StoreConfig,
}

/// One limit: a name, a key, and a quota of `rate` requests `per` period with a
/// `burst`.
///
/// ```toml
/// name = "per_ip"
/// key = ["client_ip", "route"]
/// rate = 10
/// per = "1s"
/// burst = 20
/// ```
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// The policy name, shown in the `RateLimit` headers, used as a metric label and,
    /// with Redis, as the fleet-wide identity of the limit: 1 to 64 ASCII letters,
    /// digits, `_`, `-` or `.`. Required.
    pub name: String,
    /// What requests are counted together: one [`KeyPart`] or a list of them
    /// (combined); an empty list is one key for all requests. Default: `client_ip`.
    #[serde(
        default = "default_key",
        deserialize_with = "deserialize_key",
        serialize_with = "serialize_key"
    )]
    pub key: Vec<KeyPart>,
    /// Requests allowed per `per`, sustained. Required, > 0.
    pub rate: u32,
    /// The period of `rate`. Default: 1s.
    #[serde(default = "default_per", with = "duration")]
    pub per: Duration,
    /// Requests allowed at once, after a quiet period. Default: `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// One part of a limit's key.
///
/// In TOML: `"client_ip"`, `"identity"`, `"route"` or `{ header = "x-api-key" }`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    /// The client's IP address: the [`ClientAddr`](portcullis_core::ClientAddr) a
    /// forwarding layer decided (a trusted proxy's `X-Forwarded-For`), else the TCP
    /// peer; an IPv6 address by its /64. Requests without a
    /// [`PeerAddr`](portcullis_core::PeerAddr) share one "unknown" key.
    ClientIp,
    /// The [`Identity`](portcullis_core::Identity) an authentication layer set.
    /// Requests without one share one "anonymous" key.
    Identity,
    /// The [`MatchedRoute`](portcullis_core::MatchedRoute) template. Requests
    /// without one share one "unmatched" key.
    Route,
    /// The first value of this request header; absent counts as empty.
    Header(String),
}

/// Where the limits' state lives.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    /// In this process's memory (`kind = "local"`). The default.
    #[default]
    Local,
    /// In Redis, shared by a fleet of gateways (`kind = "redis"`). Needs the
    /// `redis` feature.
    Redis(RedisConfig),
}

/// The Redis store (feature `redis`): see the crate docs, "Redis (fleet)".
#[derive(Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` or
    /// `redis+unix:///path`. Required.
    pub url: String,
    /// Prefix of every key. Default: `portcullis:rl:`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Longest wait for Redis per request (connecting included). Default: 50ms.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// What to do when Redis cannot answer in time. Default: `fail_open`.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Number of gateways sharing the limits: when failing open, each gateway
    /// allows `1 / fleet_size` of every quota on its own. Default: 1.
    #[serde(default = "default_fleet_size")]
    pub fleet_size: u32,
    /// After a Redis failure, how long requests skip Redis before one request
    /// probes it again. Default: 1s.
    #[serde(default = "default_cooldown", with = "duration")]
    pub breaker_cooldown: Duration,
}

/// What a Redis-backed limit does when Redis cannot answer in time.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Decide with a local limiter whose quotas are divided by `fleet_size`.
    #[default]
    FailOpen,
    /// Answer 503 `rate_limit_unavailable` with `Retry-After: 1`.
    FailClosed,
}

fn default_max_keys() -> usize {
    100_000
}
fn default_sweep_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_key() -> Vec<KeyPart> {
    vec![KeyPart::ClientIp]
}
fn default_per() -> Duration {
    Duration::from_secs(1)
}
fn default_prefix() -> String {
    "portcullis:rl:".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_fleet_size() -> u32 {
    1
}
fn default_cooldown() -> Duration {
    Duration::from_secs(1)
}

// === impl RateLimitConfig ===

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            limits: Vec::new(),
            max_keys: default_max_keys(),
            sweep_interval: default_sweep_interval(),
            store: StoreConfig::Local,
        }
    }
}

impl RateLimitConfig {
    /// No limits, a local store, and the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a limit.
    #[must_use]
    pub fn limit(mut self, limit: LimitConfig) -> Self {
        self.limits.push(limit);
        self
    }

    /// Sets [`max_keys`](Self::max_keys).
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sets [`sweep_interval`](Self::sweep_interval).
    #[must_use]
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Sets [`store`](Self::store).
    #[must_use]
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// Checks the configuration and returns **every** mistake.
    ///
    /// # Errors
    ///
    /// One [`ConfigError`] per mistake, in the order of the configuration.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut names = HashSet::new();
        for (index, limit) in self.limits.iter().enumerate() {
            limit.check(index, &mut errors);
            if !names.insert(limit.name.as_str()) {
                errors.push(ConfigError::DuplicateName {
                    name: limit.name.clone(),
                });
            }
        }
        if self.max_keys == 0 {
            errors.push(ConfigError::ZeroMaxKeys);
        }
        if self.sweep_interval.is_zero() {
            errors.push(ConfigError::ZeroSweepInterval);
        }
        if let StoreConfig::Redis(redis) = &self.store {
            redis.check(&mut errors);
            for limit in &self.limits {
                if limit.rate == 0 || limit.per.is_zero() || limit.per > MAX_PER {
                    continue; // reported above
                }
                let interval = limit.per / limit.rate;
                // The script counts whole microseconds.
                if !interval.is_zero() && interval < Duration::from_micros(1) {
                    errors.push(ConfigError::RateTooHighForRedis {
                        name: limit.name.clone(),
                        rate: limit.rate,
                    });
                }
                // The fail-open share spaces requests `fleet_size` times wider.
                if interval
                    .checked_mul(redis.fleet_size.max(1))
                    .is_none_or(|share| share > MAX_PER)
                {
                    errors.push(ConfigError::FleetShareTooLong {
                        name: limit.name.clone(),
                        fleet_size: redis.fleet_size,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

// === impl LimitConfig ===

impl LimitConfig {
    /// A limit of `rate` requests `per` period, keyed by client IP, with a burst of
    /// `rate`.
    pub fn new(name: impl Into<String>, rate: u32, per: Duration) -> Self {
        Self {
            name: name.into(),
            key: default_key(),
            rate,
            per,
            burst: None,
        }
    }

    /// Sets the key (a list of parts, combined; empty: one key for all).
    #[must_use]
    pub fn key(mut self, parts: impl IntoIterator<Item = KeyPart>) -> Self {
        self.key = parts.into_iter().collect();
        self
    }

    /// Sets the burst.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The burst: [`burst`](Self::burst) or, when unset, `rate`.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    fn check(&self, index: usize, errors: &mut Vec<ConfigError>) {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            errors.push(ConfigError::InvalidName {
                index,
                value: name.clone(),
            });
        }
        if self.rate == 0 {
            errors.push(ConfigError::ZeroRate { name: name.clone() });
        }
        if self.per.is_zero() {
            errors.push(ConfigError::ZeroPeriod { name: name.clone() });
        } else if self.per > MAX_PER {
            errors.push(ConfigError::PeriodTooLong {
                name: name.clone(),
                value: humantime::format_duration(self.per).to_string(),
            });
        }
        if self.burst == Some(0) {
            errors.push(ConfigError::ZeroBurst { name: name.clone() });
        }
        if self.rate > 0 && !self.per.is_zero() && self.per <= MAX_PER {
            let interval = self.per / self.rate;
            let burst = self.effective_burst().max(1);
            if interval.is_zero() {
                errors.push(ConfigError::RateTooHigh {
                    name: name.clone(),
                    rate: self.rate,
                });
            } else if interval
                .checked_mul(burst.saturating_sub(1))
                .is_none_or(|tolerance| tolerance > MAX_TOLERANCE)
            {
                errors.push(ConfigError::BurstTooLarge {
                    name: name.clone(),
                    burst,
                });
            }
        }
        for part in &self.key {
            if let KeyPart::Header(header) = part {
                if HeaderName::from_bytes(header.as_bytes()).is_err() {
                    errors.push(ConfigError::InvalidHeader {
                        name: name.clone(),
                        value: header.clone(),
                    });
                }
            }
        }
    }
}

// === impl RedisConfig ===

impl RedisConfig {
    /// A Redis store at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_prefix(),
            timeout: default_timeout(),
            on_failure: FailurePolicy::default(),
            fleet_size: default_fleet_size(),
            breaker_cooldown: default_cooldown(),
        }
    }

    /// Sets [`key_prefix`](Self::key_prefix).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`on_failure`](Self::on_failure).
    #[must_use]
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// Sets [`fleet_size`](Self::fleet_size).
    #[must_use]
    pub fn fleet_size(mut self, gateways: u32) -> Self {
        self.fleet_size = gateways;
        self
    }

    /// Sets [`breaker_cooldown`](Self::breaker_cooldown).
    #[must_use]
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.breaker_cooldown = cooldown;
        self
    }

    fn check(&self, errors: &mut Vec<ConfigError>) {
        if let Err(reason) = check_redis_url(&self.url) {
            errors.push(ConfigError::InvalidRedisUrl {
                value: redact_url(&self.url),
                reason,
            });
        }
        if self.timeout.is_zero() {
            errors.push(ConfigError::ZeroRedisTimeout);
        }
        if self.fleet_size == 0 {
            errors.push(ConfigError::ZeroFleetSize);
        }
        if !cfg!(feature = "redis") {
            errors.push(ConfigError::RedisFeatureDisabled);
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("on_failure", &self.on_failure)
            .field("fleet_size", &self.fleet_size)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .finish()
    }
}

#[cfg(feature = "redis")]
fn check_redis_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .map(drop)
        .map_err(|e| redact_url(&e.to_string()))
}

#[cfg(not(feature = "redis"))]
fn check_redis_url(url: &str) -> Result<(), String> {
    let ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
    if ok {
        Ok(())
    } else {
        Err("expected redis://, redis+unix:// or unix:// (TLS is not built in)".to_owned())
    }
}

/// `url` with any password replaced by `***`, for messages and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = url.get(rest_start..).unwrap_or_default();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or_default();
    match authority.rfind('@') {
        Some(at) => format!(
            "{}***@{}",
            url.get(..rest_start).unwrap_or_default(),
            rest.get(at + 1..).unwrap_or_default()
        ),
        None => url.to_owned(),
    }
}

// === key: one part or a list ===

fn deserialize_key<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyPart>, D::Error> {
    struct KeyVisitor;

    impl<'de> Visitor<'de> for KeyVisitor {
        type Value = Vec<KeyPart>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a key part (\"client_ip\", \"identity\", \"route\", { header = \"name\" }) \
                 or a list of them",
            )
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            KeyPart::deserialize(de::value::StrDeserializer::<E>::new(v)).map(|p| vec![p])
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            KeyPart::deserialize(de::value::MapAccessDeserializer::new(map)).map(|p| vec![p])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut parts = Vec::new();
            while let Some(part) = seq.next_element::<KeyPart>()? {
                parts.push(part);
            }
            Ok(parts)
        }
    }

    d.deserialize_any(KeyVisitor)
}

fn serialize_key<S: Serializer>(parts: &[KeyPart], s: S) -> Result<S::Ok, S::Error> {
    parts.serialize(s)
}

/// Human duration strings (`"50ms"`, `"1m"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (use e.g. \"50ms\", \"1s\", \"1m\")"
            ))
        })
    }
}
