//! Load balancers (R13): round robin, smooth weighted round robin and
//! power-of-two-choices least-request. Lock-free on the hot path.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::model::Balancer;

/// How many schedule slots the weighted balancer tries before it scans linearly for
/// an available endpoint.
const WEIGHTED_PROBES: usize = 64;
/// The penalty, in in-flight requests, that one failure adds to an endpoint's score.
pub const FAILURE_PENALTY: f32 = 4.0;
/// The largest penalty an endpoint can carry.
pub const MAX_PENALTY: f32 = 1024.0;
/// The penalty halves every this many milliseconds.
pub const PENALTY_HALF_LIFE_MS: u32 = 5_000;

/// Picks one endpoint of a list. Implementations are `Send + Sync` and lock-free.
pub trait LoadBalancer<T>: Send + Sync {
    /// Picks an endpoint for which `is_available` is true; `None` when there is none.
    /// Hold the returned [`Pick`] for the whole request: its guard counts it in flight.
    fn pick(&self, is_available: &dyn Fn(&T) -> bool) -> Option<Pick<T>>;
}

/// A picked endpoint and its in-flight guard.
#[derive(Debug)]
pub struct Pick<T> {
    /// The endpoint.
    pub endpoint: T,
    /// Counts the request in flight until dropped.
    pub guard: InFlightGuard,
}

/// Counts a request in flight on its endpoint until dropped; reports the outcome.
/// Round robin and weighted balancers hand out an inert guard.
#[derive(Debug, Default)]
pub struct InFlightGuard {
    load: Option<(Arc<Load>, Arc<Clock>)>,
}

/// Round robin over the available endpoints.
#[derive(Debug)]
pub struct RoundRobin<T> {
    endpoints: Vec<T>,
    next: AtomicUsize,
}

/// Smooth weighted round robin from a precomputed schedule: over a cycle of
/// `sum(weights) / gcd(weights)` picks each endpoint is chosen exactly its share, spread
/// out rather than in bursts. Building costs O(W log n); memory is 4 bytes per slot
/// (at most 4 MiB at the registry's limits: 1024 endpoints of weight 1000).
#[derive(Debug)]
pub struct WeightedRoundRobin<T> {
    endpoints: Vec<T>,
    schedule: Vec<u32>,
    next: AtomicUsize,
}

/// Power of two choices on `in_flight + penalty`: two random available endpoints are
/// compared and the lower score wins. A failure adds [`FAILURE_PENALTY`], decaying with a
/// half-life of [`PENALTY_HALF_LIFE_MS`], so an endpoint that fails fast (and so has
/// few requests in flight) is not favoured.
#[derive(Debug)]
pub struct LeastRequest<T> {
    endpoints: Vec<(T, Arc<Load>)>,
    clock: Arc<Clock>,
}

/// Any of the balancers, chosen by a service's [`Balancer`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyBalancer<T> {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin<T>),
    /// See [`WeightedRoundRobin`].
    Weighted(WeightedRoundRobin<T>),
    /// See [`LeastRequest`].
    LeastRequest(LeastRequest<T>),
}

#[derive(Debug, Default)]
struct Load {
    in_flight: AtomicUsize,
    /// High 32 bits: the penalty as `f32` bits; low 32 bits: the clock (ms) at which it
    /// was last updated.
    penalty: AtomicU64,
}

#[derive(Debug)]
struct Clock {
    start: Instant,
}

// === impl InFlightGuard ===

