//! How long to wait between the attempts of a task.
//!
//! `exponential(2.0, 60.0)` waits 2 s, 4 s, 8 s … capped at 60 s: the first wait is `base¹`,
//! as python-durable documents. `linear(2.0, 3.0)` waits 2 s, 5 s, 8 s; `constant(5.0)` 5 s each
//! time. `.jitter(0.1)` spreads each wait uniformly over ±10 %.

use std::time::Duration;

/// A backoff policy: the wait before each retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    kind: Kind,
    jitter: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Exponential { base: f64, max: f64 },
    Linear { start: f64, step: f64 },
    Constant { seconds: f64 },
}

/// Waits `base^n` seconds before retry `n` (1-based), at most `max` seconds.
pub fn exponential(base: f64, max: f64) -> Backoff {
    Backoff { kind: Kind::Exponential { base, max }, jitter: 0.0 }
}

/// Waits `start + step·(n-1)` seconds before retry `n`.
pub fn linear(start: f64, step: f64) -> Backoff {
    Backoff { kind: Kind::Linear { start, step }, jitter: 0.0 }
}

/// Waits `seconds` before every retry.
pub fn constant(seconds: f64) -> Backoff {
    Backoff { kind: Kind::Constant { seconds }, jitter: 0.0 }
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
    /// jitter. Negative, NaN or overflowing settings give zero or the cap, never a panic.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let secs = match self.kind {
            Kind::Exponential { base, max } => {
                let exp = i32::try_from(n).unwrap_or(i32::MAX);
                base.powi(exp).min(max)
            }
            Kind::Linear { start, step } => start + step * f64::from(n - 1),
            Kind::Constant { seconds } => seconds,
        };
        seconds(secs)
    }

    /// The wait before retry `retry`, jitter applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.base_delay(retry).as_secs_f64();
        if self.jitter == 0.0 {
            return seconds(base);
        }
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        seconds(base * factor)
    }
}

fn seconds(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
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
    }
}
