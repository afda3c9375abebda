//! Places for work that takes time (request bodies on their way, running queries): at most so
//! many in all and so many per caller, so that one caller never holds every place.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Places in all and per caller.
#[derive(Debug)]
pub struct Slots {
    total: Arc<Semaphore>,
    capacity: usize,
    per_caller: usize,
    taken: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The caller holds its share already.
    Caller(usize),
    /// Every place is taken.
    All(usize),
}

/// A place, given back when dropped (also when the work holding it is dropped midway).
#[derive(Debug)]
pub struct Slot {
    _count: CallerCount,
    _permit: OwnedSemaphorePermit,
}

/// One of a caller's places, counted until dropped.
#[derive(Debug)]
struct CallerCount {
    taken: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl Drop for CallerCount {
    fn drop(&mut self) {
        let mut map = self.taken.lock().expect("slots lock");
        if let Some(n) = map.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.caller);
            }
        }
    }
}

impl Slots {
    /// `total` places, at most `per_caller` of them for one caller.
    pub fn new(total: usize, per_caller: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            capacity: total.max(1),
            per_caller: per_caller.max(1),
            taken: Arc::default(),
        }
    }

    /// Places a caller may hold.
    pub fn per_caller(&self) -> usize {
        self.per_caller
    }

    fn count(&self, caller: &str) -> Result<CallerCount, Full> {
        let mut map = self.taken.lock().expect("slots lock");
        let n = map.entry(caller.to_owned()).or_default();
        if *n >= self.per_caller {
            return Err(Full::Caller(self.per_caller));
        }
        *n += 1;
        Ok(CallerCount { taken: Arc::clone(&self.taken), caller: caller.to_owned() })
    }

    /// A place for `caller` now, or why there is none.
    pub fn try_take(&self, caller: &str) -> Result<Slot, Full> {
        let count = self.count(caller)?;
        let permit = Arc::clone(&self.total).try_acquire_owned().map_err(|_| Full::All(self.capacity()))?;
        Ok(Slot { _count: count, _permit: permit })
    }

    /// A place for `caller`, waiting for one of all the places; refused at once when the caller
    /// holds its share already.
    pub async fn take(&self, caller: &str) -> Result<Slot, Full> {
        let count = self.count(caller)?;
        let permit = Arc::clone(&self.total).acquire_owned().await.map_err(|_| Full::All(self.capacity()))?;
        Ok(Slot { _count: count, _permit: permit })
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_gets_its_share_and_others_theirs() {
        let slots = Slots::new(3, 2);
        let a1 = slots.try_take("a").expect("first");
        let _a2 = slots.take("a").await.expect("second");
        assert_eq!(slots.try_take("a").unwrap_err(), Full::Caller(2));
        let _b = slots.try_take("b").expect("another caller");
        assert!(matches!(slots.try_take("c").unwrap_err(), Full::All(_)));
        drop(a1);
        let _c = slots.try_take("c").expect("a place given back");
        assert_eq!(slots.try_take("a").unwrap_err(), Full::All(3), "a may take one more, but all are taken");
    }
}
