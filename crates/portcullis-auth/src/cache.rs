//! The JWT scheme's cache of verified tokens, keyed by the SHA-256 of the token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// The largest `cache_ttl` accepted.
pub(crate) const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Successful verifications: digest of the token → identity, validity, key.
///
/// Only tokens with a valid signature get in, so unauthenticated clients cannot
/// fill it. At most `capacity` entries; see [`insert`](Self::insert).
pub(crate) struct TokenCache {
    map: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: usize,
    ttl: Duration,
}

/// The key that verified a cached token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A static key: static keys never change.
    Static,
    /// A JWKS key of this key-set generation.
    Jwks(u64),
}

struct Entry {
    identity: Arc<str>,
    /// Not served from this instant on: `min(insert + ttl, exp + leeway)`.
    valid_until: Instant,
    source: Source,
}

// === impl TokenCache ===

impl TokenCache {
    /// A cache of `capacity` entries kept at most `ttl` each; `None` (no cache)
    /// when either is zero. `ttl` is capped at [`MAX_CACHE_TTL`].
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Option<Self> {
        if capacity == 0 || ttl.is_zero() {
            return None;
        }
        Some(Self {
            map: Mutex::new(HashMap::new()),
            capacity,
            ttl: ttl.min(MAX_CACHE_TTL),
        })
    }

    /// The cache key of a token.
    pub(crate) fn digest(token: &[u8]) -> [u8; 32] {
        Sha256::digest(token).into()
    }

    /// The identity of a cached, still valid token. `generation` is the current
    /// JWKS key-set generation, if any: entries verified by a JWKS key of another
    /// generation are dropped, not served.
    pub(crate) fn get(&self, key: &[u8; 32], generation: Option<u64>) -> Option<Arc<str>> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get(key)?;
        if entry.live(now, generation) {
            return Some(entry.identity.clone());
        }
        map.remove(key);
        None
    }

    /// Remembers a verified token whose `exp` plus the leeway is `remaining`
    /// seconds away (by the system clock, read once by the caller).
    ///
    /// When full: expired and stale entries go first; if that frees less than an
    /// eighth of the capacity, the entries closest to their end go too, down to
    /// seven eighths. That O(n) sweep runs at most once every `capacity / 8`
    /// inserts, so inserting is O(1) amortised.
    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        identity: Arc<str>,
        source: Source,
        remaining: f64,
        generation: Option<u64>,
    ) {
        // Also refuses NaN.
        if remaining.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return;
        }
        let life = Duration::try_from_secs_f64(remaining).map_or(self.ttl, |d| d.min(self.ttl));
        let now = Instant::now();
        let Some(valid_until) = now.checked_add(life) else {
            return;
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| e.live(now, generation));
            let keep = self.capacity - (self.capacity / 8).max(1);
            if let Some(excess) = map.len().checked_sub(keep).filter(|n| *n > 0) {
                let mut ends: Vec<Instant> = map.values().map(|e| e.valid_until).collect();
                let (_, cutoff, _) = ends.select_nth_unstable(excess - 1);
                let cutoff = *cutoff;
                map.retain(|_, e| e.valid_until > cutoff);
            }
        }
        map.insert(
            key,
            Entry {
                identity,
                valid_until,
                source,
            },
        );
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl TokenCache {
    pub(crate) fn len_for_tests(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

// === impl Entry ===

impl Entry {
    fn live(&self, now: Instant, generation: Option<u64>) -> bool {
        self.valid_until > now
            && match self.source {
                Source::Static => true,
                Source::Jwks(g) => generation == Some(g),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> TokenCache {
        TokenCache::new(capacity, Duration::from_secs(60)).unwrap()
    }

    fn insert(c: &TokenCache, n: u8, remaining: f64, source: Source) {
        c.insert(
            [n; 32],
            Arc::from(n.to_string()),
            source,
            remaining,
            Some(1),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_end_at_the_ttl_or_the_token_expiry() {
        let c = cache(8);
        insert(&c, 1, 1e12, Source::Static);
        insert(&c, 2, 10.0, Source::Static);
        insert(&c, 3, 0.0, Source::Static);
        insert(&c, 4, f64::NAN, Source::Static);
        assert_eq!(c.len_for_tests(), 2, "nothing left to live is not cached");
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(c.get(&[2; 32], Some(1)).as_deref(), Some("2"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(c.get(&[2; 32], Some(1)), None, "the token expired");
        tokio::time::advance(Duration::from_millis(49_999)).await;
        assert_eq!(c.get(&[1; 32], Some(1)).as_deref(), Some("1"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(c.get(&[1; 32], Some(1)), None, "the ttl ended");
        assert_eq!(c.len_for_tests(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn jwks_entries_need_their_generation() {
        let c = cache(8);
        insert(&c, 1, 30.0, Source::Jwks(1));
        insert(&c, 2, 30.0, Source::Static);
        assert_eq!(c.get(&[1; 32], Some(1)).as_deref(), Some("1"));
        assert_eq!(c.get(&[2; 32], Some(2)).as_deref(), Some("2"));
        assert_eq!(c.get(&[1; 32], Some(2)), None);
        assert_eq!(c.get(&[1; 32], Some(1)), None, "dropped, not kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_drops_expired_then_closest_to_their_end() {
        let c = cache(16);
        // 0..4 end in 1..5 s; 4..16 in 14..26 s.
        for n in 0..16u8 {
            let remaining = if n < 4 { 1.0 } else { 10.0 } + f64::from(n);
            insert(&c, n, remaining, Source::Static);
        }
        // Full, nothing expired: the two closest to their end go (down to 14).
        insert(&c, 16, 30.0, Source::Static);
        assert_eq!(c.len_for_tests(), 15);
        assert_eq!(c.get(&[0; 32], Some(1)), None);
        assert_eq!(c.get(&[1; 32], Some(1)), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        insert(&c, 17, 30.0, Source::Static);
        assert_eq!(c.len_for_tests(), 16, "not full before: no sweep");
        // Full: the expired 2 and 3 go, which is enough.
        insert(&c, 18, 30.0, Source::Static);
        assert_eq!(c.len_for_tests(), 15);
        insert(&c, 19, 30.0, Source::Static);
        insert(&c, 20, 30.0, Source::Static);
        assert_eq!(c.len_for_tests(), 15);
        assert_eq!(c.get(&[4; 32], Some(1)), None);
        assert_eq!(c.get(&[5; 32], Some(1)), None);
        for n in 6..21u8 {
            assert!(c.get(&[n; 32], Some(1)).is_some(), "{n}");
        }
    }

    #[test]
    fn zero_entries_or_ttl_disable_the_cache() {
        assert!(TokenCache::new(0, Duration::from_secs(60)).is_none());
        assert!(TokenCache::new(8, Duration::ZERO).is_none());
        let c = TokenCache::new(8, Duration::from_secs(7200)).unwrap();
        assert_eq!(c.ttl, MAX_CACHE_TTL);
    }
}
