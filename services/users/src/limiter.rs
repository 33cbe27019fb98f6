//! Login attempt limits, per account and per client address: fixed
//! windows counted in memory (per replica: with N replicas an attacker
//! gets N times the budget, still far from a useful guessing rate).
//! A limited attempt is refused before any password is hashed, so the
//! limit also caps the CPU an attacker can make the service spend.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked keys, expired windows are swept out first and
/// then the oldest dropped: memory stays bounded under a spray of keys.
const MAX_KEYS: usize = 100_000;

pub struct Limiter {
    max: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Err(seconds to wait) if `key` has used its budget in this window.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match w.get(key) {
            Some((start, n)) if *n >= self.max && start.elapsed() < self.window => {
                Err((self.window - start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts one attempt (or failure) for `key`.
    pub fn hit(&self, key: &str) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_KEYS && !w.contains_key(key) {
            let window = self.window;
            w.retain(|_, (start, _)| start.elapsed() < window);
            if w.len() >= MAX_KEYS {
                if let Some(oldest) = w
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                {
                    w.remove(&oldest);
                }
            }
        }
        let e = w.entry(key.to_owned()).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= self.window {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }

    pub fn reset(&self, key: &str) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_budget_until_the_window_ends() {
        let l = Limiter::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
            l.hit("a");
        }
        assert_eq!(l.check("a"), Err(1));
        assert!(l.check("b").is_ok());
        std::thread::sleep(Duration::from_millis(220));
        assert!(l.check("a").is_ok());
        l.hit("a");
        l.reset("a");
        assert!(l.check("a").is_ok());
    }
}
