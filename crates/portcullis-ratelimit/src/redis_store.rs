//! The Redis store (feature `redis`): the same GCRA, computed atomically in Redis by
//! a Lua script, behind a per-call timeout and a circuit breaker.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use http::Request;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::redact_url;
use crate::future::CheckFuture;
use crate::key::{KeyInput, Sink};
use crate::local::{Check, LimitState, Params};
use crate::shared::{Limit, Outcome, Shared, Verdict};
use crate::{ConfigError, FailurePolicy, RedisConfig, metrics};

/// GCRA in Lua over several limits at once, in microseconds of the server's clock
/// (`TIME`), so that every gateway shares one clock. All or nothing: a request is
/// counted by every limit only when all of them allow it. Portable: GET, SET with
/// PX and TIME only (Redis, Valkey, Dragonfly; no modules).
///
/// KEYS[i]: limit i's key. ARGV[2i-1], ARGV[2i]: its emission interval and burst
/// tolerance (µs). Returns {allowed (1 or 0), now, tat_1, …, tat_n}: each limit's
/// theoretical arrival time after this request (when allowed) or as it stands.
const SCRIPT: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats = {}
local denied = false
for i = 1, #KEYS do
  local tolerance = tonumber(ARGV[2 * i])
  local tat = now
  local stored = redis.call('GET', KEYS[i])
  if stored then
    tat = tonumber(stored) or now
    if tat < now then tat = now end
  end
  tats[i] = tat
  if now < tat - tolerance then denied = true end
end
local out = {denied and 0 or 1, now}
for i = 1, #KEYS do
  local tat = tats[i]
  if not denied then
    tat = tat + tonumber(ARGV[2 * i - 1])
    local ttl = math.ceil((tat - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', ttl)
  end
  out[#out + 1] = tat
end
return out
";

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The Redis store shared by a layer's clones.
pub(crate) struct RedisStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    policy: FailurePolicy,
    breaker: Breaker,
}

/// Skips Redis for a cooldown after a failure, then lets one request probe it.
#[derive(Debug)]
struct Breaker {
    origin: Instant,
    state: AtomicU8,
    /// When (ns since `origin`) the next probe may go.
    retry_at: AtomicU64,
    cooldown: Duration,
}

// === impl RedisStore ===

impl RedisStore {
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, ConfigError> {
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| ConfigError::InvalidRedisUrl {
                value: redact_url(&config.url),
                reason: redact_url(&e.to_string()),
            })?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            policy: config.on_failure,
            breaker: Breaker::new(config.breaker_cooldown),
        })
    }

    /// Starts the decision for `req`: keys are read now, Redis is asked in the
    /// returned future.
    pub(crate) fn check<B>(&self, shared: Arc<Shared>, req: &Request<B>) -> CheckFuture {
        let input = shared.key_input(req);
        let local: Vec<u64> = shared
            .limits
            .iter()
            .map(|l| shared.local_key(l, &input))
            .collect();
        let remote: Vec<String> = shared.limits.iter().map(|l| self.key(l, &input)).collect();
        Box::pin(decide(shared, remote, local))
    }

    /// `{prefix}{policy}:{hash}`: the policy in a hash tag, so a cluster keeps a
    /// policy's keys on one slot.
    fn key(&self, limit: &Limit, input: &KeyInput<'_>) -> String {
        struct ShaSink(Sha256);
        impl Sink for ShaSink {
            fn put(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut sink = ShaSink(Sha256::new());
        limit.key.write(input, &mut sink);
        let digest = sink.0.finalize();
        let mut key = String::with_capacity(self.prefix.len() + limit.name.len() + 36);
        key.push_str(&self.prefix);
        key.push('{');
        key.push_str(&limit.name);
        key.push_str("}:");
        for b in digest.iter().take(16) {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        key
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let manager = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(1))))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1));
                let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
                // Drive the first connection in the background, so that it completes
                // even when requests give up on it at their timeout.
                let mut warm = manager.clone();
                tokio::spawn(async move {
                    let _: RedisResult<()> = redis::cmd("PING").query_async(&mut warm).await;
                });
                Ok::<_, RedisError>(manager)
            })
            .await?;
        Ok(manager.clone())
    }

    /// Asks Redis about every limit at once (one script call, all or nothing).
    async fn run(&self, shared: &Shared, keys: &[String]) -> RedisResult<Vec<LimitState>> {
        let mut conn = self.connection().await?;
        let params: Vec<Params> = shared.limits.iter().map(|l| micros(l.params)).collect();
        let mut call = self.script.prepare_invoke();
        for (key, p) in keys.iter().zip(&params) {
            call.key(key)
                .arg(as_micros(p.interval))
                .arg(as_micros(p.tolerance()));
        }
        let reply: Vec<i64> = call.invoke_async(&mut conn).await?;
        let (Some(&allowed), Some(&now)) = (reply.first(), reply.get(1)) else {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected rate limit script reply",
            )));
        };
        let now = u64::try_from(now).unwrap_or(0);
        let counted = allowed == 1;
        let mut states = Vec::with_capacity(params.len());
        for (i, p) in params.iter().enumerate() {
            let tat = reply
                .get(i + 2)
                .and_then(|t| u64::try_from(*t).ok())
                .unwrap_or(now);
            let interval = as_micros(p.interval).max(1);
            let tolerance = as_micros(p.tolerance());
            // Counted: every limit allowed. Not: those whose tat is beyond the
            // tolerance refused (the script's test), the others were only peeked.
            let state = if !counted && now.saturating_add(tolerance) < tat {
                p.state(
                    Check::Denied {
                        wait: Duration::from_micros(tat - tolerance - now),
                    },
                    false,
                )
            } else {
                // Requests left now: after this one when it was counted.
                let left = (now + tolerance + interval).saturating_sub(tat) / interval;
                let left = u32::try_from(left).unwrap_or(u32::MAX).min(p.burst.get());
                if counted {
                    p.state(Check::Allowed { remaining: left }, true)
                } else {
                    p.state(
                        Check::Allowed {
                            remaining: left.saturating_sub(1),
                        },
                        false,
                    )
                }
            };
            states.push(state);
        }
        Ok(states)
    }

    /// The verdict when Redis is skipped or failed.
    fn without_redis(&self, shared: &Shared, local: &[u64]) -> Verdict {
        match self.policy {
            FailurePolicy::FailOpen => shared.decide_local_keys(local, true),
            FailurePolicy::FailClosed => Verdict {
                outcome: Outcome::Unavailable,
                state: None,
            },
        }
    }
}

