//! One running job: resolve its device set once, fan the operation out with bounded concurrency,
//! keep live statistics, persist every record, and finish the job.
//!
//! A fresh run resolves the `queryCondition`, then commits the job's `running` row and its device
//! set (one compact row, see [`persist`]) in one transaction before touching any device; a resumed
//! run (after a restart) reads that set back instead, so devices added later are never part of the
//! job. A device's own record row is written when its operation starts (methods) or ends.
//! Per device: method jobs commit the record as `running` *before* the call and the terminal record
//! after it, so a method is invoked at most once per device: a record still `running` after a crash
//! fails with [`INTERRUPTED_CODE`] instead of being called again. Twin jobs write the terminal record
//! with (or right after) the twin, and a resumed non-terminal record is first checked against the twin
//! ([`DeviceBackend::twin_holds`]), so each twin gets the patch once.
//! At `maxExecutionTimeInSeconds` the method calls still waiting are abandoned and every record not yet
//! terminal fails with [`EXPIRED_CODE`]; twin writes in progress finish (they take milliseconds).
//! On shutdown no new device is started, calls in flight are drained and recorded, and the job stays
//! `running` in the store to resume at the next start.
//! Statistics live in [`Progress`]; the engine reads them for `GET`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use protocol::error::ErrorCode;
use protocol::ids::JobId;
use protocol::twin::{ReportedInPatch, TwinPatch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::backend::{DeviceBackend, MethodInvocation};
use super::model::{
    device_error, is_terminal, pending_record, stats_of, DeviceJobError, DeviceJobStatus,
    DeviceRecord, Job, JobKind, JobStatus, JobType, MethodOutcome, MethodSpec, Progress, RecordExt,
};
use super::persist;
use super::throttle::RateLimiter;
use crate::events::{Events, HubEvent};
use crate::store::Store;

/// `error.code` of a record whose device had not finished when the job's maxExecutionTime passed.
pub(crate) const EXPIRED_CODE: &str = "JobExpired";
/// `error.code` of a method record that was in flight when the hub stopped abruptly.
pub(crate) const INTERRUPTED_CODE: &str = "JobInterrupted";

/// What every runner shares.
pub(crate) struct RunContext {
    pub(crate) store: Store,
    pub(crate) backend: Arc<dyn DeviceBackend>,
    /// Pacing of job device operations (tier limits), `None` when unthrottled.
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) max_in_flight: usize,
    /// Where progress and terminal device records are published (may be disabled).
    pub(crate) events: Events,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) enum RunOutcome {
    /// The job reached a terminal status, already committed.
    Finished(Box<Job>),
    /// The hub is shutting down; the job stays `running` in the store.
    Interrupted,
}

/// What one device's operation needs, shared by all devices of the job.
struct Plan {
    ctx: Arc<RunContext>,
    op: Operation,
    deadline: Instant,
    max_execution_secs: u64,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
    job_id: JobId,
    job_type: JobType,
    /// When the last progress event went out (rate limit of [`super::PROGRESS_EVENT_INTERVAL`]).
    last_event: Mutex<Instant>,
}

enum Operation {
    Method(MethodSpec),
    Twin(Arc<TwinPatch>),
}

/// Runs `job` (status `running`, `run_started` set) to the end. `resume` is true when the job was
/// already running before a restart.
pub(crate) async fn run(
    ctx: Arc<RunContext>,
    mut job: Job,
    resume: bool,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
) -> RunOutcome {
    let op = match operation(&job) {
        Ok(op) => op,
        Err(reason) => return finish_failed(&ctx, job, reason).await,
    };
    let records =
        if resume { load_for_resume(&ctx, &job).await } else { start_fresh(&ctx, &job).await };
    let records = match records {
        Ok(records) => records,
        Err(reason) => return finish_failed(&ctx, job, reason).await,
    };
    let plan = Arc::new(Plan {
        ctx: ctx.clone(),
        op,
        deadline: deadline_of(&job),
        max_execution_secs: job.max_execution_secs,
        progress: progress.clone(),
        shutdown: shutdown.clone(),
        job_id: job.job_id.clone(),
        job_type: job.job_type(),
        last_event: Mutex::new(Instant::now()),
    });
    let work = settle_in_doubt(&plan, records).await;
    tracing::debug!(job_id = %job.job_id, n_devices = work.len(), "job fan-out");
    stream::iter(work)
        .map(|record| device_op(plan.clone(), record))
        .buffer_unordered(ctx.max_in_flight.max(1))
        .for_each(|()| async {})
        .await;
    let stats = progress.snapshot();
    if stats.pending_count + stats.running_count > 0 {
        return RunOutcome::Interrupted;
    }
    job.status = JobStatus::Completed;
    job.end_time = Some(Utc::now());
    job.stats = stats;
    commit_finished(&ctx, job).await
}