impl InFlightGuard {
    /// Reports how the request ended: a failure (connect error, 5xx, timeout) raises the
    /// endpoint's penalty, a success halves it.
    pub fn record_outcome(&self, ok: bool) {
        if let Some((load, clock)) = &self.load {
            load.record(ok, clock.now_ms());
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some((load, _)) = &self.load {
            load.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

// === impl Load ===

impl Load {
    fn penalty_at(packed: u64, now: u32) -> f32 {
        let (hi, at) = ((packed >> 32) as u32, packed as u32);
        let p = f32::from_bits(hi);
        if p <= 0.0 || !p.is_finite() {
            return 0.0;
        }
        let elapsed = now.wrapping_sub(at) as f32;
        p * (-(elapsed / PENALTY_HALF_LIFE_MS as f32)).exp2()
    }

    fn record(&self, ok: bool, now: u32) {
        let _ = self
            .penalty
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |packed| {
                let p = Self::penalty_at(packed, now);
                let next = if ok {
                    if p == 0.0 {
                        return None;
                    }
                    if p < 0.01 { 0.0 } else { p / 2.0 }
                } else {
                    (p + FAILURE_PENALTY).min(MAX_PENALTY)
                };
                Some((u64::from(next.to_bits()) << 32) | u64::from(now))
            });
    }

    fn score(&self, now: u32) -> f32 {
        let in_flight = self.in_flight.load(Ordering::Acquire) as f32;
        in_flight + Self::penalty_at(self.penalty.load(Ordering::Acquire), now)
    }
}

// === impl Clock ===

impl Clock {
    fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since the balancer was built; wraps after ~49 days, which the
    /// penalty's wrapping arithmetic tolerates.
    fn now_ms(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }
}

// === impl RoundRobin ===

impl<T> RoundRobin<T> {
    /// A round robin over `endpoints`.
    pub fn new(endpoints: Vec<T>) -> Self {
        RoundRobin {
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[T] {
        &self.endpoints
    }
}

impl<T: Clone + Send + Sync> LoadBalancer<T> for RoundRobin<T> {
    fn pick(&self, is_available: &dyn Fn(&T) -> bool) -> Option<Pick<T>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let cur = self.next.fetch_add(1, Ordering::Relaxed);
        let start = cur % n;
        let found = scan(&self.endpoints, start, is_available)?;
        if found != start {
            // Move the cursor past the endpoint we fell through to, so the next pick
            // does not land on it again (unless another pick moved it meanwhile).
            let skipped = (found + n - start) % n;
            let _ = self.next.compare_exchange(
                cur.wrapping_add(1),
                cur.wrapping_add(1).wrapping_add(skipped),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        self.endpoints.get(found).map(|e| Pick {
            endpoint: e.clone(),
            guard: InFlightGuard::default(),
        })
    }
}

/// The first index at or after `start` (wrapping) whose endpoint is available.
fn scan<T>(endpoints: &[T], start: usize, is_available: &dyn Fn(&T) -> bool) -> Option<usize> {
    let n = endpoints.len();
    (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| endpoints.get(i).is_some_and(is_available))
}

// === impl WeightedRoundRobin ===

impl<T> WeightedRoundRobin<T> {
    /// A weighted round robin over `(endpoint, weight)`; a weight of 0 counts as 1.
    pub fn new(weighted: Vec<(T, u32)>) -> Self {
        let weights: Vec<u64> = weighted
            .iter()
            .map(|(_, w)| u64::from((*w).max(1)))
            .collect();
        let endpoints = weighted.into_iter().map(|(e, _)| e).collect();
        WeightedRoundRobin {
            endpoints,
            schedule: smooth_schedule(&weights),
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[T] {
        &self.endpoints
    }

    /// The length of one cycle: `sum(weights) / gcd(weights)`.
    pub fn cycle_len(&self) -> usize {
        self.schedule.len()
    }
}

/// Builds one smooth cycle in O(W log n): endpoint `i`'s `k`-th turn is due at
/// `(k + ½) / wᵢ` of the cycle, and turns are taken in order of due time (ties by index).
/// Each endpoint gets exactly its weight of slots, evenly spread, as nginx's smooth
/// weighted round robin does.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = weights.iter().sum();
    let mut heap: BinaryHeap<Reverse<Turn>> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(index, &weight)| {
            Reverse(Turn {
                k: 0,
                weight,
                index,
            })
        })
        .collect();
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    while let Some(Reverse(turn)) = heap.pop() {
        schedule.push(u32::try_from(turn.index).unwrap_or(u32::MAX));
        if turn.k + 1 < turn.weight {
            heap.push(Reverse(Turn {
                k: turn.k + 1,
                ..turn
            }));
        }
    }
    schedule
}

/// The `k`-th turn of endpoint `index`, due at `(2k + 1) / (2 weight)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    k: u64,
    weight: u64,
    index: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // (2a+1)/wa vs (2b+1)/wb, cross-multiplied: weights ≤ 2³² and k < weight, so
        // the products fit in u128.
        let lhs = u128::from(2 * self.k + 1) * u128::from(other.weight);
        let rhs = u128::from(2 * other.k + 1) * u128::from(self.weight);
        lhs.cmp(&rhs).then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<T: Clone + Send + Sync> LoadBalancer<T> for WeightedRoundRobin<T> {
    fn pick(&self, is_available: &dyn Fn(&T) -> bool) -> Option<Pick<T>> {
        let len = self.schedule.len();
        if len == 0 || self.endpoints.is_empty() {
            return None;
        }
        let mut last = 0;
        for _ in 0..WEIGHTED_PROBES.min(len) {
            let slot = self.next.fetch_add(1, Ordering::Relaxed) % len;
            let idx = self
                .schedule
                .get(slot)
                .and_then(|&i| usize::try_from(i).ok())
                .unwrap_or(0);
            last = idx;
            if let Some(e) = self.endpoints.get(idx).filter(|e| is_available(e)) {
                return Some(Pick {
                    endpoint: e.clone(),
                    guard: InFlightGuard::default(),
                });
            }
        }
        let found = scan(&self.endpoints, last, is_available)?;
        self.endpoints.get(found).map(|e| Pick {
            endpoint: e.clone(),
            guard: InFlightGuard::default(),
        })
    }
}

// === impl LeastRequest ===

impl<T> LeastRequest<T> {
    /// A least-request balancer over `endpoints`.
    pub fn new(endpoints: Vec<T>) -> Self {
        LeastRequest {
            endpoints: endpoints
                .into_iter()
                .map(|e| (e, Arc::new(Load::default())))
                .collect(),
            clock: Arc::new(Clock::new()),
        }
    }

    /// The number of requests in flight on the endpoint at `index`.
    pub fn in_flight(&self, index: usize) -> Option<usize> {
        self.endpoints
            .get(index)
            .map(|(_, l)| l.in_flight.load(Ordering::Acquire))
    }
}

impl<T: Clone + Send + Sync> LoadBalancer<T> for LeastRequest<T> {
    fn pick(&self, is_available: &dyn Fn(&T) -> bool) -> Option<Pick<T>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let avail = |e: &(T, Arc<Load>)| is_available(&e.0);
        let a = scan(&self.endpoints, random_below(n), &avail)?;
        let b = scan(&self.endpoints, random_below(n), &avail)
            .filter(|&b| b != a)
            .or_else(|| scan(&self.endpoints, (a + 1) % n, &avail))
            .unwrap_or(a);
        let now = self.clock.now_ms();
        let (ea, eb) = (self.endpoints.get(a)?, self.endpoints.get(b)?);
        let (endpoint, load) = if eb.1.score(now) < ea.1.score(now) {
            eb
        } else {
            ea
        };
        load.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Pick {
            endpoint: endpoint.clone(),
            guard: InFlightGuard {
                load: Some((load.clone(), self.clock.clone())),
            },
        })
    }
}

/// A fast per-thread xorshift generator, seeded from the process's random hasher keys.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(0);
            h.finish() | 1
        });
    }
    let x = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    // n is at most the endpoint count, so it fits in u64 and the result fits in usize.
    (x % n as u64) as usize
}

