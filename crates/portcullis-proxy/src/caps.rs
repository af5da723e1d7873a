//! Per-upstream semaphores: the connection cap and the in-flight request cap.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Semaphore;

/// Entries kept before unused ones are dropped: upstreams come and go with
/// registrations, so the map is pruned instead of growing with every address
/// ever seen.
const PRUNE_ABOVE: usize = 1024;

/// One semaphore of `permits` per upstream authority, made on first use. A
/// sharded map: the in-flight cap looks it up on every request.
#[derive(Debug)]
pub(crate) struct PerUpstream {
    permits: usize,
    map: DashMap<String, Arc<Semaphore>>,
}

impl PerUpstream {
    pub(crate) fn new(permits: usize) -> Self {
        Self {
            permits,
            map: DashMap::new(),
        }
    }

    /// The semaphore of `authority`.
    pub(crate) fn get(&self, authority: &str) -> Arc<Semaphore> {
        if let Some(s) = self.map.get(authority) {
            return s.clone();
        }
        if self.map.len() >= PRUNE_ABOVE {
            // Only semaphores nobody holds a permit of (or a handle to) go.
            let permits = self.permits;
            self.map
                .retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < permits);
        }
        self.map
            .entry(authority.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.permits)))
            .clone()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_entries_are_pruned_held_ones_kept() {
        let caps = PerUpstream::new(2);
        let held = caps.get("held:1").try_acquire_owned().unwrap();
        for i in 0..PRUNE_ABOVE + 10 {
            let _ = caps.get(&format!("u{i}:80"));
        }
        assert!(caps.len() <= PRUNE_ABOVE, "{}", caps.len());
        // The held entry survived: its semaphore still lacks the permit.
        assert_eq!(caps.get("held:1").available_permits(), 1);
        drop(held);
        assert_eq!(caps.get("held:1").available_permits(), 2);
    }
}
