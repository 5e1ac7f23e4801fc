//! The task that owns every job's state: it takes [`Command`]s from [`super::Jobs`] handles over a
//! bounded channel, keeps one timer per scheduled job, starts runners, and records their outcomes.
//!
//! Lifecycle: `queued` at create, `scheduled` right after when the start time is ahead, `running` when
//! its timer fires (a runner task then does the fan-out), and `completed`/`failed` when the runner
//! reports. `cancelled` only from `queued`/`scheduled`. Timers are `tokio::time` instants computed once
//! from the wall-clock start time, and the loop sleeps exactly until the earliest one, so a job starts
//! within a scheduler tick of its start time.
//! Finished jobs older than the retention are purged from memory and the store once a minute.
//! The engine does not touch devices or device records; runners do.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use protocol::ids::JobId;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::JobsConfig;
use super::error::JobsError;
use super::model::{Job, JobStatus, JobType, Progress, Stats};
use super::persist;
use super::runner::{self, RunContext, RunOutcome};
use crate::events::HubEvent;

/// How often finished jobs past the retention are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A request to the engine; each carries the channel its answer goes back on.
pub(crate) enum Command {
    Create { job: Box<Job>, reply: oneshot::Sender<Result<Value, JobsError>> },
    Get { job_id: String, reply: oneshot::Sender<Result<Value, JobsError>> },
    Cancel { job_id: String, reply: oneshot::Sender<Result<Value, JobsError>> },
    List { query: ListQuery, reply: oneshot::Sender<JobPage> },
    Finished { job_id: JobId, outcome: RunOutcome },
}

/// Filters and paging of `GET /jobs/v2/query`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ListQuery {
    pub(crate) job_type: Option<JobType>,
    pub(crate) status: Option<JobStatus>,
    /// Return jobs strictly after this one (creation order).
    pub(crate) after: Option<String>,
    pub(crate) page_size: usize,
}

/// One page of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// `JobResponse` documents, oldest first.
    pub items: Vec<Value>,
    /// The job id to continue after, when more jobs match.
    pub(crate) last: Option<String>,
}

struct Entry {
    job: Job,
    /// Live counters while a runner has the job.
    progress: Option<Arc<Progress>>,
}

pub(crate) struct Engine {
    cfg: JobsConfig,
    ctx: Arc<RunContext>,
    jobs: HashMap<JobId, Entry>,
    timers: BTreeSet<(Instant, JobId)>,
    commands: mpsc::Receiver<Command>,
    /// Given to runners for their `Finished` report.
    tx: mpsc::Sender<Command>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Engine {
    pub(crate) fn new(
        cfg: JobsConfig,
        ctx: Arc<RunContext>,
        channel: (mpsc::Sender<Command>, mpsc::Receiver<Command>),
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Engine {
        let (tx, commands) = channel;
        Engine {
            cfg,
            ctx,
            jobs: HashMap::new(),
            timers: BTreeSet::new(),
            commands,
            tx,
            tracker,
            shutdown,
        }
    }

    /// Takes over the jobs loaded from the store: schedules pending ones, resumes running ones.
    pub(crate) fn adopt(&mut self, jobs: Vec<Job>) {
        for job in jobs {
            let job_id = job.job_id.clone();
            let status = job.status;
            self.jobs.insert(job_id.clone(), Entry { job, progress: None });
            match status {
                JobStatus::Queued | JobStatus::Scheduled => self.schedule(&job_id),
                JobStatus::Running => self.spawn_runner(&job_id, true),
                // Never stored by this engine; kept for GET.
                JobStatus::Completed
                | JobStatus::Failed
                | JobStatus::Cancelled
                | JobStatus::Unknown => {}
            }
        }
    }

    /// Serves commands until shutdown, then answers what is queued with [`JobsError::ShuttingDown`].
    pub(crate) async fn run(mut self) {
        let mut purge = tokio::time::interval(PURGE_INTERVAL);
        loop {
            let next_timer = self.timers.first().map(|(at, _)| *at);
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                () = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => self.fire_timers(),
                _ = purge.tick() => self.purge().await,
            }
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            refuse(command);
        }
        tracing::debug!("jobs engine stopped");
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Create { job, reply } => {
                let res = self.create(*job).await;
                let _ = reply.send(res);
            }
            Command::Get { job_id, reply } => {
                let _ = reply.send(self.entry(&job_id).map(Entry::response));
            }
            Command::Cancel { job_id, reply } => {
                let res = self.cancel(&job_id).await;
                let _ = reply.send(res);
            }
            Command::List { query, reply } => {
                let _ = reply.send(self.list(&query));
            }
            Command::Finished { job_id, outcome } => self.finished(&job_id, outcome),
        }
    }

