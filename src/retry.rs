//! Initial retry strategies: how often, and how long, session establishment is retried after a
//! transient failure (refused, unreachable, timed out, "try later").

use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// When to try establishing a session again. The first attempt is always immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryStrategy {
    /// One attempt only (the default).
    #[default]
    None,
    /// `attempts` retries (`None`: until closed), `interval` apart.
    Fixed { interval: Duration, attempts: Option<u32> },
    /// `attempts` retries, each after a random delay between 0 and
    /// `min(max, initial * 2^(retry - 1))`: exponential backoff with full jitter, which stays random
    /// at the cap so that many clients do not retry in step after an outage.
    Backoff { initial: Duration, max: Duration, attempts: u32 },
}

impl RetryStrategy {
    /// `attempts` retries, `interval_ms` apart; both must be positive.
    pub fn fixed(interval_ms: u32, attempts: u32) -> Result<Self> {
        check_interval(interval_ms)?;
        if attempts == 0 {
            return Err(Error::illegal_argument("retry attempts must be at least 1; use no retry instead"));
        }
        Ok(RetryStrategy::Fixed { interval: ms(interval_ms), attempts: Some(attempts) })
    }

    /// Retries every `interval_ms` until the session is closed.
    pub fn forever(interval_ms: u32) -> Result<Self> {
        check_interval(interval_ms)?;
        Ok(RetryStrategy::Fixed { interval: ms(interval_ms), attempts: None })
    }

    /// Exponential backoff with full jitter from `initial_ms` up to `max_ms`, `attempts` retries.
    pub fn backoff(initial_ms: u32, max_ms: u32, attempts: u32) -> Result<Self> {
        check_interval(initial_ms)?;
        if max_ms < initial_ms {
            return Err(Error::illegal_argument(format!(
                "backoff maximum ({max_ms} ms) must not be below the initial delay ({initial_ms} ms)"
            )));
        }
        if attempts == 0 {
            return Err(Error::illegal_argument("retry attempts must be at least 1; use no retry instead"));
        }
        Ok(RetryStrategy::Backoff { initial: ms(initial_ms), max: ms(max_ms), attempts })
    }

    /// The (initial) interval in milliseconds; 0 for no retry.
    pub fn interval_ms(&self) -> u32 {
        let d = match self {
            RetryStrategy::None => Duration::ZERO,
            RetryStrategy::Fixed { interval, .. } => *interval,
            RetryStrategy::Backoff { initial, .. } => *initial,
        };
        d.as_millis() as u32
    }

    /// The number of retries; 0 for no retry, `u32::MAX` for retrying until closed.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryStrategy::None => 0,
            RetryStrategy::Fixed { attempts, .. } => attempts.unwrap_or(u32::MAX),
            RetryStrategy::Backoff { attempts, .. } => *attempts,
        }
    }

    /// The wait before retry number `retry` (1 for the first retry), or `None` to give up.
    pub fn delay_before(&self, retry: u32, rng: &mut impl Rng) -> Option<Duration> {
        match *self {
            RetryStrategy::None => None,
            RetryStrategy::Fixed { interval, attempts } => {
                attempts.is_none_or(|limit| retry <= limit).then_some(interval)
            }
            RetryStrategy::Backoff { initial, max, attempts } => {
                if retry > attempts {
                    return None;
                }
                let doublings = (retry - 1).min(32);
                let ceiling = initial.saturating_mul(1u32 << doublings.min(31)).min(max);
                Some(Duration::from_micros(rng.gen_range(0..=ceiling.as_micros() as u64)))
            }
        }
    }
}

fn ms(n: u32) -> Duration {
    Duration::from_millis(n as u64)
}

fn check_interval(interval_ms: u32) -> Result<()> {
    if interval_ms == 0 {
        Err(Error::illegal_argument("retry interval must be at least 1 ms"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn zero_interval_or_attempts_is_refused() {
        assert!(RetryStrategy::fixed(0, 3).is_err());
        assert!(RetryStrategy::fixed(100, 0).is_err());
        assert!(RetryStrategy::forever(0).is_err());
        assert!(RetryStrategy::backoff(0, 10, 3).is_err());
        assert!(RetryStrategy::backoff(100, 10, 3).is_err());
        assert!(RetryStrategy::backoff(10, 100, 0).is_err());
    }

    #[test]
    fn fixed_retries_the_given_number_of_times_at_the_interval() {
        let s = RetryStrategy::fixed(50, 3).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<_> = (1..=4).map(|n| s.delay_before(n, &mut rng)).collect();
        let d = Some(Duration::from_millis(50));
        assert_eq!(delays, vec![d, d, d, None]);
        assert_eq!((s.interval_ms(), s.attempts()), (50, 3));
    }

    #[test]
    fn forever_never_gives_up() {
        let s = RetryStrategy::forever(10).unwrap();
        assert_eq!(s.delay_before(1_000_000, &mut StdRng::seed_from_u64(1)), Some(Duration::from_millis(10)));
        assert_eq!(s.attempts(), u32::MAX);
    }

    #[test]
    fn no_retry_gives_up_at_once() {
        assert_eq!(RetryStrategy::None.delay_before(1, &mut StdRng::seed_from_u64(1)), None);
    }

    #[test]
    fn backoff_delays_stay_under_a_doubling_ceiling_capped_at_the_maximum() {
        let s = RetryStrategy::backoff(100, 1000, 20).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 1..=20u32 {
            let ceiling = Duration::from_millis((100u64 << (retry - 1).min(20)).min(1000));
            for _ in 0..50 {
                assert!(s.delay_before(retry, &mut rng).unwrap() <= ceiling);
            }
        }
        assert_eq!(s.delay_before(21, &mut rng), None);
    }

    #[test]
    fn backoff_stays_random_at_the_cap() {
        let s = RetryStrategy::backoff(100, 1000, 50).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let delays: Vec<Duration> = (0..200).map(|_| s.delay_before(40, &mut rng).unwrap()).collect();
        let below_half = delays.iter().filter(|d| **d < Duration::from_millis(500)).count();
        // Uniform over [0, 1000 ms]: roughly half below 500 ms, and no two clients in lock-step.
        assert!((60..=140).contains(&below_half), "{below_half} of 200 below half the cap");
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150);
    }
}
