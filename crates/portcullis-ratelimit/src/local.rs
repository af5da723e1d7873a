//! The local store: one governor keyed [`RateLimiter`] per limit, over a state store
//! that caps the number of keys, and a clock that follows `tokio::time` (so tests
//! can pause and advance it).

use std::hash::{BuildHasherDefault, Hasher};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::metrics;

/// The GCRA parameters of a limit, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Time one request "costs": `per / rate` (the emission interval).
    pub(crate) interval: Duration,
    /// Requests allowed at once.
    pub(crate) burst: NonZeroU32,
}

/// What one limit said about one request, for the `RateLimit` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitState {
    /// Requests left right now.
    pub(crate) remaining: u32,
    /// Time until the full burst is available again (an upper bound by less than
    /// one interval when the request was allowed).
    pub(crate) reset: Duration,
    /// When denied, the wait until the next request can pass.
    pub(crate) denied: Option<Duration>,
}

/// One check against one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Allowed; `remaining` more would pass right after.
    Allowed { remaining: u32 },
    /// Denied; the next request could pass after `wait`.
    Denied { wait: Duration },
}

// === impl Params ===

impl Params {
    /// `rate` per `per` with `burst` (validated: all non-zero, interval ≥ 1ns).
    pub(crate) fn new(rate: u32, per: Duration, burst: u32) -> Self {
        let interval = per
            .checked_div(rate)
            .unwrap_or(per)
            .max(Duration::from_nanos(1));
        Self {
            interval,
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// This limit's share on one of `fleet` gateways: the interval times `fleet`,
    /// the burst divided by it (at least 1).
    pub(crate) fn share(self, fleet: u32) -> Self {
        let fleet = fleet.max(1);
        Self {
            interval: self.interval.saturating_mul(fleet),
            burst: NonZeroU32::new(self.burst.get() / fleet).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// The burst tolerance: `(burst - 1) × interval`.
    pub(crate) fn tolerance(self) -> Duration {
        self.interval.saturating_mul(self.burst.get() - 1)
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst)
    }

    /// The state after `check`; `consumed` is false when an allowed check was only a
    /// peek that did not count.
    pub(crate) fn state(self, check: Check, consumed: bool) -> LimitState {
        match check {
            Check::Allowed { remaining } => {
                let remaining = if consumed {
                    remaining
                } else {
                    remaining.saturating_add(1).min(self.burst.get())
                };
                LimitState {
                    remaining,
                    reset: self
                        .interval
                        .saturating_mul(self.burst.get().saturating_sub(remaining)),
                    denied: None,
                }
            }
            Check::Denied { wait } => LimitState {
                remaining: 0,
                reset: wait.saturating_add(self.tolerance()),
                denied: Some(wait),
            },
        }
    }
}

// === clock ===

/// A governor clock reading `tokio::time::Instant`, so that `tokio::time::pause`
/// and `advance` move it.
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let elapsed = self.origin.elapsed();
        Nanos::new(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }
}

// === state store ===

/// The key given to governor: the hashed request key, and whether this check is a
/// peek that must not change any state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Probe {
    hash: u64,
    peek: bool,
}

/// Keys are already uniform 64-bit hashes: use them as they are.
#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Overflow states of a limit: new keys past the cap are spread over them by
/// hash, so a flood of new keys shares its quota with 1/64 of the newcomers
/// rather than with all of them.
const OVERFLOW_STATES: usize = 64;

/// A keyed state store holding at most `cap` keys; keys past the cap share
/// [`OVERFLOW_STATES`] overflow states.
#[derive(Debug)]
pub(crate) struct KeyStore {
    map: DashMap<u64, AtomicU64, BuildHasherDefault<IdHasher>>,
    overflow: Box<[AtomicU64]>,
    /// Keys in `map`, counted before they are inserted so the cap holds under
    /// concurrent inserts.
    tracked: AtomicUsize,
    cap: usize,
    shed: Arc<AtomicU64>,
    name: Arc<str>,
}

impl KeyStore {
    fn new(name: Arc<str>, cap: usize, shed: Arc<AtomicU64>) -> Self {
        Self {
            map: DashMap::default(),
            overflow: (0..OVERFLOW_STATES).map(|_| AtomicU64::new(0)).collect(),
            tracked: AtomicUsize::new(0),
            cap,
            shed,
            name,
        }
    }
}

/// Governor's compare-and-swap loop over one state (0 means "never seen").
fn measure_and_replace_one<T, E>(
    cell: &AtomicU64,
    f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (result, next) = f(NonZeroU64::new(prev).map(|n| Nanos::new(n.get())))?;
        match cell.compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return Ok(result),
            Err(actual) => prev = actual,
        }
    }
}