fn operation(job: &Job) -> Result<Operation, String> {
    match &job.kind {
        JobKind::Method(spec) => Ok(Operation::Method(spec.clone())),
        JobKind::Twin(spec) => TwinPatch::parse(&spec.patch, ReportedInPatch::Ignore)
            .map(|patch| Operation::Twin(Arc::new(patch)))
            .map_err(|err| format!("the stored twin patch is invalid: {err}")),
    }
}

/// When the job's maxExecutionTime runs out, on the tokio clock.
fn deadline_of(job: &Job) -> Instant {
    let started = job.run_started.unwrap_or(job.start_time);
    let limit =
        chrono::Duration::seconds(i64::try_from(job.max_execution_secs).unwrap_or(i64::MAX));
    let remaining = (started + limit - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + remaining
}

/// Resolves the device set and commits the job as running with that set.
async fn start_fresh(ctx: &RunContext, job: &Job) -> Result<Vec<DeviceRecord>, String> {
    let began = Instant::now();
    let devices = ctx.backend.resolve(&job.query_condition)?;
    let resolved = began.elapsed();
    let created = job.run_started.unwrap_or_else(Utc::now);
    let mut running = job.clone();
    running.stats = stats_of(devices.iter().map(|_| DeviceJobStatus::Pending));
    let records: Vec<DeviceRecord> =
        devices.iter().map(|device| pending_record(job, device.clone(), created)).collect();
    let job_id = job.job_id.clone();
    ctx.store
        .write(move |tx| {
            persist::save_job(tx, &running)?;
            persist::save_device_set(tx, &job_id, &devices)
        })
        .await
        .map_err(|err| format!("the job could not be started: {err}"))?;
    tracing::debug!(job_id = %job.job_id, ?resolved, stored = ?began.elapsed(), "job device set");
    Ok(records)
}

async fn load_for_resume(ctx: &RunContext, job: &Job) -> Result<Vec<DeviceRecord>, String> {
    persist::load_records(&ctx.store, job)
        .await
        .map_err(|err| format!("the job could not be resumed: {err}"))
}

/// Fails the whole job with `reason` and commits it.
async fn finish_failed(ctx: &RunContext, mut job: Job, reason: String) -> RunOutcome {
    tracing::info!(job_id = %job.job_id, %reason, "job failed");
    job.status = JobStatus::Failed;
    job.end_time = Some(Utc::now());
    job.status_message = Some(reason.clone());
    job.failure_reason = Some(reason);
    commit_finished(ctx, job).await
}

/// Commits a job that reached a terminal status and drops its device set: a completed job's devices
/// all have terminal records of their own, and a job that failed as a whole runs no device.
async fn commit_finished(ctx: &RunContext, job: Job) -> RunOutcome {
    let stored = job.clone();
    let written = ctx
        .store
        .write(move |tx| {
            persist::save_job(tx, &stored)?;
            persist::delete_device_set(tx, &stored.job_id)
        })
        .await;
    if let Err(err) = written {
        let status = job.status.as_str();
        tracing::error!(job_id = %job.job_id, status, %err, "could not record the job's end");
    }
    RunOutcome::Finished(Box::new(job))
}

/// Seeds the statistics and settles records a crash left in doubt; returns the records still to run
/// (all `pending`).
async fn settle_in_doubt(plan: &Plan, records: Vec<DeviceRecord>) -> Vec<DeviceRecord> {
    let now = Utc::now();
    let mut work = Vec::with_capacity(records.len());
    let mut settled = Vec::new();
    let mut statuses = Vec::with_capacity(records.len());
    for mut record in records {
        if is_terminal(record.status) {
            statuses.push(record.status);
            continue;
        }
        let done = match &plan.op {
            Operation::Method(_) if record.status == DeviceJobStatus::Running => {
                let error = DeviceJobError {
                    code: INTERRUPTED_CODE.to_owned(),
                    description: "the hub stopped while this method call was in flight; it is not invoked again because it may have reached the device".to_owned(),
                };
                Some(record.failed(error, now))
            }
            Operation::Twin(patch) if plan.ctx.backend.twin_holds(&record.device_id, patch) => {
                Some(record.started(now).completed(None, now))
            }
            _ => None,
        };
        match done {
            Some(done) => {
                statuses.push(done.status);
                settled.push(done);
            }
            None => {
                // A twin record in doubt whose patch is not there runs again from pending.
                record.status = DeviceJobStatus::Pending;
                statuses.push(record.status);
                work.push(record);
            }
        }
    }
    if !settled.is_empty() {
        let written = plan
            .ctx
            .store
            .write(move |tx| settled.iter().try_for_each(|record| persist::save_record(tx, record)))
            .await;
        if let Err(err) = written {
            tracing::error!(%err, "could not record the device records settled after a restart");
        }
    }
    plan.progress.reset(stats_of(statuses));
    work
}

/// Runs one device's operation and records it; leaves the record pending on shutdown.
async fn device_op(plan: Arc<Plan>, record: DeviceRecord) {
    if plan.shutdown.is_cancelled() {
        return;
    }
    if Instant::now() >= plan.deadline {
        return expire(&plan, record, DeviceJobStatus::Pending).await;
    }
    if let Some(limiter) = &plan.ctx.limiter {
        tokio::select! {
            _ = limiter.acquire() => {}
            () = sleep_until(plan.deadline) => return expire(&plan, record, DeviceJobStatus::Pending).await,
            () = plan.shutdown.cancelled() => return,
        }
    }
    match &plan.op {
        Operation::Method(spec) => method_op(&plan, spec, record).await,
        Operation::Twin(patch) => twin_op(&plan, patch.clone(), record).await,
    }
}

async fn method_op(plan: &Plan, spec: &MethodSpec, record: DeviceRecord) {
    let running = record.started(Utc::now());
    if !save(plan, &running).await {
        // Without a durable `running` record the call could be repeated after a crash: skip it,
        // and try to leave a failed record (the store may refuse this one too).
        let error = device_error(
            ErrorCode::ServerError,
            "the hub could not store this device's job record, so the method was not invoked",
        );
        let _ = save(plan, &record.failed(error, Utc::now())).await;
        plan.progress.moved(DeviceJobStatus::Pending, DeviceJobStatus::Failed);
        return;
    }
    plan.progress.moved(DeviceJobStatus::Pending, DeviceJobStatus::Running);
    let call = MethodInvocation {
        method_name: spec.method_name.clone(),
        payload: spec.payload.clone(),
        response_timeout: Duration::from_secs(spec.response_timeout_secs),
        connect_timeout: Duration::from_secs(spec.connect_timeout_secs),
    };
    let answer = tokio::select! {
        answer = plan.ctx.backend.invoke_method(running.device_id.clone(), call) => answer,
        () = sleep_until(plan.deadline) => return expire(plan, running, DeviceJobStatus::Running).await,
    };
    let now = Utc::now();
    let done = match answer {
        Ok(answer) => running
            .completed(Some(MethodOutcome { status: answer.status, payload: answer.payload }), now),
        Err(err) => running.failed(device_error(err.code, err.description), now),
    };
    // Count the outcome even if it cannot be stored: the device was called.
    let _ = save(plan, &done).await;
    plan.progress.moved(DeviceJobStatus::Running, done.status);
}

async fn twin_op(plan: &Plan, patch: Arc<TwinPatch>, record: DeviceRecord) {
    let now = Utc::now();
    plan.progress.moved(DeviceJobStatus::Pending, DeviceJobStatus::Running);
    let done = record.started(now).completed(None, now);
    let row = done.clone();
    let write = Box::new(move |tx: &rusqlite::Transaction<'_>| persist::save_record(tx, &row));
    let status = match plan.ctx.backend.update_twin(done.device_id.clone(), patch, write).await {
        Ok(()) => {
            plan.record_finished(&done);
            DeviceJobStatus::Completed
        }
        Err(err) => {
            let failed =
                record.started(now).failed(device_error(err.code, err.description), Utc::now());
            let _ = save(plan, &failed).await;
            DeviceJobStatus::Failed
        }
    };
    plan.progress.moved(DeviceJobStatus::Running, status);
}

/// Fails a record because the job ran out of time.
async fn expire(plan: &Plan, record: DeviceRecord, from: DeviceJobStatus) {
    let error = DeviceJobError {
        code: EXPIRED_CODE.to_owned(),
        description: format!(
            "the job's maxExecutionTimeInSeconds ({} s) elapsed before the operation on this device finished",
            plan.max_execution_secs
        ),
    };
    let failed = record.failed(error, Utc::now());
    let _ = save(plan, &failed).await;
    plan.progress.moved(from, DeviceJobStatus::Failed);
}

/// Commits a record; logs and returns false when the store fails.
async fn save(plan: &Plan, record: &DeviceRecord) -> bool {
    let row = record.clone();
    match plan.ctx.store.write(move |tx| persist::save_record(tx, &row)).await {
        Ok(()) => {
            if is_terminal(record.status) {
                plan.record_finished(record);
            }
            true
        }
        Err(err) => {
            tracing::error!(job_id = %record.job_id, device_id = %record.device_id, %err, "could not store a device job record");
            false
        }
    }
}

impl Plan {
    /// Publishes a record that became terminal, and the job's progress if it is due.
    fn record_finished(&self, record: &DeviceRecord) {
        let events = &self.ctx.events;
        if !events.is_enabled() {
            return;
        }
        events.publish(HubEvent::device_job_record(record));
        let now = Instant::now();
        let due = {
            let mut last = self.last_event.lock();
            let due = now.duration_since(*last) >= super::PROGRESS_EVENT_INTERVAL;
            if due {
                *last = now;
            }
            due
        };
        if due {
            let stats = self.progress.snapshot();
            events.publish(HubEvent::job_progress(
                &self.job_id,
                self.job_type,
                JobStatus::Running,
                stats,
            ));
        }
    }
}
