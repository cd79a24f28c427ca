//! A bounded memory of request UUIDs seen inside the freshness window.
//!
//! Entries expire when the request they came with would be refused as stale anyway, so
//! the cache holds at most one window's worth of traffic; beyond `capacity` it refuses new
//! requests (overload) rather than forgetting live entries, which would reopen replays.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Mutex;

/// Why a UUID was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// First time seen inside the window: accepted and remembered.
    Fresh,
    /// Seen before inside the window.
    Replayed,
    /// The cache is full of live entries.
    Full,
}

/// UUIDs seen, with the time (ms) after which each may be forgotten.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<u128>,
    expiries: BinaryHeap<Reverse<(u64, u128)>>,
}

impl ReplayCache {
    /// A cache that remembers at most `capacity` live UUIDs.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// Checks `uuid` and remembers it until `expires_at_ms` if it is fresh.
    pub fn check_and_insert(&self, uuid: u128, now_ms: u64, expires_at_ms: u64) -> ReplayVerdict {
        let mut inner = match self.inner.lock() {
            Ok(guard) => guard,
            // A panic while holding the lock cannot leave the set inconsistent with the heap
            // in a way that admits replays (insertions happen before pushes), so keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        while let Some(Reverse((expiry, old))) = inner.expiries.peek().copied() {
            if expiry > now_ms {
                break;
            }
            inner.expiries.pop();
            inner.seen.remove(&old);
        }
        if inner.seen.contains(&uuid) {
            return ReplayVerdict::Replayed;
        }
        if inner.seen.len() >= self.capacity {
            return ReplayVerdict::Full;
        }
        inner.seen.insert(uuid);
        inner.expiries.push(Reverse((expires_at_ms, uuid)));
        ReplayVerdict::Fresh
    }

    /// How many UUIDs are remembered now (including ones not yet pruned).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_until_expiry() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_insert(1, 1_000, 9_000), ReplayVerdict::Fresh);
        assert_eq!(cache.check_and_insert(1, 5_000, 13_000), ReplayVerdict::Replayed);
        assert_eq!(cache.check_and_insert(2, 5_000, 13_000), ReplayVerdict::Fresh);
        // After 9 000 ms the first entry is forgotten (its request would be stale anyway).
        assert_eq!(cache.check_and_insert(1, 9_001, 17_000), ReplayVerdict::Fresh);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn bounded_memory() {
        let cache = ReplayCache::new(3);
        for id in 0..3 {
            assert_eq!(cache.check_and_insert(id, 0, 100), ReplayVerdict::Fresh);
        }
        assert_eq!(cache.check_and_insert(99, 50, 150), ReplayVerdict::Full);
        assert_eq!(cache.check_and_insert(0, 50, 150), ReplayVerdict::Replayed);
        // Once entries expire there is room again.
        assert_eq!(cache.check_and_insert(99, 100, 200), ReplayVerdict::Fresh);
        assert_eq!(cache.len(), 1);
    }
}