// === impl AnyBalancer ===

impl<T> AnyBalancer<T> {
    /// Builds the balancer `kind` over `(endpoint, weight)`; weights matter only to
    /// [`Balancer::Weighted`].
    pub fn new(kind: Balancer, endpoints: Vec<(T, u32)>) -> Self {
        match kind {
            Balancer::Weighted => AnyBalancer::Weighted(WeightedRoundRobin::new(endpoints)),
            Balancer::LeastRequest => AnyBalancer::LeastRequest(LeastRequest::new(
                endpoints.into_iter().map(|(e, _)| e).collect(),
            )),
            Balancer::RoundRobin => AnyBalancer::RoundRobin(RoundRobin::new(
                endpoints.into_iter().map(|(e, _)| e).collect(),
            )),
        }
    }
}

impl<T: Clone + Send + Sync> LoadBalancer<T> for AnyBalancer<T> {
    fn pick(&self, is_available: &dyn Fn(&T) -> bool) -> Option<Pick<T>> {
        match self {
            AnyBalancer::RoundRobin(b) => b.pick(is_available),
            AnyBalancer::Weighted(b) => b.pick(is_available),
            AnyBalancer::LeastRequest(b) => b.pick(is_available),
        }
    }
}

impl fmt::Display for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: &&str) -> bool {
        true
    }

    fn pick_n<B: LoadBalancer<&'static str>>(b: &B, n: usize) -> Vec<&'static str> {
        (0..n).map(|_| b.pick(&all).unwrap().endpoint).collect()
    }

    #[test]
    fn round_robin_order_and_skip() {
        let rr = RoundRobin::new(vec!["a", "b", "c"]);
        assert_eq!(pick_n(&rr, 6), ["a", "b", "c", "a", "b", "c"]);
        let not_b = |e: &&str| *e != "b";
        let got: Vec<_> = (0..4).map(|_| rr.pick(&not_b).unwrap().endpoint).collect();
        assert_eq!(got, ["a", "c", "a", "c"]);
        assert!(rr.pick(&|_: &&str| false).is_none());
        assert!(RoundRobin::<&str>::new(vec![]).pick(&all).is_none());
    }

    #[test]
    fn weighted_exact_over_1000_picks() {
        let w = WeightedRoundRobin::new(vec![("a", 1), ("b", 3), ("c", 6)]);
        assert_eq!(w.cycle_len(), 10);
        let picks = pick_n(&w, 1000);
        let count = |x: &str| picks.iter().filter(|p| **p == x).count();
        assert_eq!((count("a"), count("b"), count("c")), (100, 300, 600));
        assert_eq!(
            picks[..10],
            ["c", "b", "c", "c", "a", "b", "c", "c", "b", "c"]
        );
        // Smooth: c never runs three times in a row.
        assert!(!picks.windows(3).any(|w| w.iter().all(|p| *p == "c")));
        // gcd reduction.
        let w = WeightedRoundRobin::new(vec![("a", 500), ("b", 250)]);
        assert_eq!(w.cycle_len(), 3);
        assert_eq!(pick_n(&w, 3), ["a", "b", "a"]);
    }

    #[test]
    fn weighted_schedule_at_the_limits_is_exact() {
        let eps: Vec<(usize, u32)> = (0..1024).map(|i| (i, 1000 - (i % 2) as u32)).collect();
        let w = WeightedRoundRobin::new(eps);
        assert_eq!(w.cycle_len(), 512 * 1000 + 512 * 999);
        let mut counts = vec![0u32; 1024];
        for _ in 0..w.cycle_len() {
            counts[w.pick(&|_: &usize| true).unwrap().endpoint] += 1;
        }
        assert!(
            counts
                .iter()
                .enumerate()
                .all(|(i, c)| *c == 1000 - (i % 2) as u32)
        );
    }

    #[test]
    fn weighted_skips_unavailable() {
        let w = WeightedRoundRobin::new(vec![("a", 1), ("b", 1000)]);
        let only_a = |e: &&str| *e == "a";
        for _ in 0..10 {
            assert_eq!(w.pick(&only_a).unwrap().endpoint, "a");
        }
        assert!(w.pick(&|_: &&str| false).is_none());
    }

    #[test]
    fn p2c_prefers_the_less_loaded() {
        let lr = LeastRequest::new(vec!["a", "b"]);
        let mut held = Vec::new();
        while held.len() < 3 {
            let p = lr.pick(&|e: &&str| *e == "a").unwrap();
            held.push(p);
        }
        assert_eq!(lr.in_flight(0), Some(3));
        for _ in 0..100 {
            assert_eq!(lr.pick(&all).unwrap().endpoint, "b");
        }
        assert_eq!(lr.in_flight(1), Some(0), "guards decrement on drop");
        drop(held);
        assert_eq!(lr.in_flight(0), Some(0));

        // With three endpoints, the most loaded one is never picked.
        let lr = LeastRequest::new(vec!["a", "b", "c"]);
        let mut held = Vec::new();
        for (name, n) in [("a", 10), ("b", 5)] {
            for _ in 0..n {
                held.push(lr.pick(&|e: &&str| *e == name).unwrap());
            }
        }
        for _ in 0..200 {
            assert_ne!(lr.pick(&all).unwrap().endpoint, "a");
        }
        assert!(lr.pick(&|_: &&str| false).is_none());
    }

    #[test]
    fn fast_failing_endpoint_is_not_favoured() {
        let lr = LeastRequest::new(vec!["bad", "good"]);
        // "good" is busy with one slow request; "bad" answers every request at once
        // with an error, so it never has anything in flight.
        let _slow = lr.pick(&|e: &&str| *e == "good").unwrap();
        let mut bad = 0;
        for _ in 0..1000 {
            let p = lr.pick(&all).unwrap();
            if p.endpoint == "bad" {
                bad += 1;
                p.guard.record_outcome(false);
            } else {
                p.guard.record_outcome(true);
            }
        }
        assert!(bad <= 2, "the failing endpoint got {bad} of 1000 requests");
    }

    #[test]
    fn penalty_decays_and_success_halves() {
        let load = Load::default();
        load.record(false, 0);
        assert_eq!(load.score(0), FAILURE_PENALTY);
        assert_eq!(load.score(PENALTY_HALF_LIFE_MS), FAILURE_PENALTY / 2.0);
        load.record(true, 0);
        assert_eq!(load.score(0), FAILURE_PENALTY / 2.0);
    }

    #[test]
    fn any_balancer_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<AnyBalancer<Arc<str>>>();
        assert_send_sync::<Pick<Arc<str>>>();
        let b = AnyBalancer::new(Balancer::Weighted, vec![("a", 2), ("b", 1)]);
        assert_eq!(pick_n(&b, 3), ["a", "b", "a"]);
        let b: Box<dyn LoadBalancer<&str>> = Box::new(AnyBalancer::new(
            Balancer::RoundRobin,
            vec![("a", 9), ("b", 1)],
        ));
        assert_eq!(b.pick(&all).unwrap().endpoint, "a");
        assert_eq!(b.pick(&all).unwrap().endpoint, "b");
    }
}
