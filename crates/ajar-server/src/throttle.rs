//! Slows down repeated authentication failures from one address, so tokens cannot be guessed at speed
//! and a flood of bad tokens cannot fill the activity log.
//!
//! The first [`FREE_FAILURES`] failures within [`WINDOW`] cost nothing; each further one blocks the address
//! for twice as long as the one before (1 s, 2 s, 4 s, ... up to [`MAX_BLOCK`]). While blocked, every
//! request from the address that needs a token is answered 429 without looking at the token. A success
//! does not reset the count: one valid token must not buy unlimited guesses at others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FREE_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_BLOCK: Duration = Duration::from_secs(300);
/// Addresses tracked before the oldest are forgotten, so random sources cannot grow the table.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// What a failure did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Still within the free failures.
    Counted,
    /// The address is now blocked for this long.
    Blocked(Duration),
}

#[derive(Debug, Default)]
pub struct FailureThrottle {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl FailureThrottle {
    /// `Err(retry_after)` while `addr` is blocked.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(entries) = self.entries.lock() else { return Ok(()) };
        match entries.get(&addr).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) -> AfterFailure {
        let Ok(mut entries) = self.entries.lock() else { return AfterFailure::Counted };
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&addr) {
            entries.retain(|_, e| now.saturating_duration_since(e.last_failure) < WINDOW || e.blocked_until.is_some_and(|u| u > now));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let entry = entries.entry(addr).or_insert(Entry { failures: 0, last_failure: now, blocked_until: None });
        let blocked = entry.blocked_until.is_some_and(|u| u > now);
        if !blocked && now.saturating_duration_since(entry.last_failure) >= WINDOW {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures <= FREE_FAILURES {
            return AfterFailure::Counted;
        }
        let doublings = (entry.failures - FREE_FAILURES - 1).min(16);
        let block = Duration::from_secs(1u64 << doublings).min(MAX_BLOCK);
        entry.blocked_until = Some(now + block);
        AfterFailure::Blocked(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_free_ones_block_for_doubling_times() {
        let t = FailureThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed(a, start), AfterFailure::Counted);
        }
        assert_eq!(t.check(a, start), Ok(()));
        assert_eq!(t.failed(a, start), AfterFailure::Blocked(Duration::from_secs(1)));
        assert_eq!(t.check(a, start), Err(Duration::from_secs(1)));
        assert_eq!(t.check(b, start), Ok(()), "other addresses are not affected");
        let later = start + Duration::from_secs(1);
        assert_eq!(t.check(a, later), Ok(()));
        assert_eq!(t.failed(a, later), AfterFailure::Blocked(Duration::from_secs(2)));
        assert_eq!(t.failed(a, later), AfterFailure::Blocked(Duration::from_secs(4)));
        let mut blocks = Vec::new();
        for _ in 0..20 {
            if let AfterFailure::Blocked(d) = t.failed(a, later) {
                blocks.push(d);
            }
        }
        assert_eq!(blocks.last(), Some(&MAX_BLOCK), "capped");
        // A quiet window after the block has passed starts the count again.
        let quiet = later + MAX_BLOCK + WINDOW;
        assert_eq!(t.check(a, quiet), Ok(()));
        assert_eq!(t.failed(a, quiet), AfterFailure::Counted);
    }
}
