//! What this replica knows of the cluster at one moment: the live members as last read from
//! the store, who owns which check, and when its own membership was last renewed. Published by
//! the membership task; the API, the status page and the recovery engine read it.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{MemberRow, Members, Ownership};

/// Without a renewal sent this long ago or less (on this replica's monotonic clock, from the
/// moment the renewal was sent), a replica may already be gone for the others: two renewals
/// missed, 2 s before the others' 6 s. It starts no run meanwhile.
pub const STALE_AFTER: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This replica's member id.
    pub me: String,
    pub location: Option<String>,
    pub external_url: String,
    pub replication: u32,
    /// The live members, sorted by id, as last read.
    pub members: Vec<MemberRow>,
    /// Ownership over those members.
    pub ownership: Arc<Members>,
    /// When the latest renewal that the store took was sent; `None` before the first.
    pub renewed_at: Option<Instant>,
    /// How many checks this replica probes now (kept by whoever applies the checks; the
    /// members' rows carry it as of their last renewal).
    pub owned_now: Arc<AtomicUsize>,
}

impl ClusterView {
    /// Before this replica has met the others: owns nothing, renewed never.
    pub fn joining(
        me: &str,
        location: Option<String>,
        external_url: String,
        replication: u32,
        owned_now: Arc<AtomicUsize>,
    ) -> ClusterView {
        ClusterView {
            me: me.to_string(),
            location,
            external_url,
            replication,
            members: Vec::new(),
            ownership: Arc::new(Members::none(me, replication)),
            renewed_at: None,
            owned_now,
        }
    }

    /// Whether this replica's membership is current at `now`: the others still count it live.
    pub fn standing(&self, now: Instant) -> bool {
        self.renewed_at
            .is_some_and(|at| now.saturating_duration_since(at) < STALE_AFTER)
    }

    /// Whether this replica may start a run about `check` at `now` (`None`: a subject that is
    /// no check, such as an alert): its membership is current and, for a check, it owns it.
    /// A replica cut off from the store may still probe what it owned (a check is better
    /// probed twice than not at all), but never acts on a check that may have moved.
    pub fn may_start(&self, check: Option<&str>, now: Instant) -> bool {
        self.standing(now) && check.is_none_or(|c| self.ownership.owns(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_acts_only_while_current_and_only_on_its_checks() {
        let now = Instant::now();
        let mut view = ClusterView::joining("a", None, "http://a".into(), 1, Arc::default());
        assert!(!view.may_start(None, now), "never renewed");
        view.ownership = Arc::new(Members::new("a", ["a", "b"], 1));
        view.renewed_at = Some(now);
        let mine = (0..100)
            .map(|i| format!("c{i}"))
            .find(|c| view.ownership.owns(c))
            .unwrap();
        let theirs = (0..100)
            .map(|i| format!("c{i}"))
            .find(|c| !view.ownership.owns(c))
            .unwrap();
        assert!(view.may_start(Some(&mine), now));
        assert!(!view.may_start(Some(&theirs), now));
        assert!(view.may_start(None, now));
        let later = now + STALE_AFTER;
        assert!(!view.may_start(Some(&mine), later), "two renewals missed");
        assert!(view.may_start(Some(&mine), now + STALE_AFTER - Duration::from_millis(1)));
    }
}
