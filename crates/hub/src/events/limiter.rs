//! Per-job rate limit of progress snapshots: at most one per interval per job, the latest one
//! held back and sent when the interval has passed, and the final snapshot always, at once.
//!
//! Pure: the caller passes the time in. Memory is bounded by the jobs that reported progress
//! within the last [`FORGET_AFTER_INTERVALS`] intervals.

use std::collections::HashMap;
use std::time::Duration;

use protocol::ids::JobId;
use tokio::time::Instant;

use super::JobProgressEvent;

/// A job's slot is forgotten this many intervals after its last snapshot went out (a late
/// non-final snapshot of a finished job within that window is suppressed).
const FORGET_AFTER_INTERVALS: u32 = 600;

/// The limiter state.
#[derive(Debug)]
pub(crate) struct ProgressLimiter {
    interval: Duration,
    jobs: HashMap<JobId, Slot>,
    /// Snapshots replaced by a later one or suppressed, since the last `take_superseded`.
    superseded: u64,
}

#[derive(Debug)]
struct Slot {
    last_sent: Instant,
    pending: Option<Box<JobProgressEvent>>,
    finished: bool,
}

impl ProgressLimiter {
    pub(crate) fn new(interval: Duration) -> ProgressLimiter {
        ProgressLimiter { interval, jobs: HashMap::new(), superseded: 0 }
    }

    /// Offers a snapshot: returns it when it may go out now, else keeps it as the job's pending
    /// snapshot (replacing an older pending one) or drops it (a job that already sent its final).
    pub(crate) fn offer(
        &mut self,
        event: Box<JobProgressEvent>,
        now: Instant,
    ) -> Option<Box<JobProgressEvent>> {
        let interval = self.interval;
        let slot = self.jobs.entry(event.job_id.clone());
        let slot = match slot {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(Slot { last_sent: now, pending: None, finished: event.is_final() });
                return Some(event);
            }
            std::collections::hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
        };
        if slot.finished {
            self.superseded += 1;
            return None;
        }
        if slot.pending.is_some() {
            // Whatever happens next, the held-back snapshot is replaced by this one.
            self.superseded += 1;
        }
        if event.is_final() {
            *slot = Slot { last_sent: now, pending: None, finished: true };
            return Some(event);
        }
        if now.duration_since(slot.last_sent) >= interval {
            slot.last_sent = now;
            slot.pending = None;
            return Some(event);
        }
        slot.pending = Some(event);
        None
    }

    /// The held-back snapshots whose interval has passed; forgets idle jobs.
    #[expect(clippy::vec_box, reason = "the boxes go back into HubEvent::JobProgress as they are")]
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Box<JobProgressEvent>> {
        let interval = self.interval;
        let mut out = Vec::new();
        self.jobs.retain(|_, slot| {
            let idle = now.duration_since(slot.last_sent);
            if slot.pending.is_some() && idle >= interval {
                out.extend(slot.pending.take());
                slot.last_sent = now;
                return true;
            }
            slot.pending.is_some() || idle < interval * FORGET_AFTER_INTERVALS
        });
        out
    }

    /// When the next held-back snapshot becomes due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter(|slot| slot.pending.is_some())
            .map(|slot| slot.last_sent + self.interval)
            .min()
    }

    /// Snapshots superseded since the last call.
    pub(crate) fn take_superseded(&mut self) -> u64 {
        std::mem::take(&mut self.superseded)
    }

    /// Number of jobs remembered (for tests).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use protocol::job::{DeviceJobStatistics, JobStatus, JobType};

    use super::*;

    fn snapshot(job: &str, succeeded: u64, status: JobStatus) -> Box<JobProgressEvent> {
        Box::new(JobProgressEvent {
            job_id: JobId::new(job).expect("valid job id"),
            job_type: JobType::ScheduleDeviceMethod,
            status,
            statistics: DeviceJobStatistics { succeeded_count: succeeded, ..Default::default() },
            at: Utc::now(),
        })
    }

    fn succeeded(events: &[Box<JobProgressEvent>]) -> Vec<u64> {
        events.iter().map(|event| event.statistics.succeeded_count).collect()
    }

    #[test]
    fn first_goes_out_then_latest_is_held_until_due() {
        let interval = Duration::from_millis(100);
        let mut limiter = ProgressLimiter::new(interval);
        let start = Instant::now();
        assert!(limiter.offer(snapshot("j1", 1, JobStatus::Running), start).is_some());
        assert!(limiter.offer(snapshot("j1", 2, JobStatus::Running), start).is_none());
        assert!(limiter.offer(snapshot("j1", 3, JobStatus::Running), start).is_none());
        assert_eq!(limiter.next_due(), Some(start + interval));
        assert!(limiter.due(start + Duration::from_millis(50)).is_empty());
        assert_eq!(succeeded(&limiter.due(start + interval)), vec![3]);
        assert_eq!(limiter.next_due(), None);
        assert_eq!(limiter.take_superseded(), 1);
    }

    #[test]
    fn final_goes_out_at_once_and_supersedes_pending() {
        let interval = Duration::from_millis(100);
        let mut limiter = ProgressLimiter::new(interval);
        let start = Instant::now();
        assert!(limiter.offer(snapshot("j1", 1, JobStatus::Running), start).is_some());
        assert!(limiter.offer(snapshot("j1", 2, JobStatus::Running), start).is_none());
        let last = limiter.offer(snapshot("j1", 3, JobStatus::Completed), start);
        assert_eq!(last.map(|event| event.statistics.succeeded_count), Some(3));
        assert!(limiter.due(start + interval).is_empty());
        // A straggler after the final is suppressed.
        assert!(limiter.offer(snapshot("j1", 2, JobStatus::Running), start + interval).is_none());
    }

    #[test]
    fn jobs_are_limited_independently_and_forgotten_when_idle() {
        let interval = Duration::from_millis(100);
        let mut limiter = ProgressLimiter::new(interval);
        let start = Instant::now();
        assert!(limiter.offer(snapshot("j1", 1, JobStatus::Running), start).is_some());
        assert!(limiter.offer(snapshot("j2", 1, JobStatus::Running), start).is_some());
        let later = start + interval;
        assert!(limiter.offer(snapshot("j1", 2, JobStatus::Running), later).is_some());
        assert_eq!(limiter.tracked(), 2);
        assert!(limiter.due(later + interval * FORGET_AFTER_INTERVALS).is_empty());
        assert_eq!(limiter.tracked(), 0);
    }
}