    async fn create(&mut self, job: Job) -> Result<Value, JobsError> {
        if self.jobs.contains_key(&job.job_id) {
            return Err(JobsError::AlreadyExists(job.job_id.into_string()));
        }
        if let Some(limit) = self.cfg.max_active_jobs() {
            let active = self.jobs.values().filter(|entry| entry.job.status.is_active()).count();
            if active >= limit {
                return Err(JobsError::TooManyActiveJobs { active, limit });
            }
        }
        let response = job.to_response(Stats::default());
        // The PUT answers `queued`; a job that starts later is stored as `scheduled` right away.
        let mut job = job;
        if job.start_time > Utc::now() {
            job.status = JobStatus::Scheduled;
        }
        let stored = job.clone();
        self.ctx.store.write(move |tx| persist::save_job(tx, &stored)).await?;
        let job_id = job.job_id.clone();
        tracing::info!(%job_id, job_type = job.job_type().as_str(), "job created");
        self.jobs.insert(job_id.clone(), Entry { job, progress: None });
        self.schedule(&job_id);
        self.publish(&job_id);
        Ok(response)
    }

    /// Starts a queued or scheduled job now if its start time has come, else arms its timer.
    fn schedule(&mut self, job_id: &JobId) {
        let Some(entry) = self.jobs.get_mut(job_id) else { return };
        let ahead = (entry.job.start_time - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if ahead.is_zero() {
            return self.start(job_id);
        }
        entry.job.status = JobStatus::Scheduled;
        self.timers.insert((Instant::now() + ahead, job_id.clone()));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, job_id)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, job_id.clone()));
            self.start(&job_id);
        }
    }

    fn start(&mut self, job_id: &JobId) {
        let Some(entry) = self.jobs.get_mut(job_id) else { return };
        if !matches!(entry.job.status, JobStatus::Queued | JobStatus::Scheduled) {
            return;
        }
        entry.job.status = JobStatus::Running;
        entry.job.run_started = Some(Utc::now());
        tracing::info!(%job_id, "job running");
        self.spawn_runner(job_id, false);
        self.publish(job_id);
    }

    fn spawn_runner(&mut self, job_id: &JobId, resume: bool) {
        let Some(entry) = self.jobs.get_mut(job_id) else { return };
        let progress = Arc::new(Progress::default());
        entry.progress = Some(progress.clone());
        let (ctx, job, tx, shutdown) =
            (self.ctx.clone(), entry.job.clone(), self.tx.clone(), self.shutdown.clone());
        let job_id = job_id.clone();
        self.tracker.spawn(async move {
            let outcome = runner::run(ctx, job, resume, progress, shutdown).await;
            // The engine is gone only during shutdown; the outcome is already in the store.
            let _ = tx.send(Command::Finished { job_id, outcome }).await;
        });
    }

    async fn cancel(&mut self, job_id: &str) -> Result<Value, JobsError> {
        let entry = self.entry_mut(job_id)?;
        match entry.job.status {
            JobStatus::Queued | JobStatus::Scheduled => {}
            JobStatus::Cancelled => return Ok(entry.response()),
            status @ (JobStatus::Running
            | JobStatus::Completed
            | JobStatus::Failed
            | JobStatus::Unknown) => {
                return Err(JobsError::NotCancellable {
                    job_id: job_id.to_owned(),
                    status: status.as_str(),
                })
            }
        }
        let mut cancelled = entry.job.clone();
        cancelled.status = JobStatus::Cancelled;
        cancelled.end_time = Some(Utc::now());
        let stored = cancelled.clone();
        self.ctx.store.write(move |tx| persist::save_job(tx, &stored)).await?;
        self.timers.retain(|(_, id)| id.as_str() != job_id);
        let entry = self.entry_mut(job_id)?;
        entry.job = cancelled;
        tracing::info!(%job_id, "job cancelled");
        let response = entry.response();
        if let Ok(id) = JobId::new(job_id) {
            self.publish(&id);
        }
        Ok(response)
    }

    fn list(&self, query: &ListQuery) -> JobPage {
        let mut matching: Vec<&Job> = self
            .jobs
            .values()
            .map(|entry| &entry.job)
            .filter(|job| query.job_type.is_none_or(|kind| job.job_type() == kind))
            .filter(|job| query.status.is_none_or(|status| job.status == status))
            .collect();
        matching.sort_by(|a, b| (a.created_time, &a.job_id).cmp(&(b.created_time, &b.job_id)));
        let start = match &query.after {
            Some(after) => matching
                .iter()
                .position(|job| job.job_id.as_str() == after)
                .map_or(0, |idx| idx + 1),
            None => 0,
        };
        let page: Vec<&Job> =
            matching.iter().skip(start).take(query.page_size.max(1)).copied().collect();
        let more = start + page.len() < matching.len();
        let last = page.last().filter(|_| more).map(|job| job.job_id.as_str().to_owned());
        let items =
            page.iter().filter_map(|job| self.jobs.get(&job.job_id)).map(Entry::response).collect();
        JobPage { items, last }
    }

    fn finished(&mut self, job_id: &JobId, outcome: RunOutcome) {
        let Some(entry) = self.jobs.get_mut(job_id) else { return };
        if let RunOutcome::Finished(job) = outcome {
            tracing::info!(%job_id, status = job.status.as_str(), "job finished");
            entry.job = *job;
            entry.progress = None;
            self.publish(job_id);
        }
    }

    /// Publishes the job's status and statistics as they are now.
    fn publish(&self, job_id: &JobId) {
        let Some(entry) = self.jobs.get(job_id) else { return };
        let job = &entry.job;
        let stats = entry.progress.as_ref().map_or(job.stats, |progress| progress.snapshot());
        self.ctx.events.publish(HubEvent::job_progress(job_id, job.job_type(), job.status, stats));
    }

    async fn purge(&mut self) {
        let Ok(retention) = chrono::Duration::from_std(self.cfg.retention) else { return };
        let cutoff = Utc::now() - retention;
        let before = self.jobs.len();
        self.jobs.retain(|_, entry| {
            entry.job.status.is_active() || entry.job.end_time.is_none_or(|end| end >= cutoff)
        });
        if let Err(err) =
            self.ctx.store.write(move |tx| persist::delete_expired(tx, cutoff).map(|_| ())).await
        {
            tracing::warn!(%err, "could not purge expired jobs");
        }
        if self.jobs.len() < before {
            tracing::info!(n_jobs = before - self.jobs.len(), "expired jobs purged");
        }
    }

    fn entry(&self, job_id: &str) -> Result<&Entry, JobsError> {
        JobId::new(job_id)
            .ok()
            .and_then(|id| self.jobs.get(&id))
            .ok_or_else(|| JobsError::NotFound(job_id.to_owned()))
    }

    fn entry_mut(&mut self, job_id: &str) -> Result<&mut Entry, JobsError> {
        JobId::new(job_id)
            .ok()
            .and_then(|id| self.jobs.get_mut(&id))
            .ok_or_else(|| JobsError::NotFound(job_id.to_owned()))
    }
}

impl Entry {
    fn response(&self) -> Value {
        let stats = self.progress.as_ref().map_or(self.job.stats, |progress| progress.snapshot());
        self.job.to_response(stats)
    }
}

fn refuse(command: Command) {
    match command {
        Command::Create { reply, .. }
        | Command::Get { reply, .. }
        | Command::Cancel { reply, .. } => {
            let _ = reply.send(Err(JobsError::ShuttingDown));
        }
        // Dropping the reply tells the caller the engine is gone.
        Command::List { .. } | Command::Finished { .. } => {}
    }
}
