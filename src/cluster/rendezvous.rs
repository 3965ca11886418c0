//! Pure: who is a live member (by the store's clock), and which live members own a check
//! (rendezvous, or highest random weight, hashing of its name). Every replica that sees the
//! same members computes the same owners, without talking to the others; when a member goes
//! only its checks move, each to the member that ranked next for it; when one joins it takes
//! about 1/N from each of the others.

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use tokio::time::Instant;

use super::{fnv1a, Ownership};

/// Renewals go to the store this often.
pub const RENEW_EVERY_MS: i64 = 2_000;
/// A member whose last renewal is older than this (by the store's clock) is gone.
pub const GONE_AFTER_MS: i64 = 6_000;

/// One row of the members table, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: String,
    pub location: Option<String>,
    pub external_url: String,
    /// The store's clock at its last renewal.
    pub renewed_ms: i64,
    /// How many checks it said it owned at that renewal.
    pub owned: i64,
}

/// The members renewed within [`GONE_AFTER_MS`] of `store_now_ms`, sorted by id. `store_now_ms`
/// is the store's clock, the one renewals are written in, so replicas whose wall clocks
/// disagree agree on who is live.
pub fn live(rows: &[MemberRow], store_now_ms: i64) -> Vec<MemberRow> {
    let mut live: Vec<MemberRow> = rows
        .iter()
        .filter(|m| m.renewed_ms >= store_now_ms.saturating_sub(GONE_AFTER_MS))
        .cloned()
        .collect();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    live
}

/// A check's weight on a member: one 64-bit mix of the two hashes. Fixed (FNV-1a and the
/// SplitMix64 finaliser) so every replica and every version ranks alike.
fn weight(member_hash: u64, check_hash: u64) -> u64 {
    let mut z = member_hash ^ check_hash.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Who owns which check, as one replica sees the live members: the first `replication` of
/// them in the rendezvous order of the check's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// This replica's member id.
    me: String,
    /// The live members' ids and their hashes, sorted by id.
    live: Vec<(Arc<str>, u64)>,
    /// Members live in the view before this one and gone now: the checks they owned lost
    /// their prober, and a slot missed meanwhile is made up.
    departed: Vec<(Arc<str>, u64)>,
    /// The earliest last renewal of the departed (on this replica's monotonic clock): their
    /// checks' slots since then may have been missed.
    departed_since: Option<Instant>,
    /// For checks taken from live members: since when a slot may have been missed.
    moved_since: Option<Instant>,
    replication: usize,
}

impl Members {
    /// Before this replica has met the others in the store: it owns nothing (the checks are
    /// probed by whoever already owns them).
    pub fn none(me: &str, replication: u32) -> Members {
        Members::new(me, std::iter::empty::<&str>(), replication)
    }

