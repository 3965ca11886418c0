//! Which checks a replica probes when several share the work: a fixed `--cluster.shard
//! INDEX/COUNT` split, or (`auto`) the live members of a PostgreSQL store ranked by rendezvous
//! hashing ([`rendezvous`]). The membership itself is kept by `app/membership.rs`.
//!
//! With `INDEX/COUNT` a check belongs to shard `fnv1a(name) % COUNT`. The hash is fixed (FNV-1a, 64 bits, over the
//! name's UTF-8 bytes) so every replica and every version agrees without talking to the others;
//! adding or removing a replica moves about 1/COUNT of the checks, like any modulo split.

mod critical;
mod rendezvous;
mod view;

use std::fmt;
use std::str::FromStr;

pub use critical::CriticalBook;
pub use rendezvous::{live, MemberRow, Members, GONE_AFTER_MS, RENEW_EVERY_MS};
pub use view::{ClusterView, STALE_AFTER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    /// One replica probes everything.
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn owns(&self, check: &str) -> bool {
        self.count <= 1 || fnv1a(check.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }

    pub fn is_whole(&self) -> bool {
        self.count <= 1
    }
}

/// Which checks this replica probes (and exports, predicts and heals): the one question every
/// way of sharing the work answers.
pub trait Ownership: Send + Sync + fmt::Display {
    fn owns(&self, check: &str) -> bool;

    /// Whether it owns every check (nothing to filter).
    fn is_whole(&self) -> bool {
        false
    }

    /// Whether a check's probes fall on the same wall-clock slots on every replica, so one
    /// that moves to another replica keeps its rhythm.
    fn aligned(&self) -> bool {
        false
    }

    /// When a check arriving here lost its owner (its last renewal; `None` if it did not): a
    /// slot it missed since then is made up at once. Checks taken from a live owner (a replica
    /// joined) or owned by nobody before (a cold start) keep their next slot: making those up
    /// too would start a whole fleet's recent slots within seconds.
    fn made_up(&self, _check: &str) -> Option<tokio::time::Instant> {
        None
    }
}

impl Ownership for Shard {
    fn owns(&self, check: &str) -> bool {
        Shard::owns(self, check)
    }

    fn is_whole(&self) -> bool {
        Shard::is_whole(self)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{s:?} is not INDEX/COUNT with 0 <= INDEX < COUNT (e.g. 0/2)");
        let (index, count) = s.split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(Shard { index, count })
    }
}

/// 64-bit FNV-1a: fixed, so every replica and every version agrees.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_count() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "-1/2", "a/b", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 1, count: 3 }.to_string(), "1/3");
    }

    #[test]
    fn every_check_has_exactly_one_shard_and_the_split_is_even() {
        let names: Vec<String> = (0..3000).map(|i| format!("check-{i}")).collect();
        let mut sizes = [0usize; 3];
        for name in &names {
            let owners: Vec<u32> = (0..3)
                .filter(|i| {
                    Shard {
                        index: *i,
                        count: 3,
                    }
                    .owns(name)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{name}");
            sizes[owners[0] as usize] += 1;
            assert!(Shard::default().owns(name));
        }
        assert!(sizes.iter().all(|n| (900..=1100).contains(n)), "{sizes:?}");
    }

    #[test]
    fn the_hash_is_fnv1a_so_it_never_changes_between_versions() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
