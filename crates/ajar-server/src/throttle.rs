//! Slows down repeated authentication failures from one source, so tokens cannot be guessed at speed
//! and a flood of bad tokens cannot fill the activity log.
//!
//! A source is an IPv4 address or an IPv6 /64 ([`crate::client_addr::source_key`]). The first
//! [`FREE_FAILURES`] failures within [`WINDOW`] cost nothing; each further one blocks the source for twice
//! as long as the one before (1 s, 2 s, 4 s, ... up to [`MAX_BLOCK`]). While blocked, every request from
//! it that needs a token is answered 429 without looking at the token. The count starts again only after
//! a quiet [`WINDOW`] once the block is over, so waiting out each block does not undo the doubling. A
//! success does not reset the count: one valid token must not buy unlimited guesses at others.
//!
//! The table holds at most [`MAX_ENTRIES`] sources. When a new one finds it full, records that lapsed
//! are dropped, and then those that would lapse soonest by themselves (a record lapses once its block, if
//! any, is over and a quiet [`WINDOW`] has passed since), down to nine tenths of the table in one go, so a flood of
//! new sources costs one sweep per [`MAX_ENTRIES`]`/10` of them. Eviction therefore never frees a
//! blocked source while records that matter less remain: a flood of fresh sources, each with a failure
//! or two, evicts its own records first. To push out a source blocked for 5 minutes an attacker must
//! hold the whole table with sources blocked at least as long, which takes many minutes of escalation
//! per source; waiting out the block is cheaper.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client_addr::source_key;

pub const FREE_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_BLOCK: Duration = Duration::from_secs(300);
/// Sources tracked at once (about 100 bytes each).
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

impl Entry {
    /// When this record stops mattering by itself: a quiet window after its last failure and after its
    /// block, so the next failure would count from zero.
    fn lapses(&self) -> Instant {
        self.blocked_until.map_or(self.last_failure, |until| until.max(self.last_failure)) + WINDOW
    }
}

/// What a failure did to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Still within the free failures.
    Counted,
    /// The source is now blocked for this long.
    Blocked(Duration),
}

#[derive(Debug)]
pub struct FailureThrottle {
    capacity: usize,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Default for FailureThrottle {
    fn default() -> Self {
        FailureThrottle::with_capacity(MAX_ENTRIES)
    }
}

impl FailureThrottle {
    /// A throttle tracking at most `capacity` sources.
    pub fn with_capacity(capacity: usize) -> Self {
        FailureThrottle { capacity: capacity.max(1), entries: Mutex::default() }
    }