    pub fn new<'a>(me: &str, live: impl IntoIterator<Item = &'a str>, replication: u32) -> Members {
        let mut live: Vec<(Arc<str>, u64)> = live
            .into_iter()
            .map(|id| (Arc::from(id), fnv1a(id.as_bytes())))
            .collect();
        live.sort();
        live.dedup();
        Members {
            me: me.to_string(),
            live,
            departed: Vec::new(),
            departed_since: None,
            moved_since: None,
            replication: replication.max(1) as usize,
        }
    }

    /// These members, as they follow `previous`: its members gone from this view departed.
    /// `last_renewal` says when a member last renewed (`None`: not known, then
    /// `unknown_since` is taken); `others_probing` whether other live members were probing
    /// checks (they said so at their last renewal); `read_at` when these members were read.
    pub fn after(
        mut self,
        previous: &Members,
        last_renewal: impl Fn(&str) -> Option<Instant>,
        unknown_since: Instant,
        others_probing: bool,
        read_at: Instant,
    ) -> Members {
        self.departed = previous
            .live
            .iter()
            .filter(|m| !self.live.contains(m))
            .cloned()
            .collect();
        self.departed_since = self
            .departed
            .iter()
            .map(|(id, _)| last_renewal(id).unwrap_or(unknown_since))
            .min();
        // A check taken from a live member: that member drops it at its own next read of the
        // members, which may come before this one applies the change; a slot between the two
        // was probed by neither. Its reads are at most two renewal periods apart from this one
        // (a replica acts from its second renewal; the others read every 0.5 s).
        self.moved_since = others_probing
            .then(|| read_at.checked_sub(Duration::from_millis(2 * RENEW_EVERY_MS as u64)))
            .flatten();
        self
    }

    /// Whether `check` was owned by a member that departed (with replication, by one of its
    /// owners): it is on its way here because its prober died, not because this one joined.
    pub fn lost_its_owner(&self, check: &str) -> bool {
        if self.departed.is_empty() {
            return false;
        }
        let check_hash = fnv1a(check.as_bytes());
        let mut before: Vec<(u64, bool)> = self
            .live
            .iter()
            .map(|(_, hash)| (weight(*hash, check_hash), false))
            .chain(
                self.departed
                    .iter()
                    .map(|(_, hash)| (weight(*hash, check_hash), true)),
            )
            .collect();
        before.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
        before
            .iter()
            .take(self.replication)
            .any(|(_, departed)| *departed)
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The live members' ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.live.iter().map(|(id, _)| &**id)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The members that own `check`, highest weight first (fewer when fewer are live).
    pub fn owners(&self, check: &str) -> Vec<&str> {
        let check_hash = fnv1a(check.as_bytes());
        let mut ranked: Vec<(u64, &str)> = self
            .live
            .iter()
            .map(|(id, hash)| (weight(*hash, check_hash), &**id))
            .collect();
        // Ties (vanishingly rare) break by id, so every replica agrees.
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ranked
            .into_iter()
            .take(self.replication)
            .map(|(_, id)| id)
            .collect()
    }

    /// Whether `member` is among `check`'s owners. No allocation: this runs for every check
    /// at every change of the members.
    pub fn is_owner(&self, member: &str, check: &str) -> bool {
        let Some(&(_, member_hash)) = self.live.iter().find(|(id, _)| &**id == member) else {
            return false;
        };
        let check_hash = fnv1a(check.as_bytes());
        let mine = weight(member_hash, check_hash);
        let ahead = self
            .live
            .iter()
            .filter(|(id, hash)| {
                let w = weight(*hash, check_hash);
                w > mine || (w == mine && &**id < member)
            })
            .count();
        ahead < self.replication
    }
}

impl Ownership for Members {
    fn owns(&self, check: &str) -> bool {
        self.is_owner(&self.me, check)
    }

    fn aligned(&self) -> bool {
        true
    }

    fn made_up(&self, check: &str) -> Option<Instant> {
        match self.departed_since.filter(|_| self.lost_its_owner(check)) {
            Some(since) => Some(since),
            None => self.moved_since,
        }
    }
}

