//! The last `cap` numbers of one kind, kept in arrival order (to know which to drop) and sorted
//! (to rank a number among them in O(log n)): what the anomaly questions' references and the
//! forecast residuals are both read from.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub(crate) struct SortedWindow {
    order: VecDeque<f64>,
    sorted: Vec<f64>,
    cap: usize,
}

impl SortedWindow {
    pub fn new(cap: usize) -> Self {
        SortedWindow {
            order: VecDeque::new(),
            sorted: Vec::new(),
            cap: cap.max(1),
        }
    }

    /// Adds `x`, dropping the oldest number once the window is full. Non-finite input is ignored.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                let i = self.sorted.partition_point(|y| y.total_cmp(&old).is_lt());
                if i < self.sorted.len() {
                    self.sorted.remove(i);
                }
            }
        }
        self.order.push_back(x);
        let i = self.sorted.partition_point(|y| y.total_cmp(&x).is_lt());
        self.sorted.insert(i, x);
    }

    pub fn clear(&mut self) {
        self.order.clear();
        self.sorted.clear();
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The numbers, smallest first.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// The numbers, oldest first.
    pub fn arrivals(&self) -> impl Iterator<Item = f64> + '_ {
        self.order.iter().copied()
    }

    /// Bytes held once full.
    pub fn memory_bytes(&self) -> usize {
        2 * self.cap * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_cap_numbers_sorted_and_in_order() {
        let mut w = SortedWindow::new(3);
        for x in [5.0, 1.0, f64::NAN, 4.0, 2.0, f64::INFINITY] {
            w.push(x);
        }
        assert_eq!(w.sorted(), &[1.0, 2.0, 4.0]);
        assert_eq!(w.arrivals().collect::<Vec<_>>(), vec![1.0, 4.0, 2.0]);
        w.push(1.0);
        assert_eq!(w.sorted(), &[1.0, 2.0, 4.0]);
        w.push(9.0);
        assert_eq!(w.sorted(), &[1.0, 2.0, 9.0]);
        w.clear();
        assert_eq!(w.len(), 0);
        assert_eq!(SortedWindow::new(0).memory_bytes(), 16);
    }
}
