//! Exponential backoff with jitter, for reconnecting hosts and retrying
//! tunnels that could not be restored.

use std::{
    hash::{BuildHasher, RandomState},
    time::Duration,
};

/// Share of a delay that is randomised either way, so that many tunneld
/// instances (or many tunnels) cut off together do not retry in lockstep.
pub const JITTER: f64 = 0.2;

/// Delays between attempts: `min`, `2·min`, `4·min`, … capped at `max`, each
/// moved at random by up to ±[`JITTER`] (never above `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt (the first is immediate).
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `failed` (from 1), without jitter.
    pub fn base(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(32);
        self.min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max)
    }

    /// The delay after failed attempt `failed`, with jitter.
    pub fn delay(&self, failed: u32) -> Duration {
        self.jittered(failed, unit_random(failed))
    }

    /// The delay after failed attempt `failed` for a given `random` in
    /// `[0, 1)`: the base moved by `(2·random − 1)·JITTER`, capped at `max`.
    pub fn jittered(&self, failed: u32, random: f64) -> Duration {
        let factor = 1.0 + JITTER * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        self.base(failed).mul_f64(factor).min(self.max)
    }
}

/// A number in `[0, 1)` that differs between calls; good enough for jitter.
fn unit_random(salt: u32) -> f64 {
    let bits = RandomState::new().hash_one((salt, std::time::Instant::now()));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `attempt` until it succeeds or `stop` resolves: the first attempt at
/// once, then after each failure waits [`Backoff::delay`]. `waiting` is told
/// the number of the next attempt and its delay before each wait. Returns
/// `None` when stopped.
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    stop: impl Future<Output = ()>,
    mut waiting: impl FnMut(u32, Duration, &E),
    mut attempt: F,
) -> Option<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut stop = std::pin::pin!(stop);
    let mut n = 1;
    loop {
        let result = tokio::select! {
            () = &mut stop => return None,
            r = attempt(n) => r,
        };
        match result {
            Ok(v) => return Some(v),
            Err(e) => {
                let delay = backoff.delay(n);
                n += 1;
                waiting(n, delay, &e);
                tokio::select! {
                    () = &mut stop => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    const B: Backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    #[test]
    fn doubles_from_min_and_caps_at_max() {
        let bases: Vec<u64> = (1..=8).map(|n| B.base(n).as_millis() as u64).collect();
        assert_eq!(bases, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(B.base(u32::MAX), B.max);
    }

    #[test]
    fn jitter_stays_within_a_fifth_and_under_the_cap() {
        assert_eq!(B.jittered(1, 0.0), Duration::from_millis(80));
        assert_eq!(B.jittered(1, 0.5), Duration::from_millis(100));
        assert_eq!(B.jittered(3, 1.0), Duration::from_millis(480));
        assert_eq!(B.jittered(10, 1.0), B.max);
        for n in 1..20 {
            let d = B.delay(n);
            assert!(d >= B.base(n).mul_f64(0.8) && d <= B.max, "{n}: {d:?}");
        }
    }

    #[test]
    fn jitter_varies() {
        let delays: std::collections::HashSet<Duration> = (0..20).map(|_| B.delay(4)).collect();
        assert!(delays.len() > 1, "jitter produced one value: {delays:?}");
    }

    /// Attempts happen at once, then after growing delays, on tokio's paused
    /// clock: the schedule is checked without sleeping for real.
    #[tokio::test(start_paused = true)]
    async fn retry_waits_the_backoff_between_attempts_then_returns() {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let announced = Arc::new(Mutex::new(Vec::new()));
        let got = retry(
            B,
            std::future::pending(),
            |next, delay, _e: &&str| announced.lock().unwrap().push((next, delay)),
            |n| {
                let times = times.clone();
                async move {
                    times.lock().unwrap().push(start.elapsed());
                    if n < 7 { Err("refused") } else { Ok(n) }
                }
            },
        )
        .await;
        assert_eq!(got, Some(7));
        let times = times.lock().unwrap();
        assert_eq!(times[0], Duration::ZERO, "first attempt is immediate");
        for (i, pair) in times.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            let base = B.base(i as u32 + 1);
            assert!(
                gap >= base.mul_f64(0.8) && gap <= base.mul_f64(1.2).min(B.max),
                "gap {i}: {gap:?} vs base {base:?}"
            );
        }
        let announced = announced.lock().unwrap();
        assert_eq!(announced.len(), 6);
        assert_eq!(announced[0].0, 2, "the next attempt is announced");
        // Capped: the last gaps never exceed max even with jitter.
        assert!(times[6] - times[5] <= B.max);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_while_waiting() {
        let stop = tokio::time::sleep(Duration::from_millis(230));
        let attempts = Arc::new(Mutex::new(0));
        let got: Option<()> = retry(
            B,
            stop,
            |_, _, _: &()| {},
            |_| {
                let attempts = attempts.clone();
                async move {
                    *attempts.lock().unwrap() += 1;
                    Err(())
                }
            },
        )
        .await;
        assert_eq!(got, None);
        // At 0 ms, 80..120 ms, then 240 ms at the earliest: two ran.
        assert_eq!(*attempts.lock().unwrap(), 2);
    }
}
