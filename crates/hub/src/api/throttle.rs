//! Tier traffic shaping for the REST API: direct methods, twin reads and twin updates.
//!
//! With `--tier` set, each kind of call gets a [`RateLimiter`] at the tier's documented rate
//! (`jobs::TierLimits`): excess calls queue, and once the queue would hold a caller longer than the
//! backlog bound the call is answered 429 `ThrottlingException` — IoT Hub's shaping-then-429
//! behaviour. Without a tier every check passes at once. Job device operations are paced by the jobs
//! engine itself, not here.

use crate::jobs::config::DEFAULT_THROTTLE_BACKLOG;
use crate::jobs::throttle::RateLimiter;
use crate::jobs::TierLimits;

use super::ApiError;

/// The REST limiters of one hub; `None` limiters (no tier) never wait.
#[derive(Debug, Default)]
pub struct RestThrottle {
    methods: Option<RateLimiter>,
    twin_reads: Option<RateLimiter>,
    twin_updates: Option<RateLimiter>,
}

impl RestThrottle {
    /// The limiters of `tier`, or none when the hub is unthrottled.
    pub fn new(tier: Option<TierLimits>) -> RestThrottle {
        let limiter = |rate: f64| Some(RateLimiter::new(rate, Some(DEFAULT_THROTTLE_BACKLOG)));
        match tier {
            Some(limits) => RestThrottle {
                methods: limiter(limits.method_calls_per_second()),
                twin_reads: limiter(limits.twin_reads_per_second()),
                twin_updates: limiter(limits.twin_updates_per_second()),
            },
            None => RestThrottle::default(),
        }
    }

    /// Waits for a direct-method slot, or refuses with 429.
    pub(crate) async fn method(&self) -> Result<(), ApiError> {
        pass(self.methods.as_ref()).await
    }

    /// Waits for a twin-read slot, or refuses with 429.
    pub(crate) async fn twin_read(&self) -> Result<(), ApiError> {
        pass(self.twin_reads.as_ref()).await
    }

    /// Waits for a twin-update slot, or refuses with 429.
    pub(crate) async fn twin_update(&self) -> Result<(), ApiError> {
        pass(self.twin_updates.as_ref()).await
    }
}

async fn pass(limiter: Option<&RateLimiter>) -> Result<(), ApiError> {
    match limiter {
        Some(limiter) => limiter
            .acquire()
            .await
            .map_err(|throttled| ApiError::new(throttled.error_code(), throttled.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use protocol::error::ErrorCode;

    use super::*;
    use crate::jobs::Tier;

    #[tokio::test(start_paused = true)]
    async fn free_tier_queues_then_refuses_twin_updates() {
        let throttle = RestThrottle::new(Some(TierLimits::new(Tier::Free, NonZeroU32::MIN)));
        // 50 updates/s with a 10 s backlog: ~500 arriving together queue, the rest are refused.
        let calls = (0..600).map(|_| throttle.twin_update());
        let results = futures::future::join_all(calls).await;
        let admitted = results.iter().filter(|result| result.is_ok()).count();
        assert!((500..=502).contains(&admitted), "{admitted} admitted");
        let refused = results.iter().find_map(|result| result.as_ref().err()).unwrap();
        assert_eq!(refused.code, ErrorCode::ThrottlingException);
        assert!(RestThrottle::new(None).twin_update().await.is_ok());
    }
}
