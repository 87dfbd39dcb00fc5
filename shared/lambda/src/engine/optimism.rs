//! Whether activating on the cached run (no read) pays off.
//!
//! An activation on the cached copy saves a consistent `Query` (1 read unit, one request)
//! when the copy is current; when another Lambda instance advanced the run meanwhile, it
//! costs a failed conditional write (billed like a write) plus the read and the write it
//! was meant to save. So the engine tracks how often its copies were stale (a moving
//! average) and, past [`MAX_STALE_PERMILLE`], reads first, trying the cache only now and then
//! to notice when it pays again (one instance, or runs that stay on one instance).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Above this share of stale copies (per mille), the engine reads first.
const MAX_STALE_PERMILLE: u32 = 150;
/// While reading first, one activation in this many still tries the cache.
const PROBE_EVERY: u64 = 8;

/// The moving share of stale cached copies.
#[derive(Debug, Default)]
pub(super) struct Optimism {
    /// Exponential moving average of stale outcomes, per mille (weight 1/16).
    stale_permille: AtomicU32,
    probes: AtomicU64,
}

impl Optimism {
    /// Whether this activation should try the cached copy first.
    pub(super) fn try_it(&self) -> bool {
        self.stale_permille.load(Ordering::Relaxed) <= MAX_STALE_PERMILLE
            || self.probes.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == 0
    }

    /// Records whether an activation on the cached copy found it stale.
    pub(super) fn record(&self, stale: bool) {
        let _ = self
            .stale_permille
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(old - old / 16 + if stale { 1000 / 16 } else { 0 })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_first_when_copies_are_often_stale_and_probes_back() {
        let o = Optimism::default();
        assert!(o.try_it());
        for _ in 0..10 {
            o.record(true);
        }
        let tries = (0..80).filter(|_| o.try_it()).count();
        assert_eq!(
            tries, 10,
            "one in {PROBE_EVERY} while copies are mostly stale"
        );
        for _ in 0..60 {
            o.record(false);
        }
        assert!(o.try_it(), "current copies again: the cache is tried first");
    }
}