impl fmt::Display for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "auto: {} of {} live member(s), replication {}",
            self.me,
            self.live.len(),
            self.replication
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_checks_whose_owner_departed_have_a_missed_slot_made_up() {
        let three = ["a", "b", "c"];
        let before = Members::new("a", three, 1);
        let checks: Vec<String> = (0..3000).map(|i| format!("c{i}")).collect();
        // c dies: exactly c's checks lost their owner, and they are the ones a and b take.
        let died = Instant::now();
        let seen = |_: &str| Some(died);
        let after = Members::new("a", ["a", "b"], 1).after(&before, seen, died, false, died);
        assert!(checks.iter().any(|c| after.made_up(c) == Some(died)));
        for check in &checks {
            let was_cs = before.owners(check)[0] == "c";
            assert_eq!(after.lost_its_owner(check), was_cs, "{check}");
        }
        // Joining (or the first view of a life) makes nothing up: the owners were alive.
        let joined = Members::new("a", three, 1).after(
            &Members::new("a", ["a", "b"], 1),
            seen,
            died,
            false,
            died,
        );
        assert!(checks.iter().all(|c| joined.made_up(c).is_none()));
        let first =
            Members::new("a", three, 1).after(&Members::none("a", 1), seen, died, false, died);
        assert!(checks.iter().all(|c| first.made_up(c).is_none()));
        // Joining while the others probe (a restart): what it takes from them may have missed
        // a slot between their renewal and its own, two renewal periods at most.
        let rejoined =
            Members::new("c", three, 1).after(&Members::none("c", 1), seen, died, true, died);
        let since = rejoined.made_up("c1").expect("made up since");
        assert_eq!(
            died - since,
            Duration::from_millis(2 * RENEW_EVERY_MS as u64)
        );
        // With replication 2, a check made up is one whose two owners included c.
        let before2 = Members::new("a", three, 2);
        let after2 = Members::new("a", ["a", "b"], 2).after(&before2, seen, died, false, died);
        for check in &checks {
            let had_c = before2.owners(check).contains(&"c");
            assert_eq!(after2.lost_its_owner(check), had_c, "{check}");
        }
    }

    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("web/target-{i}")).collect()
    }

    fn row(id: &str, renewed_ms: i64) -> MemberRow {
        MemberRow {
            id: id.into(),
            location: None,
            external_url: format!("http://{id}"),
            renewed_ms,
            owned: 0,
        }
    }

    #[test]
    fn liveness_is_judged_on_the_stores_clock() {
        let rows = [row("b", 10_000), row("a", 4_000), row("c", 3_999)];
        let ids: Vec<String> = live(&rows, 10_000).into_iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            ["a", "b"],
            "renewed 6 s ago is still live, 6.001 s is gone"
        );
        assert!(live(&rows, 20_000).is_empty());
        // A member renewed "in the future" (another replica's view of the same clock, read a
        // moment later) is live.
        assert_eq!(live(&[row("x", 10_500)], 10_000).len(), 1);
    }

    #[test]
    fn every_check_has_exactly_k_owners_among_the_live_members() {
        for k in [1u32, 2, 3] {
            let ids = ["m1", "m2", "m3", "m4"];
            let views: Vec<Members> = ids.iter().map(|me| Members::new(me, ids, k)).collect();
            for check in names(2000) {
                let owners = views.iter().filter(|m| m.owns(&check)).count();
                assert_eq!(owners, k as usize, "{check}");
                let listed = views[0].owners(&check);
                assert_eq!(listed.len(), k as usize);
                for v in &views {
                    assert_eq!(v.owns(&check), listed.contains(&v.me()), "{check}");
                }
            }
        }
    }

    #[test]
    fn the_split_is_even_and_a_departure_moves_only_the_departed_members_checks() {
        let checks = names(30_000);
        let three = ["a", "b", "c"];
        let mut sizes = [0usize; 3];
        let view = Members::new("a", three, 1);
        for check in &checks {
            let owner = view.owners(check)[0];
            sizes[three.iter().position(|m| *m == owner).unwrap()] += 1;
        }
        assert!(
            sizes.iter().all(|n| (9_400..=10_600).contains(n)),
            "{sizes:?}"
        );
        let two = ["a", "b"];
        for check in &checks {
            let before = Members::new("a", three, 1).owners(check)[0].to_string();
            let after = Members::new("a", two, 1).owners(check)[0].to_string();
            if before != "c" {
                assert_eq!(before, after, "{check} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn a_joining_member_takes_about_one_nth_from_each() {
        let checks = names(30_000);
        let (before, after) = (["a", "b", "c"], ["a", "b", "c", "d"]);
        let mut taken = 0;
        for check in &checks {
            let old = Members::new("d", before, 1).owners(check)[0].to_string();
            let new = Members::new("d", after, 1).owners(check)[0].to_string();
            if old != new {
                assert_eq!(new, "d", "{check} moved between members that stayed");
                taken += 1;
            }
        }
        assert!((7_000..=8_000).contains(&taken), "{taken} of 30000");
    }

    #[test]
    fn nobody_owns_anything_before_meeting_and_the_ranking_is_fixed() {
        assert!(!Members::none("a", 1).owns("x"));
        let m = Members::new("a", ["a"], 3);
        assert!(
            m.owns("x"),
            "fewer members than replicas: all own everything"
        );
        assert!(
            !Members::new("z", ["a", "b"], 1).owns("x"),
            "not live: owns nothing"
        );
        // Reference values: a change of the hash would move every check at an upgrade.
        assert_eq!(
            weight(fnv1a(b"a"), fnv1a(b"x")),
            weight(fnv1a(b"a"), fnv1a(b"x"))
        );
        assert_eq!(
            Members::new("a", ["a", "b", "c"], 1).owners("web/target-0"),
            Members::new("c", ["c", "b", "a"], 1).owners("web/target-0")
        );
    }
}
