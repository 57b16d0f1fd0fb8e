//! What the server remembers of the refusals it gave each client address, so that one client
//! cannot fill the log with refusals or guess passwords at full speed: refusal lines are logged at
//! most [`LOGGED_PER_WINDOW`] times per [`WINDOW`] per address (the next line logged says how many
//! were left out), and the answer to a failed authentication is held back [`FAILURE_DELAY`] for
//! each failure from that address in the window, up to [`MAX_FAILURE_DELAY`]. No I/O: the caller
//! passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The period over which refusals from one address are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Refusal lines logged per address per window.
pub const LOGGED_PER_WINDOW: u32 = 10;
/// Delay added to the answer to a failed authentication, per failure from the address in the window.
pub const FAILURE_DELAY: Duration = Duration::from_millis(100);
/// The longest delay of an answer to a failed authentication (below clients' usual connection
/// timeouts, so that they still learn the real reason).
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Addresses remembered; beyond this, addresses not yet remembered share one record.
const TRACKED: usize = 10_000;

/// An address as counted: IPv6 clients by their /64 network, which one client usually has whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    /// Every address that did not fit in the table.
    Others,
}

impl Key {
    fn of(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(_) => Key::Address(ip),
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Key::Address(ip),
            IpAddr::V6(v6) => Key::Address(IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())),
        }
    }
}

struct Record {
    window_start: Instant,
    logged: u32,
    unlogged: u32,
    failures: u32,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record { window_start: now, logged: 0, unlogged: 0, failures: 0 }
    }

    /// Starts a new window once the current one is over (what was left out of the log is still
    /// to be told).
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= WINDOW {
            *self = Record { unlogged: self.unlogged, ..Record::new(now) };
        }
    }
}

/// Refusals per client address.
#[derive(Default)]
pub(crate) struct Refusals {
    records: Mutex<HashMap<Key, Record>>,
}

impl Refusals {
    fn with<T>(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut records = self.records.lock();
        let mut key = Key::of(ip);
        if !records.contains_key(&key) && records.len() >= TRACKED {
            records.retain(|_, r| now.duration_since(r.window_start) < WINDOW || r.unlogged > 0);
            if records.len() >= TRACKED {
                key = Key::Others;
            }
        }
        let record = records.entry(key).or_insert_with(|| Record::new(now));
        record.roll(now);
        f(record)
    }

    /// A refusal of `ip`: `Some(n)` when it is to be logged, `n` being the refusals of that
    /// address left out of the log since the last one logged; `None` when it is not to be logged.
    pub(crate) fn log(&self, ip: IpAddr, now: Instant) -> Option<u32> {
        self.with(ip, now, |record| {
            if record.logged >= LOGGED_PER_WINDOW {
                record.unlogged += 1;
                return None;
            }
            record.logged += 1;
            Some(std::mem::take(&mut record.unlogged))
        })
    }

    /// A failed authentication from `ip`: how long to hold the answer back.
    pub(crate) fn failed_authentication(&self, ip: IpAddr, now: Instant) -> Duration {
        self.with(ip, now, |record| {
            record.failures = record.failures.saturating_add(1);
            FAILURE_DELAY.saturating_mul(record.failures).min(MAX_FAILURE_DELAY)
        })
    }

    /// Addresses remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refusals_are_logged_ten_a_minute_per_address_then_the_next_line_counts_the_rest() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let logged: Vec<Option<u32>> = (0..25).map(|_| refusals.log(ip("10.0.0.1"), start)).collect();
        assert_eq!(logged.iter().filter(|l| l.is_some()).count(), 10);
        assert!(logged[10..].iter().all(Option::is_none));
        assert_eq!(refusals.log(ip("10.0.0.2"), start), Some(0), "other addresses are counted apart");
        assert_eq!(refusals.log(ip("10.0.0.1"), start + WINDOW), Some(15), "a new window, telling what was left out");
        assert_eq!(refusals.log(ip("10.0.0.1"), start + WINDOW), Some(0));
    }

    #[test]
    fn failed_authentications_are_answered_later_and_later_up_to_a_second() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let delays: Vec<Duration> = (0..12).map(|_| refusals.failed_authentication(ip("10.0.0.1"), start)).collect();
        assert_eq!(delays[0], FAILURE_DELAY);
        assert_eq!(delays[3], FAILURE_DELAY * 4);
        assert_eq!(delays[11], MAX_FAILURE_DELAY);
        assert_eq!(refusals.failed_authentication(ip("10.0.0.2"), start), FAILURE_DELAY);
        assert_eq!(refusals.failed_authentication(ip("10.0.0.1"), start + WINDOW), FAILURE_DELAY, "forgotten");
    }

    #[test]
    fn an_ipv6_client_counts_as_its_network_and_the_table_stays_bounded() {
        let refusals = Refusals::default();
        let now = Instant::now();
        for n in 0..LOGGED_PER_WINDOW {
            assert!(refusals.log(ip(&format!("2001:db8::{n:x}")), now).is_some());
        }
        assert_eq!(refusals.log(ip("2001:db8::ffff"), now), None, "the same /64");
        for n in 0..(TRACKED as u32 + 500) {
            refusals.log(IpAddr::V4(n.into()), now);
        }
        assert_eq!(refusals.len(), TRACKED + 1, "the table, and one record for the addresses beyond it");
        let later = now + WINDOW;
        refusals.log(ip("192.0.2.1"), later);
        assert!(refusals.len() < 10, "records of a window that is over are dropped to make room");
    }
}
