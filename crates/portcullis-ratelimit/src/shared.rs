//! The state every clone of a layer and its services shares: the compiled limits,
//! their stores, and the decision logic.

use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use http::{HeaderValue, Request};
use portcullis_core::MatchedRoute;

use crate::key::{KeyInput, KeySpec};
use crate::local::{Check, LimitState, LocalLimiter, Params, TokioClock};
use crate::{ConfigError, RateLimitConfig, StoreConfig, metrics};

/// One compiled limit.
#[derive(Debug)]
pub(crate) struct Limit {
    pub(crate) name: Arc<str>,
    pub(crate) key: KeySpec,
    /// The configured quota (fleet-wide with Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) params: Params,
    /// The local limiter: the store itself, or with Redis the fail-open fallback
    /// holding this gateway's share of the quota.
    pub(crate) local: LocalLimiter,
    /// Its `RateLimit-Policy` item.
    policy: String,
}

/// What the layer decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Let through; `fallback` when the local fallback decided.
    Allowed { fallback: bool },
    /// 429 with `Retry-After: retry_after` seconds.
    Limited { retry_after: u64 },
    /// 503: the store cannot be reached and the policy is to fail closed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable,
}

/// An [`Outcome`] with the `RateLimit` header value, when there is one.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) state: Option<HeaderValue>,
}

/// The headers to add to the response.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    pub(crate) policy: HeaderValue,
    pub(crate) state: Option<HeaderValue>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// The limits this layer checks, in order.
    pub(crate) limits: Box<[Arc<Limit>]>,
    /// Every limit of the config this layer was made from (those of the layers
    /// [`Shared::select`] makes too): swept together.
    all: Arc<[Arc<Limit>]>,
    uses_ip: bool,
    hasher: RandomState,
    /// `RateLimit-Policy`, the same on every response; `None` without limits.
    policy: Option<HeaderValue>,
    clock: TokioClock,
    sweep_every: u64,
    next_sweep: Arc<AtomicU64>,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<Arc<crate::redis_store::RedisStore>>,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn from_config(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        if let Err(mut errors) = config.validate() {
            // `validate` returns at least one error when it fails.
            return Err(errors.swap_remove(0));
        }
        let fleet = match &config.store {
            StoreConfig::Local => 1,
            StoreConfig::Redis(redis) => redis.fleet_size,
        };
        let all: Arc<[Arc<Limit>]> = config
            .limits
            .iter()
            .map(|limit| {
                let name: Arc<str> = Arc::from(limit.name.as_str());
                let params = Params::new(limit.rate, limit.per, limit.effective_burst());
                Arc::new(Limit {
                    local: LocalLimiter::new(
                        Arc::clone(&name),
                        params.share(fleet),
                        config.max_keys,
                    ),
                    key: KeySpec::new(&limit.key),
                    name,
                    params,
                    policy: policy_item(&limit.name, limit.rate, limit.per),
                })
            })
            .collect();
        let clock = TokioClock::new();
        let sweep_every = nanos(config.sweep_interval);
        Ok(Self {
            uses_ip: all.iter().any(|l| l.key.uses_client_ip()),
            policy: policy_header(&all),
            limits: all.iter().cloned().collect(),
            all,
            hasher: RandomState::new(),
            next_sweep: Arc::new(AtomicU64::new(
                clock.now().as_u64().saturating_add(sweep_every),
            )),
            clock,
            sweep_every,
            #[cfg(feature = "redis")]
            redis: match &config.store {
                StoreConfig::Local => None,
                StoreConfig::Redis(redis) => {
                    Some(Arc::new(crate::redis_store::RedisStore::new(redis)?))
                }
            },
        })
    }

    /// A layer over some of this one's limits, by name and in this order, sharing
    /// their state, the store and its breaker. `None` names a limit it lacks.
    pub(crate) fn select(&self, names: &[&str]) -> Result<Self, String> {
        let mut limits = Vec::with_capacity(names.len());
        for name in names {
            let limit = self
                .all
                .iter()
                .find(|l| &*l.name == *name)
                .ok_or_else(|| (*name).to_owned())?;
            limits.push(Arc::clone(limit));
        }
        Ok(Self {
            uses_ip: limits.iter().any(|l| l.key.uses_client_ip()),
            policy: policy_header(&limits),
            limits: limits.into(),
            all: Arc::clone(&self.all),
            hasher: self.hasher.clone(),
            clock: self.clock.clone(),
            sweep_every: self.sweep_every,
            next_sweep: Arc::clone(&self.next_sweep),
            #[cfg(feature = "redis")]
            redis: self.redis.clone(),
        })
    }

    pub(crate) fn has_limits(&self) -> bool {
        !self.limits.is_empty()
    }

    pub(crate) fn key_input<'a, B>(&self, req: &'a Request<B>) -> KeyInput<'a> {
        KeyInput::of(req, self.uses_ip)
    }

    /// The local key of `limit` for `input`.
    pub(crate) fn local_key(&self, limit: &Limit, input: &KeyInput<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        limit.key.write(input, &mut hasher);
        std::hash::Hasher::finish(&hasher)
    }

    /// Decides `req` with the local limiters (the store, or the Redis fallback).
    ///
    /// With one limit the check counts at once. With several, every limit is first
    /// peeked without counting; only when all would allow are they counted, so a
    /// rejection by one limit does not use up the others. (Two requests racing for
    /// the last unit may both pass the peek; the loser is then rejected after the
    /// limits before it counted it.)
    pub(crate) fn decide_local(&self, input: &KeyInput<'_>, fallback: bool) -> Verdict {
        let keys: Vec<u64> = self
            .limits
            .iter()
            .map(|l| self.local_key(l, input))
            .collect();
        self.decide_local_keys(&keys, fallback)
    }

    pub(crate) fn decide_local_keys(&self, keys: &[u64], fallback: bool) -> Verdict {
        let mut states = Vec::with_capacity(self.limits.len());
        if self.limits.len() > 1 {
            let peeks: Vec<Check> = self
                .limits
                .iter()
                .zip(keys)
                .map(|(limit, &key)| limit.local.check(key, true))
                .collect();
            if peeks.iter().any(|c| matches!(c, Check::Denied { .. })) {
                for (limit, check) in self.limits.iter().zip(peeks) {
                    states.push(limit.local.params().state(check, false));
                }
                return self.verdict(&states, fallback);
            }
        }
        for (limit, &key) in self.limits.iter().zip(keys) {
            let check = limit.local.check(key, false);
            states.push(limit.local.params().state(check, true));
        }
        self.verdict(&states, fallback)
    }

    /// The verdict for these per-limit states (in limit order).
    pub(crate) fn verdict(&self, states: &[LimitState], fallback: bool) -> Verdict {
        let wait = states.iter().filter_map(|s| s.denied).max();
        let outcome = match wait {
            Some(wait) => Outcome::Limited {
                retry_after: ceil_secs(wait).max(1),
            },
            None => Outcome::Allowed { fallback },
        };
        Verdict {
            outcome,
            state: self.state_header(states),
        }
    }

    /// `RateLimit`: every limit, the most restrictive (fewest remaining, then
    /// longest reset) first.
    fn state_header(&self, states: &[LimitState]) -> Option<HeaderValue> {
        let mut order: Vec<(&Arc<Limit>, &LimitState)> = self.limits.iter().zip(states).collect();
        order.sort_by(|a, b| {
            a.1.remaining
                .cmp(&b.1.remaining)
                .then(b.1.reset.cmp(&a.1.reset))
        });
        let mut out = String::with_capacity(32 * order.len());
        for (i, (limit, state)) in order.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(
                out,
                "\"{}\";r={};t={}",
                limit.name,
                state.remaining,
                ceil_secs(state.reset)
            );
        }
        HeaderValue::from_str(&out).ok()
    }

    /// The headers for a verdict.
    pub(crate) fn headers(&self, state: Option<HeaderValue>) -> Option<Headers> {
        self.policy.as_ref().map(|policy| Headers {
            policy: policy.clone(),
            state,
        })
    }

    /// Sweeps when `sweep_interval` has passed since the last sweep (one atomic
    /// load otherwise): on the blocking pool when there is a runtime, so the
    /// request that noticed it does not wait for it.
    pub(crate) fn maybe_sweep(&self) {
        let now = self.clock.now().as_u64();
        let next = self.next_sweep.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_sweep
                .compare_exchange(
                    next,
                    now.saturating_add(self.sweep_every),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let all = Arc::clone(&self.all);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || sweep(&all))),
                Err(_) => sweep(&all),
            }
        }
    }

    /// Forgets idle keys of every limit and returns their memory; reports the
    /// tracked keys.
    pub(crate) fn sweep(&self) {
        sweep(&self.all);
    }
}

