//! Which of this replica's checks are critical now, as the store should hear it (for `confirm:`
//! on other replicas): the state task marks a check when its latest result turns critical or
//! stops being so; the membership task writes what changed. Pending changes coalesce per
//! check, so the book never holds more than one entry per check however far the store is
//! behind, and the state task never waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Per check: critical or not, and since when (ms).
type Pending = HashMap<Arc<str>, (bool, i64)>;

#[derive(Clone, Default)]
pub struct CriticalBook {
    pending: Arc<Mutex<Pending>>,
    changed: Arc<Notify>,
}

impl CriticalBook {
    /// `check`'s latest result is critical (`true`) or no longer (`false`) since `at_ms`.
    pub fn mark(&self, check: &Arc<str>, critical: bool, at_ms: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert(check.clone(), (critical, at_ms));
        drop(pending);
        self.changed.notify_one();
    }

    /// Everything marked since the last take.
    pub fn take(&self) -> Vec<(String, bool, i64)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .drain()
            .map(|(check, (critical, at))| (check.to_string(), critical, at))
            .collect()
    }

    /// Puts back changes that could not be written, unless newer ones came meanwhile.
    pub fn put_back(&self, changes: Vec<(String, bool, i64)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (check, critical, at) in changes {
            pending
                .entry(Arc::from(check.as_str()))
                .or_insert((critical, at));
        }
    }

    /// Wakes the writer again (after a put back).
    pub fn nudge(&self) {
        self.changed.notify_one();
    }

    /// Waits until something is marked.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_coalesce_per_check_and_newer_ones_win_over_a_put_back() {
        let book = CriticalBook::default();
        let web: Arc<str> = Arc::from("web");
        book.mark(&web, true, 1);
        book.mark(&web, false, 2);
        let taken = book.take();
        assert_eq!(taken, vec![("web".to_string(), false, 2)]);
        book.mark(&web, true, 3);
        book.put_back(taken);
        assert_eq!(book.take(), vec![("web".to_string(), true, 3)]);
        assert!(book.take().is_empty());
    }
}
