//! Triggers held back by a limit, the open circuit, a pause or a maintenance window: bounded,
//! one per (chain, subject), released oldest first. Pure bookkeeping; what is held (a trigger)
//! is the caller's.

use std::collections::{BTreeMap, HashMap};

use super::gate::HoldReason;

/// One held trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldEntry<T> {
    pub chain: String,
    pub subject: String,
    pub reason: HoldReason,
    /// When it was first held: the wait is measured from here.
    pub since_ms: i64,
    pub item: T,
}

/// What became of a trigger offered to the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Offered<T> {
    /// Held, as a new entry.
    Held,
    /// The subject was already held: the newer trigger replaces the older one's details,
    /// keeping its place (and its `since`).
    Coalesced,
    /// Held; the queue was full and its oldest entry had to go.
    Evicted(HeldEntry<T>),
}

/// The queue of held triggers.
#[derive(Debug, Clone)]
pub struct Held<T> {
    capacity: usize,
    next_seq: u64,
    by_seq: BTreeMap<u64, HeldEntry<T>>,
    by_key: HashMap<(String, String), u64>,
}

impl<T> Held<T> {
    pub fn new(capacity: usize) -> Self {
        Held {
            capacity: capacity.max(1),
            next_seq: 0,
            by_seq: BTreeMap::new(),
            by_key: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Holds `item` for (chain, subject), one per subject.
    pub fn offer(
        &mut self,
        chain: &str,
        subject: &str,
        reason: HoldReason,
        item: T,
        now_ms: i64,
    ) -> Offered<T> {
        let key = (chain.to_string(), subject.to_string());
        if let Some(seq) = self.by_key.get(&key) {
            if let Some(entry) = self.by_seq.get_mut(seq) {
                // The newer trigger's details; its place, since and reason stay (a reason
                // changes only when the holds are looked at again: see `set_reason`).
                entry.item = item;
                return Offered::Coalesced;
            }
        }
        let evicted = if self.by_seq.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.insert(key.clone(), seq);
        self.by_seq.insert(
            seq,
            HeldEntry {
                chain: key.0,
                subject: key.1,
                reason,
                since_ms: now_ms,
                item,
            },
        );
        match evicted {
            Some(old) => Offered::Evicted(old),
            None => Offered::Held,
        }
    }

    /// Drops the held trigger of (chain, subject), if any (its check turned healthy, its alert
    /// resolved).
    pub fn remove(&mut self, chain: &str, subject: &str) -> Option<HeldEntry<T>> {
        let seq = self
            .by_key
            .remove(&(chain.to_string(), subject.to_string()))?;
        self.by_seq.remove(&seq)
    }

    /// Changes why (chain, subject) is held, keeping its place and its `since`.
    pub fn set_reason(&mut self, chain: &str, subject: &str, reason: HoldReason) {
        if let Some(seq) = self.by_key.get(&(chain.to_string(), subject.to_string())) {
            if let Some(entry) = self.by_seq.get_mut(seq) {
                entry.reason = reason;
            }
        }
    }

    /// Why (chain, subject) is held, if it is.
    pub fn reason(&self, chain: &str, subject: &str) -> Option<HoldReason> {
        let seq = self.by_key.get(&(chain.to_string(), subject.to_string()))?;
        self.by_seq.get(seq).map(|e| e.reason)
    }

    pub fn contains(&self, chain: &str, subject: &str) -> bool {
        self.by_key
            .contains_key(&(chain.to_string(), subject.to_string()))
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &HeldEntry<T>> {
        self.by_seq.values()
    }

    /// Takes out, oldest first, every entry `release` says may go now (to start or to drop);
    /// stops at the first told [`Release::WaitAndStop`], so a shared limit releases the
    /// oldest first and nothing younger overtakes it.
    pub fn release(
        &mut self,
        mut release: impl FnMut(&HeldEntry<T>) -> Release,
    ) -> Vec<HeldEntry<T>> {
        let mut out = Vec::new();
        let seqs: Vec<u64> = self.by_seq.keys().copied().collect();
        for seq in seqs {
            let Some(entry) = self.by_seq.get(&seq) else {
                continue;
            };
            match release(entry) {
                Release::Start | Release::Drop => {
                    if let Some(entry) = self.by_seq.remove(&seq) {
                        self.by_key
                            .remove(&(entry.chain.clone(), entry.subject.clone()));
                        out.push(entry);
                    }
                }
                Release::Wait => {}
                Release::WaitAndStop => break,
            }
        }
        out
    }

    /// How long the longest-held trigger has waited.
    pub fn oldest_since_ms(&self) -> Option<i64> {
        self.by_seq.values().map(|e| e.since_ms).min()
    }

    fn pop_oldest(&mut self) -> Option<HeldEntry<T>> {
        let (_, entry) = self.by_seq.pop_first()?;
        self.by_key
            .remove(&(entry.chain.clone(), entry.subject.clone()));
        Some(entry)
    }
}

/// What to do with one held entry when holds are looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Its hold lifted and it still needs healing: take it out to start it.
    Start,
    /// It no longer needs healing (healthy, resolved, chain gone): take it out, drop it.
    Drop,
    /// Still held; look at the next one.
    Wait,
    /// Still held by a shared limit: nothing younger may overtake it.
    WaitAndStop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_subject_keeps_its_place_and_since() {
        let mut q = Held::new(10);
        assert_eq!(
            q.offer("c", "check:a", HoldReason::Concurrency, 1, 100),
            Offered::Held
        );
        assert_eq!(
            q.offer("c", "check:b", HoldReason::Concurrency, 2, 200),
            Offered::Held
        );
        assert_eq!(
            q.offer("c", "check:a", HoldReason::Paused, 3, 300),
            Offered::Coalesced
        );
        assert_eq!(q.len(), 2);
        let first = q.iter().next().unwrap();
        assert_eq!(
            (first.subject.as_str(), first.item, first.since_ms),
            ("check:a", 3, 100)
        );
        assert_eq!(
            first.reason,
            HoldReason::Concurrency,
            "counted once, as it was first held"
        );
        q.set_reason("c", "check:a", HoldReason::Paused);
        assert_eq!(q.iter().next().unwrap().reason, HoldReason::Paused);
        // Another chain is another subject key.
        assert_eq!(
            q.offer("d", "check:a", HoldReason::Rate, 4, 400),
            Offered::Held
        );
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn bounded_the_oldest_goes_first() {
        let mut q = Held::new(2);
        q.offer("c", "s1", HoldReason::Rate, 1, 1);
        q.offer("c", "s2", HoldReason::Rate, 2, 2);
        match q.offer("c", "s3", HoldReason::Rate, 3, 3) {
            Offered::Evicted(old) => assert_eq!((old.subject.as_str(), old.item), ("s1", 1)),
            other => panic!("want an eviction, got {other:?}"),
        }
        assert_eq!(q.len(), 2);
        assert!(!q.contains("c", "s1"));
        assert_eq!(q.oldest_since_ms(), Some(2));
    }

    #[test]
    fn release_is_oldest_first_and_stops_where_told() {
        let mut q = Held::new(10);
        for (i, s) in ["a", "b", "c", "d"].iter().enumerate() {
            q.offer("chain", s, HoldReason::Concurrency, i, i as i64);
        }
        // b no longer needs healing, c is still held by the shared limit: d must wait too.
        let out = q.release(|e| match e.subject.as_str() {
            "a" => Release::Start,
            "b" => Release::Drop,
            "c" => Release::WaitAndStop,
            _ => Release::Start,
        });
        let names: Vec<&str> = out.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(q.len(), 2);
        // A hold of its own (a pause on c) lets the next one by.
        let out = q.release(|e| {
            if e.subject == "c" {
                Release::Wait
            } else {
                Release::Start
            }
        });
        let names: Vec<&str> = out.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(names, ["d"]);
        assert!(q.contains("chain", "c"));
    }

    #[test]
    fn removing_drops_the_subject() {
        let mut q = Held::new(10);
        q.offer("c", "s", HoldReason::Paused, 7, 0);
        assert_eq!(q.remove("c", "s").map(|e| e.item), Some(7));
        assert!(q.remove("c", "s").is_none());
        assert!(q.is_empty());
        // Held again afterwards: a new entry with a new since.
        q.offer("c", "s", HoldReason::Paused, 8, 50);
        assert_eq!(q.oldest_since_ms(), Some(50));
    }
}
