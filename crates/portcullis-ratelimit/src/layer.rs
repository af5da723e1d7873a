//! [`RateLimitLayer`]: configuration and `impl Layer`.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::shared::Shared;
use crate::{ConfigError, LimitConfig, RateLimit, RateLimitConfig};

/// Applies [`RateLimit`] to a service: see the [crate docs](crate).
///
/// Every clone, and every service it makes, shares the same limits and state;
/// two layers built separately count separately (unless they share Redis).
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

/// Debug helper listing the limits by name.
pub(crate) struct LimitNames<'a>(pub(crate) &'a Shared);

impl fmt::Debug for LimitNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.limits.iter().map(|l| &*l.name))
            .finish()
    }
}

// === impl RateLimitLayer ===

impl RateLimitLayer {
    /// One limit in this process's memory, with the defaults of
    /// [`RateLimitConfig`] (no trusted proxies, `max_keys` 100000, sweep every 60s).
    ///
    /// # Errors
    ///
    /// The first mistake in `limit`, as [`RateLimitConfig::validate`] finds them.
    pub fn new(limit: LimitConfig) -> Result<Self, ConfigError> {
        Self::from_config(&RateLimitConfig::new().limit(limit))
    }

    /// The limits of `config`. Needs no runtime: with Redis, the connection is made
    /// on the first request.
    ///
    /// # Errors
    ///
    /// The first mistake in `config`; call [`RateLimitConfig::validate`] for all.
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Arc::new(Shared::from_config(config)?),
        })
    }

    /// Forgets the keys whose state is the same as a fresh key's (their quota is
    /// full again), and gives their memory back. The layer also does this by itself
    /// on the first request after each `sweep_interval`.
    pub fn sweep(&self) {
        self.shared.sweep();
    }

    /// Keys the limit `name` tracks in memory (its overflow states not counted), or
    /// `None` when there is no such limit.
    pub fn tracked_keys(&self, name: &str) -> Option<usize> {
        self.limit(name).map(|l| l.local.tracked())
    }

    /// Requests of new keys the limit `name` counted in its overflow states because it
    /// already tracked `max_keys`, or `None` when there is no such limit.
    pub fn overflowed_keys(&self, name: &str) -> Option<u64> {
        self.limit(name).map(|l| l.local.shed())
    }

    fn limit(&self, name: &str) -> Option<&crate::shared::Limit> {
        self.shared
            .limits
            .iter()
            .find(|l| &*l.name == name)
            .map(|l| &**l)
    }

    /// A layer that checks only the limits `names` of this one, in this order,
    /// sharing their state (and the Redis store and its breaker): what a route
    /// that uses several of a config's limits needs. Every limit a request passes
    /// is counted only when all of them allow it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownLimit`] for a name this layer does not have.
    pub fn select(&self, names: &[&str]) -> Result<Self, ConfigError> {
        let shared = self
            .shared
            .select(names)
            .map_err(|name| ConfigError::UnknownLimit { name })?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    pub(crate) fn wrap<S>(&self, inner: S) -> RateLimit<S> {
        RateLimit::from_shared(inner, Arc::clone(&self.shared))
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &LimitNames(&self.shared))
            .finish()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.wrap(inner)
    }
}
