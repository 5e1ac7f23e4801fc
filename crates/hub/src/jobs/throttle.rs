//! Traffic shaping for the tier limits: [`RateLimiter`] spaces operations at a fixed rate and turns
//! them away with [`Throttled`] (429001 `ThrottlingException`) once its backlog would exceed a bound.
//!
//! It implements IoT Hub's "queue the excess first, 429 when the queue is full" behaviour with a
//! virtual schedule (generic cell rate algorithm without burst): each caller reserves the next free
//! slot under a short lock and sleeps until it; no task or timer runs in the background.
//! It does not know what it meters; the jobs engine uses one for job device operations and the REST
//! layer can use others for direct methods and twin updates.

use std::time::Duration;

use parking_lot::Mutex;
use protocol::error::ErrorCode;
use tokio::time::Instant;

/// A shared pacing schedule: at most `per_second` operations per second.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    max_backlog: Option<Duration>,
    /// The earliest time the next operation may start.
    next_slot: Mutex<Option<Instant>>,
}

/// The backlog is full: the caller should answer 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request was throttled: the hub's traffic-shaping backlog is full")]
pub struct Throttled;

impl Throttled {
    /// The IoT Hub error code for this failure (429001 `ThrottlingException`).
    pub fn error_code(self) -> ErrorCode {
        ErrorCode::ThrottlingException
    }
}

impl RateLimiter {
    /// A limiter of `per_second` operations per second (non-positive or non-finite rates are treated
    /// as one per second). `max_backlog` bounds how long a caller may be queued: `None` waits forever.
    pub fn new(per_second: f64, max_backlog: Option<Duration>) -> RateLimiter {
        let rate = if per_second.is_finite() && per_second > 0.0 { per_second } else { 1.0 };
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / rate),
            max_backlog,
            next_slot: Mutex::new(None),
        }
    }

    /// Reserves the next slot and waits for it.
    ///
    /// # Errors
    /// [`Throttled`] when the wait would exceed the backlog bound; no slot is taken then.
    pub async fn acquire(&self) -> Result<(), Throttled> {
        let slot = self.reserve(Instant::now())?;
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// Takes the slot for an operation arriving at `now`, returning when it may start.
    fn reserve(&self, now: Instant) -> Result<Instant, Throttled> {
        let mut next_slot = self.next_slot.lock();
        let slot = match *next_slot {
            Some(next) if next > now => next,
            _ => now,
        };
        if let Some(max_backlog) = self.max_backlog {
            if slot.duration_since(now) > max_backlog {
                return Err(Throttled);
            }
        }
        *next_slot = Some(slot + self.interval);
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_operations_then_refuses() {
        let limiter = RateLimiter::new(10.0, Some(Duration::from_millis(250)));
        let start = Instant::now();
        let slots: Vec<_> =
            (0..4).map(|_| limiter.reserve(start).map(|s| s.duration_since(start))).collect();
        assert_eq!(
            slots,
            vec![
                Ok(Duration::ZERO),
                Ok(Duration::from_millis(100)),
                Ok(Duration::from_millis(200)),
                Err(Throttled) // the next slot (300 ms) is past the 250 ms backlog
            ]
        );
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.reserve(later), Ok(later));
        assert_eq!(Throttled.error_code(), ErrorCode::ThrottlingException);
    }

    #[tokio::test]
    async fn unbounded_backlog_paces() {
        let limiter = RateLimiter::new(200.0, None);
        let start = Instant::now();
        for _ in 0..21 {
            limiter.acquire().await.unwrap();
        }
        // 21 operations at 200/s: the last starts 20 intervals (100 ms) after the first.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(400),
            "{elapsed:?}"
        );
    }
}
