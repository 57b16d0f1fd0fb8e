//! Reconnection strategies: what a session does after losing its connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Default time to keep trying to reconnect.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_millis(60_000);
/// Default delay between reconnection attempts.
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_millis(5_000);
/// Default number of reconnection attempts.
pub const DEFAULT_RECONNECT_RETRY_COUNT: u32 = 12;
/// Shortest pause between attempts of an application-driven strategy, so that one answering
/// "start" at once does not spin.
pub const MIN_USER_DELAY: Duration = Duration::from_millis(50);

/// An application's own reconnection policy.
pub trait ReconnectHandler: Send + Sync {
    /// Called before each attempt, on a thread where it may block (to wait before the attempt).
    /// Returns true to attempt, false to give up.
    fn before_attempt(&self) -> bool;
    /// The session reconnected.
    fn on_success(&self);
    /// The session gave up reconnecting (and is about to close).
    fn on_failure(&self);
}

/// How attempts are made.
#[derive(Clone)]
pub enum ReconnectPolicy {
    /// Up to `attempts` attempts: the first at once, then one every `delay`.
    Repeating { attempts: u32, delay: Duration },
    /// The application decides before each attempt.
    User(Arc<dyn ReconnectHandler>),
}

/// Whether and how a session reconnects.
#[derive(Clone)]
pub struct ReconnectionStrategy {
    /// How long to keep trying after losing the connection; `None` disables reconnection.
    pub timeout: Option<Duration>,
    /// How attempts are made.
    pub policy: ReconnectPolicy,
}

impl Default for ReconnectionStrategy {
    fn default() -> Self {
        ReconnectionStrategy {
            timeout: Some(DEFAULT_RECONNECT_TIMEOUT),
            policy: ReconnectPolicy::Repeating {
                attempts: DEFAULT_RECONNECT_RETRY_COUNT,
                delay: DEFAULT_RECONNECT_DELAY,
            },
        }
    }
}

impl ReconnectionStrategy {
    /// No reconnection: a lost connection closes the session.
    pub fn disabled() -> Self {
        ReconnectionStrategy { timeout: None, ..Default::default() }
    }

    /// Whether a lost connection is to be recovered at all.
    pub fn enabled(&self) -> bool {
        match (&self.timeout, &self.policy) {
            (None, _) => false,
            (Some(t), _) if t.is_zero() => false,
            (_, ReconnectPolicy::Repeating { attempts: 0, .. }) => false,
            _ => true,
        }
    }

    /// The pause before attempt `n` (0 for the first).
    pub fn delay_before(&self, n: u32) -> Duration {
        match &self.policy {
            ReconnectPolicy::Repeating { delay, .. } if n > 0 => *delay,
            ReconnectPolicy::User(_) if n > 0 => MIN_USER_DELAY,
            _ => Duration::ZERO,
        }
    }

    /// Whether attempt `n` (0 for the first) may be made, by count.
    pub fn allows(&self, n: u32) -> bool {
        match &self.policy {
            ReconnectPolicy::Repeating { attempts, .. } => n < *attempts,
            ReconnectPolicy::User(_) => true,
        }
    }
}

impl fmt::Debug for ReconnectionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            ReconnectPolicy::Repeating { attempts, delay } => {
                write!(f, "Repeating(attempts={attempts}, delay={delay:?}, timeout={:?})", self.timeout)
            }
            ReconnectPolicy::User(_) => write!(f, "User(timeout={:?})", self.timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_every_five_seconds_for_a_minute() {
        let s = ReconnectionStrategy::default();
        assert!(s.enabled());
        assert_eq!(s.timeout, Some(Duration::from_secs(60)));
        assert_eq!((s.delay_before(0), s.delay_before(1)), (Duration::ZERO, Duration::from_secs(5)));
        assert!(s.allows(11) && !s.allows(12));
    }

    #[test]
    fn zero_timeout_or_zero_attempts_disable_reconnection() {
        assert!(!ReconnectionStrategy::disabled().enabled());
        let zero = ReconnectionStrategy { timeout: Some(Duration::ZERO), ..Default::default() };
        assert!(!zero.enabled());
        let none = ReconnectionStrategy {
            policy: ReconnectPolicy::Repeating { attempts: 0, delay: Duration::from_millis(1) },
            ..Default::default()
        };
        assert!(!none.enabled());
    }
}