    /// `Err(retry_after)` while the source of `addr` is blocked.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(entries) = self.entries.lock() else { return Ok(()) };
        match entries.get(&source_key(addr)).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) -> AfterFailure {
        let Ok(mut entries) = self.entries.lock() else { return AfterFailure::Counted };
        let key = source_key(addr);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            make_room(&mut entries, self.capacity - self.capacity / 10, now);
        }
        let entry = entries.entry(key).or_insert(Entry { failures: 0, last_failure: now, blocked_until: None });
        if entry.lapses() <= now {
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

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops lapsed records, then those lapsing soonest, until at most `keep` remain.
fn make_room(entries: &mut HashMap<IpAddr, Entry>, keep: usize, now: Instant) {
    entries.retain(|_, e| e.lapses() > now);
    let excess = entries.len().saturating_sub(keep);
    if excess == 0 {
        return;
    }
    let mut lapses: Vec<Instant> = entries.values().map(Entry::lapses).collect();
    let (_, &mut cutoff, _) = lapses.select_nth_unstable(excess - 1);
    // Everything lapsing before the cutoff goes, and of those lapsing at it only as many as needed.
    let mut at_cutoff = excess - entries.values().filter(|e| e.lapses() < cutoff).count();
    entries.retain(|_, e| match e.lapses().cmp(&cutoff) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal if at_cutoff > 0 => {
            at_cutoff -= 1;
            false
        }
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    /// Fails `addr` until it is blocked for `MAX_BLOCK`, waiting out each block as a client must.
    fn block_for_longest(t: &FailureThrottle, addr: IpAddr, mut now: Instant) -> Instant {
        loop {
            while let Err(wait) = t.check(addr, now) {
                now += wait;
            }
            if t.failed(addr, now) == AfterFailure::Blocked(MAX_BLOCK) {
                return now;
            }
        }
    }

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

    #[test]
    fn waiting_out_each_block_does_not_undo_the_doubling() {
        let t = FailureThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let now = block_for_longest(&t, a, Instant::now());
        assert_eq!(t.check(a, now), Err(MAX_BLOCK));
        // Right after the block, the next failure is blocked as long; a quiet window after it, the count starts again.
        let after = now + MAX_BLOCK;
        assert_eq!(t.failed(a, after), AfterFailure::Blocked(MAX_BLOCK));
        let quiet = after + MAX_BLOCK + WINDOW;
        assert_eq!(t.failed(a, quiet), AfterFailure::Counted);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let t = FailureThrottle::default();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            t.failed(format!("2001:db8:0:1::{:x}", i + 1).parse().unwrap(), now);
        }
        assert!(t.check("2001:db8:0:1:ffff::1".parse().unwrap(), now).is_err(), "the whole /64 is blocked");
        assert_eq!(t.check("2001:db8:0:2::1".parse().unwrap(), now), Ok(()), "the next /64 is not");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_table_stays_within_its_capacity() {
        let t = FailureThrottle::with_capacity(1_000);
        let now = Instant::now();
        for i in 0..10_000 {
            t.failed(v4(i), now + Duration::from_millis(u64::from(i)));
            assert!(t.len() <= 1_000);
        }
        let t = FailureThrottle::default();
        for i in 0..(MAX_ENTRIES as u32 * 2) {
            t.failed(v4(i), now);
        }
        assert!(t.len() <= MAX_ENTRIES, "{}", t.len());
    }

    #[test]
    fn a_flood_of_new_sources_does_not_free_a_blocked_one() {
        let t = FailureThrottle::with_capacity(100);
        let attacker: IpAddr = "198.51.100.7".parse().unwrap();
        let now = block_for_longest(&t, attacker, Instant::now());
        // Many times the table's size of fresh sources, each failing as often as it may for free.
        for i in 0..1_000 {
            for _ in 0..FREE_FAILURES {
                t.failed(v4(i), now);
            }
        }
        assert!(t.len() <= 100);
        assert_eq!(t.check(attacker, now), Err(MAX_BLOCK), "still blocked for as long");
        // Nor does a flood of sources that are blocked themselves, but for less time.
        for i in 1_000..1_300 {
            for _ in 0..=FREE_FAILURES {
                t.failed(v4(i), now);
            }
        }
        assert_eq!(t.check(attacker, now), Err(MAX_BLOCK));
    }

    #[test]
    fn lapsed_records_make_room_first() {
        let t = FailureThrottle::with_capacity(11);
        let start = Instant::now();
        for _ in 0..=FREE_FAILURES {
            t.failed(v4(0), start);
        }
        for i in 1..10 {
            t.failed(v4(i), start);
        }
        let recent = v4(100);
        t.failed(recent, start + WINDOW);
        assert_eq!(t.len(), 11);
        // A window after their last failure and v4(0)'s block of 1 s, the first ten have lapsed and make
        // room; the recent one keeps its count.
        let later = start + WINDOW + Duration::from_secs(1);
        t.failed(v4(200), later);
        assert_eq!(t.len(), 2);
        assert_eq!(t.failed(recent, later), AfterFailure::Counted);
        for _ in 2..FREE_FAILURES {
            t.failed(recent, later);
        }
        assert_eq!(t.failed(recent, later), AfterFailure::Blocked(Duration::from_secs(1)), "its count was kept");
    }
}
