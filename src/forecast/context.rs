//! Sequence novelty over contexts of discretised values, after the idea of the Contextual
//! Anomaly Detector (CAD OSE, Smirnov and Vodopyanov, NAB 2016): each value becomes one of
//! `BINS` levels of the series' own recent range; a "word" is the last few levels followed by
//! the new one; a sample's novelty is the share of its words (one per context length, 1 to
//! `ORDER`) that did not occur within the last `memory` samples. A series that repeats itself
//! scores 0; a new shape, a level never visited, a rhythm broken, scores towards 1, whatever
//! the size of the values.

/// Levels a value is discretised into (3 bits).
pub const BINS: usize = 8;
/// Longest context, in samples before the current one.
pub const ORDER: usize = 3;
/// Slots of the direct-mapped memory of seen words (each 8 bytes).
const SLOTS: usize = 1 << 14;

#[derive(Debug, Clone)]
pub struct ContextNovelty {
    /// Levels of the last `ORDER` samples, newest in the lowest 4 bits.
    recent: u64,
    filled: usize,
    /// Per slot: the word's tag in the high 32 bits, the sample count it was last seen at + 1 in
    /// the low 32 (0 = empty).
    seen: Vec<u64>,
    memory: u32,
    count: u32,
}

impl ContextNovelty {
    /// Words older than `memory` samples count as unseen again, so the novelty forgets at the
    /// same pace as the detector's other references.
    pub fn new(memory: usize) -> Self {
        ContextNovelty {
            recent: 0,
            filled: 0,
            // Allocated on first use: a detector that does not ask this question pays nothing.
            seen: Vec::new(),
            memory: u32::try_from(memory.max(1)).unwrap_or(u32::MAX),
            count: 0,
        }
    }

    /// Level of `x` in the range [lo, hi]: 0..BINS-1, values outside clamp to the end levels.
    pub fn level(x: f64, lo: f64, hi: f64) -> u64 {
        if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !x.is_finite() {
            return 0;
        }
        let f = ((x - lo) / (hi - lo) * BINS as f64).floor();
        f.clamp(0.0, (BINS - 1) as f64) as u64
    }

    /// Learns `level` after the current context and returns the share of its words (0..1) not
    /// seen within the memory; None until a full context was seen.
    pub fn observe(&mut self, level: u64) -> Option<f64> {
        if self.seen.is_empty() {
            self.seen = vec![0; SLOTS];
        }
        self.count = self.count.wrapping_add(1);
        let stamp = self.count;
        let mut novel = 0usize;
        let ready = self.filled >= ORDER;
        for order in 1..=ORDER.min(self.filled) {
            let context = self.recent & ((1u64 << (4 * order)) - 1);
            let word = (((order as u64) << 60) | (context << 4) | (level & 0xF)).wrapping_add(1);
            let h = word.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let slot = (h >> 50) as usize % SLOTS;
            let tag = (h >> 32) as u32;
            let entry = self.seen[slot];
            let (etag, last) = ((entry >> 32) as u32, entry as u32);
            let fresh = last != 0 && etag == tag && stamp.wrapping_sub(last) <= self.memory;
            if !fresh {
                novel += 1;
            }
            self.seen[slot] = (u64::from(tag) << 32) | u64::from(stamp.max(1));
        }
        self.recent = ((self.recent << 4) | (level & 0xF)) & ((1u64 << (4 * ORDER)) - 1);
        self.filled = (self.filled + 1).min(ORDER);
        ready.then(|| novel as f64 / ORDER as f64)
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.seen.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_pattern_stops_being_novel_and_a_new_one_is() {
        let mut c = ContextNovelty::new(1000);
        let pattern = [0u64, 2, 4, 6, 4, 2];
        let mut late = 0.0;
        for i in 0..600 {
            if let Some(n) = c.observe(pattern[i % pattern.len()]) {
                if i > 100 {
                    late += n;
                }
            }
        }
        assert_eq!(late, 0.0);
        // A level never visited, then an order never seen.
        assert_eq!(c.observe(7), Some(1.0));
        assert!(c.observe(0).unwrap() > 0.0);
    }

    #[test]
    fn levels_clamp_to_the_range() {
        assert_eq!(ContextNovelty::level(-5.0, 0.0, 8.0), 0);
        assert_eq!(ContextNovelty::level(3.5, 0.0, 8.0), 3);
        assert_eq!(ContextNovelty::level(99.0, 0.0, 8.0), 7);
        assert_eq!(ContextNovelty::level(1.0, 1.0, 1.0), 0);
        assert_eq!(ContextNovelty::level(f64::NAN, 0.0, 1.0), 0);
    }

    #[test]
    fn words_are_forgotten_after_the_memory() {
        let mut c = ContextNovelty::new(10);
        for _ in 0..5 {
            c.observe(1);
        }
        assert_eq!(c.observe(1), Some(0.0));
        for _ in 0..20 {
            c.observe(2);
        }
        c.observe(1);
        // The words ending in 1 after 1s were last seen more than 10 samples ago.
        c.observe(1);
        assert!(c.observe(1).unwrap() > 0.0);
    }
}