async fn decide(shared: Arc<Shared>, remote: Vec<String>, local: Vec<u64>) -> Verdict {
    let Some(store) = shared.redis.as_ref() else {
        return shared.decide_local_keys(&local, false);
    };
    if !store.breaker.admit() {
        return store.without_redis(&shared, &local);
    }
    let started = Instant::now();
    match tokio::time::timeout(store.timeout, store.run(&shared, &remote)).await {
        Ok(Ok(states)) => {
            metrics::redis_duration(started.elapsed().as_secs_f64());
            store.breaker.success();
            shared.verdict(&states, false)
        }
        Ok(Err(error)) => {
            metrics::redis_error("error");
            store.breaker.failure(&error);
            store.without_redis(&shared, &local)
        }
        Err(_elapsed) => {
            metrics::redis_error("timeout");
            store
                .breaker
                .failure(&format_args!("no answer within {:?}", store.timeout));
            store.without_redis(&shared, &local)
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The parameters at the script's resolution: the interval rounded up to a whole
/// microsecond.
fn micros(params: Params) -> Params {
    let us = params.interval.as_nanos().div_ceil(1000).max(1);
    Params {
        interval: Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX)),
        burst: params.burst,
    }
}

fn as_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// === impl Breaker ===

impl Breaker {
    fn new(cooldown: Duration) -> Self {
        Self {
            origin: Instant::now(),
            state: AtomicU8::new(CLOSED),
            retry_at: AtomicU64::new(0),
            cooldown,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cooldown_from(&self, now: u64) -> u64 {
        now.saturating_add(u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Whether this request may use Redis: always when closed; when open, one
    /// request per cooldown (the probe).
    fn admit(&self) -> bool {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return true;
        }
        let now = self.now();
        let at = self.retry_at.load(Ordering::Acquire);
        if now < at {
            return false;
        }
        // Whoever moves `retry_at` probes; a probe that is dropped before it ends
        // simply lets the next one go after another cooldown.
        let won = self
            .retry_at
            .compare_exchange(
                at,
                self.cooldown_from(now),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if won {
            self.state.store(HALF_OPEN, Ordering::Release);
            metrics::breaker_state(HALF_OPEN);
        }
        won
    }

    fn success(&self) {
        if self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED {
            metrics::breaker_state(CLOSED);
            tracing::info!("rate limit store reachable again");
        }
    }

    fn failure(&self, error: &dyn fmt::Display) {
        self.retry_at
            .store(self.cooldown_from(self.now()), Ordering::Release);
        let before = self.state.swap(OPEN, Ordering::AcqRel);
        metrics::breaker_state(OPEN);
        if before == CLOSED {
            tracing::warn!(
                error = %error,
                cooldown_ms = self.cooldown.as_secs_f64() * 1000.0,
                "rate limit store unreachable, using the failure policy"
            );
        } else {
            tracing::debug!(error = %error, "rate limit store probe failed");
        }
    }
}

#[cfg(test)]
mod tests;