fn sweep(limits: &[Arc<Limit>]) {
    for limit in limits {
        let keys = limit.local.sweep();
        metrics::tracked(&limit.name, keys);
        tracing::debug!(limit = %limit.name, keys, "swept rate limit keys");
    }
}

/// `RateLimit-Policy`: the limits' items, in order.
fn policy_header(limits: &[Arc<Limit>]) -> Option<HeaderValue> {
    if limits.is_empty() {
        return None;
    }
    let items: Vec<&str> = limits.iter().map(|l| l.policy.as_str()).collect();
    HeaderValue::from_str(&items.join(", ")).ok()
}

/// `"name";q=…;w=…`: the window is `per` in whole seconds (rounded up) and the
/// quota the requests allowed in that window (`rate` scaled from `per` to it).
fn policy_item(name: &str, rate: u32, per: Duration) -> String {
    let window = ceil_secs(per).max(1);
    let per_ns = per.as_nanos().max(1);
    let quota = u128::from(rate) * u128::from(window) * 1_000_000_000 / per_ns;
    format!("\"{name}\";q={quota};w={window}")
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The matched route template, for the metric label.
pub(crate) fn route_of<B>(req: &Request<B>) -> Option<Arc<str>> {
    req.extensions()
        .get::<MatchedRoute>()
        .map(|r| Arc::clone(&r.template))
}
