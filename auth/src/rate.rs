//! Rate limits per caller: a token bucket per key that refills at a steady rate.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Keys tracked before idle (full) buckets are dropped.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `per_sec` requests a second on average, bursts up to twice that.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `per_sec` requests a second per key; 0 means no limit.
    pub fn new(per_sec: f64) -> Self {
        Self { per_sec, burst: (per_sec * 2.0).max(1.0), buckets: Mutex::default() }
    }

    /// Takes one request for `key`; when none is left, how long until one is.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("rate lock");
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let (rate, burst) = (self.per_sec, self.burst);
            map.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = map.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_key() {
        let r = RateLimiter::new(5.0);
        for _ in 0..10 {
            r.check("a").expect("within the burst");
        }
        let wait = r.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        r.check("b").expect("another key has its own bucket");
        assert!(RateLimiter::new(0.0).check("a").is_ok());
    }
}
