//! Retry policies: how many attempts, how long between them (durable timers), and which
//! errors are worth another attempt.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contract::StepError;

/// The delay before attempt `n + 1` after attempt `n` failed.
///
/// JSON (in the history): `{"type": "fixed", "delayMs": ..}` or
/// `{"type": "exponential", "initialMs": .., "multiplier": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Backoff {
    /// The same delay every time.
    Fixed {
        /// Delay, milliseconds.
        delay_ms: u64,
    },
    /// `initial_ms * multiplier^(n - 1)`.
    Exponential {
        /// First delay, milliseconds.
        initial_ms: u64,
        /// Growth factor per attempt.
        multiplier: f64,
    },
}

/// A step's retry policy. Retries wait on durable timers, so a backoff of hours is fine.
///
/// An error is retried when it is retryable ([`StepError::is_retryable`]: `retryable` absent
/// or `true`) and attempts are left. Jitter is drawn deterministically from the run id, the
/// `seq` and the attempt, so replay computes the same delay.
///
/// A step's first attempt records its policy in the history; its later attempts follow the
/// recorded one, so a policy changed in the code applies to steps started after the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts in all, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Upper bound of any delay, milliseconds.
    pub max_delay_ms: u64,
    /// Up to this percentage (0-100) of a delay is taken off at random.
    pub jitter_percent: u32,
}

impl Default for RetryPolicy {
    /// 3 attempts, exponential backoff from 1 s doubling, at most 60 s, 20 % jitter.
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl RetryPolicy {
    /// The default: 3 attempts, exponential backoff from 1 s doubling, at most 60 s, 20 % jitter.
    pub const DEFAULT: Self = Self {
        max_attempts: 3,
        backoff: Backoff::Exponential {
            initial_ms: 1_000,
            multiplier: 2.0,
        },
        max_delay_ms: 60_000,
        jitter_percent: 20,
    };

    /// A single attempt, no retry.
    pub const fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::DEFAULT
        }
    }

    /// `max_attempts` attempts with a fixed delay and no jitter.
    pub const fn fixed(max_attempts: u32, delay: Duration) -> Self {
        let delay_ms = delay.as_millis() as u64;
        Self {
            max_attempts,
            backoff: Backoff::Fixed { delay_ms },
            max_delay_ms: delay_ms,
            jitter_percent: 0,
        }
    }

    /// `max_attempts` attempts with exponential backoff (no jitter; see
    /// [`with_jitter`](Self::with_jitter)).
    pub const fn exponential(
        max_attempts: u32,
        initial: Duration,
        multiplier: f64,
        max_delay: Duration,
    ) -> Self {
        Self {
            max_attempts,
            backoff: Backoff::Exponential {
                initial_ms: initial.as_millis() as u64,
                multiplier,
            },
            max_delay_ms: max_delay.as_millis() as u64,
            jitter_percent: 0,
        }
    }

    /// Sets the jitter percentage (clamped to 100).
    pub const fn with_jitter(mut self, percent: u32) -> Self {
        self.jitter_percent = if percent > 100 { 100 } else { percent };
        self
    }

    /// Whether attempt `attempt` (from 1), having failed with `error`, gets another one.
    pub fn should_retry(&self, attempt: u32, error: &StepError) -> bool {
        error.is_retryable() && attempt < self.max_attempts
    }

    /// The delay before the attempt after `attempt`, in milliseconds. `seed` makes the jitter
    /// deterministic (the engine derives it from the run id and `seq`).
    pub fn delay_ms(&self, attempt: u32, seed: u64) -> u64 {
        let exponent = attempt.saturating_sub(1);
        let base = match self.backoff {
            Backoff::Fixed { delay_ms } => delay_ms as f64,
            Backoff::Exponential {
                initial_ms,
                multiplier,
            } => initial_ms as f64 * multiplier.max(1.0).powi(exponent.min(1_000) as i32),
        };
        let capped = base.min(self.max_delay_ms as f64).max(0.0);
        let unit = (mix(seed, u64::from(attempt)) >> 11) as f64 / (1u64 << 53) as f64;
        let jitter = capped * f64::from(self.jitter_percent.min(100)) / 100.0 * unit;
        (capped - jitter).round() as u64
    }
}

/// A 64-bit hash of a string (FNV-1a), to seed deterministic draws from a run id.
pub(crate) fn seed_of(text: &str, salt: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash, salt)
}

/// splitmix64 of `a` and `b`.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_grows_and_caps() {
        let p = RetryPolicy::exponential(5, Duration::from_secs(1), 2.0, Duration::from_secs(5));
        let delays: Vec<u64> = (1..=4).map(|a| p.delay_ms(a, 7)).collect();
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 5_000]);
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let p = RetryPolicy::fixed(3, Duration::from_secs(10)).with_jitter(50);
        let a = p.delay_ms(1, seed_of("run-1", 3));
        assert_eq!(a, p.delay_ms(1, seed_of("run-1", 3)));
        assert!((5_000..=10_000).contains(&a));
        let spread: std::collections::BTreeSet<u64> =
            (0..20).map(|s| p.delay_ms(1, seed_of("r", s))).collect();
        assert!(spread.len() > 1);
    }

    #[test]
    fn retryable_and_terminal() {
        let p = RetryPolicy::DEFAULT;
        assert!(p.should_retry(1, &StepError::retryable("x")));
        assert!(p.should_retry(
            2,
            &StepError {
                retryable: None,
                ..StepError::terminal("x")
            }
        ));
        assert!(!p.should_retry(3, &StepError::retryable("x")));
        assert!(!p.should_retry(1, &StepError::terminal("x")));
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }
}
