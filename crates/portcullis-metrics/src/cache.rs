//! Metric handles cached by label identity, so that a request does not build
//! and hash a label set.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

/// How many label sets a cache keeps handles for; past it the cache starts over.
pub(crate) const CACHE_CAPACITY: usize = 1024;

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
/// string) and looks it up in the recorder; a hit here hashes a few pointers.
/// Handles stay bound to the recorder that was current when they were made.
/// Label sets from a reloaded configuration come as new `Arc`s and get new
/// entries; the cache is cleared when it holds [`CACHE_CAPACITY`] of them.
#[derive(Debug)]
pub(crate) struct HandleCache<K, V> {
    map: RwLock<HashMap<K, V>>,
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

impl<K: Hash + Eq, V: Clone> HandleCache<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The handles cached for `key`, or those `register` makes, cached.
    pub(crate) fn get_or_register(&self, key: K, register: impl FnOnce() -> V) -> V {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = map.get(&key) {
            return handles.clone();
        }
        drop(map);
        let handles = register();
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, handles.clone());
        handles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_identity_and_starts_over_when_full() {
        let cache = HandleCache::new();
        let a = PtrStr(Arc::from("/a"));
        let also_a = PtrStr(Arc::from("/a"));
        assert_eq!(cache.get_or_register(a.clone(), || 1), 1);
        assert_eq!(cache.get_or_register(a.clone(), || 2), 1, "cached");
        assert_eq!(cache.get_or_register(also_a, || 3), 3, "another Arc");
        for i in 0..CACHE_CAPACITY {
            cache.get_or_register(PtrStr(Arc::from(i.to_string())), || 0);
        }
        assert!(cache.map.read().unwrap().len() <= CACHE_CAPACITY);
        assert_eq!(cache.get_or_register(a, || 4), 4, "cleared");
    }
}
