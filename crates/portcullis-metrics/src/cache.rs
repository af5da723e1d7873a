//! Metric handles cached by label identity, so that a request does not build
//! and hash a label set.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
#[cfg(test)]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// How many label sets a cache keeps handles for, unless configured.
///
/// The label sets are bounded by the configuration: services × routes × 10
/// methods × 6 status classes. 16,384 holds 50 routes of 5 services each with
/// every method and class (15,000), at a few tens of bytes an entry.
pub(crate) const DEFAULT_CACHE_CAPACITY: usize = 16_384;

/// A label value compared and hashed by the address of its shared string.
///
/// It holds its `Arc`, so the address is never reused for another string while
/// the key lives. Equal strings in different `Arc`s are different keys: they get
/// separate entries holding handles to the same series.
#[derive(Debug, Clone)]
pub(crate) struct PtrStr(pub(crate) Arc<str>);

/// Handles of the current `metrics` recorder, by label set.
///
/// Registering a handle builds a `Key` (a label vector and a hash of every label
/// string) and looks it up in the recorder; a hit here hashes a few pointers
/// under a read lock. Handles stay bound to the recorder that was current when
/// they were made. Label sets from a reloaded configuration come as new `Arc`s
/// and get new entries.
///
/// A miss takes the write lock once, to insert. The cache holds at most
/// `capacity` entries: inserting into a full cache first evicts a batch of
/// `capacity / 16` (at least one) arbitrary entries, never all of them, so a
/// working set a little over the capacity does not empty the cache.
#[derive(Debug)]
pub(crate) struct HandleCache<K, V> {
    map: RwLock<HashMap<K, V>>,
    capacity: usize,
    /// Entries evicted so far, for tests.
    #[cfg(test)]
    evicted: AtomicUsize,
}

// === impl PtrStr ===

impl PartialEq for PtrStr {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PtrStr {}

impl Hash for PtrStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).cast::<u8>().hash(state);
    }
}

// === impl HandleCache ===

impl<K: Hash + Eq + Clone, V: Clone> HandleCache<K, V> {
    /// An empty cache of at most `capacity` entries (0 is taken as 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            #[cfg(test)]
            evicted: AtomicUsize::new(0),
        }
    }

    /// The handles cached for `key`, or those `register` makes, cached.
    pub(crate) fn get_or_register(&self, key: K, register: impl FnOnce() -> V) -> V {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = map.get(&key) {
            return handles.clone();
        }
        drop(map);
        // Register outside the lock: it calls into the recorder. Two threads
        // missing the same key both register; the recorder hands both the same
        // series, and the first insert wins.
        let handles = register();
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = map.get(&key) {
            return cached.clone();
        }
        if map.len() >= self.capacity {
            self.evict(&mut map);
        }
        map.insert(key, handles.clone());
        handles
    }

    /// Removes a batch of entries: the first in iteration order, which the
    /// map's random hasher makes arbitrary. Costs the batch, not the whole map.
    fn evict(&self, map: &mut HashMap<K, V>) {
        let batch = (self.capacity / 16).max(1);
        let victims: Vec<K> = map.keys().take(batch).cloned().collect();
        for key in &victims {
            map.remove(key);
        }
        #[cfg(test)]
        self.evicted.fetch_add(victims.len(), Ordering::Relaxed);
    }

    /// Entries cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether `key` is cached.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// Entries evicted so far.
    #[cfg(test)]
    pub(crate) fn evicted(&self) -> usize {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_identity() {
        let cache = HandleCache::new(DEFAULT_CACHE_CAPACITY);
        let a = PtrStr(Arc::from("/a"));
        let also_a = PtrStr(Arc::from("/a"));
        assert_eq!(cache.get_or_register(a.clone(), || 1), 1);
        assert_eq!(cache.get_or_register(a, || 2), 1, "cached");
        assert_eq!(cache.get_or_register(also_a, || 3), 3, "another Arc");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn evicts_a_batch_when_full_not_everything() {
        let cache = HandleCache::new(64);
        let keys: Vec<PtrStr> = (0..64).map(|i| PtrStr(Arc::from(i.to_string()))).collect();
        for key in &keys {
            cache.get_or_register(key.clone(), || 0);
        }
        assert_eq!(
            (cache.len(), cache.evicted()),
            (64, 0),
            "full, nothing evicted"
        );
        assert_eq!(cache.get_or_register(keys[0].clone(), || 1), 0, "a hit");

        cache.get_or_register(PtrStr(Arc::from("one more")), || 0);
        assert_eq!(cache.evicted(), 4, "a sixteenth of 64");
        assert_eq!(cache.len(), 61);
        let kept = keys.iter().filter(|key| cache.contains(key)).count();
        assert_eq!(kept, 60, "the rest still cached");
    }

    #[test]
    fn capacity_zero_is_one() {
        let cache = HandleCache::new(0);
        assert_eq!(cache.get_or_register(PtrStr(Arc::from("a")), || 1), 1);
        assert_eq!(cache.get_or_register(PtrStr(Arc::from("b")), || 2), 2);
        assert_eq!((cache.len(), cache.evicted()), (1, 1));
    }
}
