//! Ids that two replicas making them in the same millisecond do not share: run ids and pause ids
//! both end in 16 hex digits of a randomly keyed hash of the time, a per-process sequence and
//! the pid.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 16 hex digits, different for every call in this process and, with overwhelming odds, from
/// every other process's.
pub fn unique_hex(now_ms: i64) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // RandomState is keyed from the OS's randomness, so replicas started alike still differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_i64(now_ms);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_one_millisecond_differ() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| unique_hex(7)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 16));
    }
}
