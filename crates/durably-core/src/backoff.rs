//! How long to wait between the attempts of a task.
//!
//! `exponential(2.0, 60.0)` waits 2 s, 4 s, 8 s … capped at 60 s: the first wait is `base¹`,
//! as python-durable documents. `linear(2.0, 3.0)` waits 2 s, 5 s, 8 s; `constant(5.0)` 5 s each
//! time. `.jitter(0.1)` spreads each wait uniformly over ±10 %.

use std::time::Duration;

/// A backoff policy: the wait before each retry. Its waits are [`Duration`]s; the constructors
/// take seconds in any numeric type (`constant(0)`, `constant(0.5)`) or a `Duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    kind: Kind,
    jitter: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `base^n` seconds, capped at `max`.
    Exponential {
        base: f64,
        max: Duration,
    },
    Linear {
        start: Duration,
        step: Duration,
    },
    Constant {
        wait: Duration,
    },
}

/// A length of time given to a backoff constructor: seconds as any number (`2`, `0.5`), or a
/// [`Duration`]. Negative, NaN and infinite seconds are read as zero and as the longest wait.
pub trait Seconds: Copy {
    /// The time as a [`Duration`].
    fn duration(self) -> Duration;
}

impl Seconds for Duration {
    fn duration(self) -> Duration {
        self
    }
}

impl Seconds for f64 {
    fn duration(self) -> Duration {
        if self.is_nan() || self <= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(self).unwrap_or(Duration::MAX)
        }
    }
}

impl Seconds for f32 {
    fn duration(self) -> Duration {
        f64::from(self).duration()
    }
}

macro_rules! integer_seconds {
    ($($t:ty),*) => {$(
        impl Seconds for $t {
            fn duration(self) -> Duration {
                u64::try_from(self).map(Duration::from_secs).unwrap_or(Duration::ZERO)
            }
        }
    )*};
}
integer_seconds!(i32, i64, u8, u16, u32, u64, usize);

/// Waits `base^n` seconds before retry `n` (1-based), at most `max`: `exponential(2.0, 60.0)`
/// waits 2 s, 4 s, 8 s … 60 s.
pub fn exponential(base: impl Seconds, max: impl Seconds) -> Backoff {
    let base = base.duration().as_secs_f64();
    Backoff { kind: Kind::Exponential { base, max: max.duration() }, jitter: 0.0 }
}

/// Waits `start + step·(n-1)` before retry `n`.
pub fn linear(start: impl Seconds, step: impl Seconds) -> Backoff {
    Backoff { kind: Kind::Linear { start: start.duration(), step: step.duration() }, jitter: 0.0 }
}

/// Waits `wait` before every retry; `constant(0)` retries at once.
pub fn constant(wait: impl Seconds) -> Backoff {
    Backoff { kind: Kind::Constant { wait: wait.duration() }, jitter: 0.0 }
}

impl Default for Backoff {
    /// `exponential(2.0, 60.0)`, python-durable's default.
    fn default() -> Self {
        exponential(2.0, 60.0)
    }
}

impl Backoff {
    /// Spreads each wait uniformly over `±fraction` of itself (clamped to `0.0..=1.0`), so that
    /// many runs failing together do not retry in lockstep.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        self
    }

    /// The wait before retry `retry` (1 for the wait after the first failed attempt), without
    /// jitter. Overflowing settings give the cap (or the longest `Duration`), never a panic.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        match self.kind {
            Kind::Exponential { base, max } => {
                let exp = i32::try_from(n).unwrap_or(i32::MAX);
                base.powi(exp).duration().min(max)
            }
            Kind::Linear { start, step } => step.saturating_mul(n - 1).saturating_add(start),
            Kind::Constant { wait } => wait,
        }
    }

    /// The wait before retry `retry`, jitter applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.base_delay(retry);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        (base.as_secs_f64() * factor).duration()
    }
}

/// How often a step is attempted and how long to wait between attempts: the one retry policy
/// of tasks, workflow defaults and agent steps.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (`retries + 1` attempts in all).
    pub retries: u32,
    /// The wait between attempts.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// `retries` retries with `backoff` between attempts.
    pub fn new(retries: u32, backoff: Backoff) -> Self {
        RetryPolicy { retries, backoff }
    }

    /// The same policy with `n` retries.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The same policy with another backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

impl Default for RetryPolicy {
    /// Three retries, waiting 2 s, 4 s, 8 s (capped at 60 s): python-durable's default.
    fn default() -> Self {
        RetryPolicy { retries: 3, backoff: Backoff::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(b: Backoff, n: u32) -> f64 {
        b.delay(n).as_secs_f64()
    }

    #[test]
    fn exponential_waits_base_to_the_retry_number_capped() {
        let b = exponential(2.0, 60.0);
        let waits: Vec<f64> = (1..=7).map(|n| secs(b, n)).collect();
        assert_eq!(waits, vec![2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]);
    }

    #[test]
    fn linear_and_constant_follow_the_documented_sequences() {
        assert_eq!((1..=3).map(|n| secs(linear(2.0, 3.0), n)).collect::<Vec<_>>(), vec![2.0, 5.0, 8.0]);
        assert_eq!((1..=3).map(|n| secs(constant(5.0), n)).collect::<Vec<_>>(), vec![5.0, 5.0, 5.0]);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_varies() {
        let b = constant(10.0).jitter(0.2);
        let waits: Vec<f64> = (0..200).map(|_| secs(b, 1)).collect();
        assert!(waits.iter().all(|w| (8.0..=12.0).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| (w - 10.0).abs() > 1e-9), "jitter never moved the wait");
    }

    #[test]
    fn nonsense_settings_give_zero_or_the_cap_not_a_panic() {
        assert_eq!(constant(-1.0).delay(1), Duration::ZERO);
        assert_eq!(constant(f64::NAN).delay(1), Duration::ZERO);
        assert_eq!(exponential(10.0, f64::INFINITY).delay(u32::MAX), Duration::MAX);
        assert_eq!(constant(1.0).jitter(f64::NAN).delay(1), Duration::from_secs(1));
        assert_eq!(linear(u64::MAX, u64::MAX).delay(u32::MAX), Duration::MAX);
    }

    #[test]
    fn integers_and_durations_are_seconds_too() {
        assert_eq!(constant(0).delay(1), Duration::ZERO);
        assert_eq!(constant(3).delay(2), Duration::from_secs(3));
        assert_eq!(constant(-3).delay(1), Duration::ZERO);
        assert_eq!(linear(Duration::from_millis(500), 1).delay(2), Duration::from_millis(1500));
        assert_eq!(exponential(2, 60), exponential(2.0, 60.0));
        assert_eq!(exponential(2, Duration::from_secs(5)).delay(3), Duration::from_secs(5));
    }
}