fn peek_one<T, E>(
    cell: Option<&AtomicU64>,
    f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    let prev = cell.map_or(0, |c| c.load(Ordering::Acquire));
    f(NonZeroU64::new(prev).map(|n| Nanos::new(n.get()))).map(|(result, _)| result)
}

impl StateStore for KeyStore {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(cell) = self.map.get(&key.hash) {
            return if key.peek {
                peek_one(Some(&*cell), f)
            } else {
                measure_and_replace_one(&cell, f)
            };
        }
        let overflow = &self.overflow[usize::try_from(key.hash).unwrap_or(0) % OVERFLOW_STATES];
        if key.peek {
            let full = self.tracked.load(Ordering::Relaxed) >= self.cap;
            return peek_one(full.then_some(overflow), f);
        }
        // Claim a place first, so that concurrent inserts cannot pass the cap.
        if self.tracked.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.tracked.fetch_sub(1, Ordering::AcqRel);
            // Past the cap: counted with the other new keys of its overflow state.
            self.shed.fetch_add(1, Ordering::Relaxed);
            metrics::shed(&self.name);
            return measure_and_replace_one(overflow, f);
        }
        let cell = match self.map.entry(key.hash) {
            dashmap::mapref::entry::Entry::Occupied(e) => {
                // Inserted meanwhile by another request: give the place back.
                self.tracked.fetch_sub(1, Ordering::AcqRel);
                e.into_ref()
            }
            dashmap::mapref::entry::Entry::Vacant(e) => e.insert(AtomicU64::new(0)),
        };
        measure_and_replace_one(&cell, f)
    }
}

impl ShrinkableKeyedStateStore<Probe> for KeyStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = drop_below.as_u64();
        let mut removed = 0usize;
        self.map.retain(|_, tat| {
            let keep = tat.load(Ordering::Relaxed) > drop_below;
            removed += usize::from(!keep);
            keep
        });
        self.tracked.fetch_sub(removed, Ordering::AcqRel);
        for state in self.overflow.iter() {
            if state.load(Ordering::Relaxed) <= drop_below {
                state.store(0, Ordering::Relaxed);
            }
        }
    }

    fn shrink_to_fit(&self) {
        // Only when most of the room is unused: shrinking reallocates.
        if self.map.capacity() > 4 * self.map.len() + 1024 {
            self.map.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl LocalLimiter ===

type Limiter = RateLimiter<Probe, KeyStore, TokioClock, StateInformationMiddleware>;

/// One limit's local state.
#[derive(Debug)]
pub(crate) struct LocalLimiter {
    limiter: Limiter,
    params: Params,
    shed: Arc<AtomicU64>,
}

impl LocalLimiter {
    pub(crate) fn new(name: Arc<str>, params: Params, cap: usize) -> Self {
        let shed = Arc::new(AtomicU64::new(0));
        let store = KeyStore::new(name, cap, Arc::clone(&shed));
        let limiter: Limiter = RateLimiter::new(params.quota(), store, TokioClock::new());
        Self {
            limiter,
            params,
            shed,
        }
    }

    pub(crate) fn params(&self) -> Params {
        self.params
    }

    /// Checks the key `hash`; a `peek` changes nothing.
    pub(crate) fn check(&self, hash: u64, peek: bool) -> Check {
        match self.limiter.check_key(&Probe { hash, peek }) {
            Ok(snapshot) => Check::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Check::Denied {
                wait: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Forgets keys whose state is the same as a fresh one, and gives the memory
    /// back. Returns the number of keys still tracked.
    pub(crate) fn sweep(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }

    /// Keys tracked (not counting the overflow state).
    pub(crate) fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Requests of new keys counted in an overflow state so far.
    pub(crate) fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}
