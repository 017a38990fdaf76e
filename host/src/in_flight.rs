//! Counting what is under way: a guard holds one unit of a counter until it is dropped — also
//! when the future holding it is dropped midway (a client hangs up).

use std::sync::atomic::{AtomicU64, Ordering};

/// One unit of an in-flight counter, released on drop.
pub struct InFlight<'a> {
    counter: &'a AtomicU64,
}

impl<'a> InFlight<'a> {
    /// Counts one more under way.
    pub fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self { counter }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_alive() {
        let counter = AtomicU64::new(0);
        let first = InFlight::enter(&counter);
        let second = InFlight::enter(&counter);
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        drop((first, second));
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }
}
