//! Deadline polling: tests wait for a condition, never for a fixed time.
//!
//! [`wait_for`] polls a synchronous condition, [`wait_until`] an async probe that yields a value
//! once ready. Both fail the test with `what` when the deadline passes. They use tokio's clock, so
//! they also work under `start_paused = true`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often the helpers poll.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds; panics naming `what` once `deadline` (from now) passes.
pub async fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < give_up, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `probe` until it returns `Some`, and returns that value; panics naming `what` once
/// `deadline` (from now) passes.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < give_up, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_once_the_condition_holds() {
        let mut polls = 0;
        wait_for("three polls", Duration::from_secs(1), || {
            polls += 1;
            polls == 3
        })
        .await;
        assert_eq!(polls, 3);
        let mut count = 0;
        let value = wait_until("a value", Duration::from_secs(1), || {
            count += 1;
            let ready = (count == 2).then_some(count * 10);
            async move { ready }
        })
        .await;
        assert_eq!(value, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline() {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        set.spawn(wait_for("never", Duration::from_millis(50), || false));
        let outcome = set.join_next().await.expect("one task");
        let panic = outcome.expect_err("the wait fails").into_panic();
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert_eq!(message, "timed out after 50ms waiting for never");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
