//! The jobs v2 engine: scheduled direct-method and twin-update jobs over sets of devices.
//!
//! [`spawn`] loads the stored jobs, resumes the ones that were running and returns [`Jobs`], the cheap
//! `Clone` handle the REST layer and the CLI use. One task (`engine`) owns job state and serves
//! [`Jobs`] over a bounded channel; one task per running job (`runner`) resolves its devices once and
//! fans the operation out with bounded concurrency. Jobs, per-device records and statistics are durable
//! in the hub store (`persist`), so a job survives a crash and resumes (see `runner` for the
//! exactly-once rules). Request validation is in `request`, the state and wire shapes in `model`,
//! tier limits in [`config`] and traffic shaping in [`throttle`].
//! It does not parse HTTP: `api::jobs` maps requests onto [`Jobs`] and [`JobsError`] onto responses.

mod backend;
pub mod config;
mod engine;
mod error;
mod model;
mod persist;
mod request;
mod runner;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use protocol::error::ErrorCode;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::Events;
use crate::mqtt::Sessions;
use crate::registry::Registry;
use crate::store::Store;
use backend::{DeviceBackend, HubBackend};
pub use config::{JobsConfig, Tier, TierLimits};
pub use engine::JobPage;
use engine::{Command, Engine, ListQuery};
pub use error::JobsError;
pub use persist::RecordFilter;
use runner::RunContext;
use throttle::RateLimiter;

/// How often a running job publishes a progress event at most (the final one always goes out).
pub const PROGRESS_EVENT_INTERVAL: Duration = Duration::from_millis(250);
/// Capacity of the engine's command queue; when full, callers wait (back-pressure on REST).
const COMMAND_QUEUE: usize = 1024;
/// Page size of `GET /jobs/v2/query` when the client asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page of `GET /jobs/v2/query`; larger requests are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Cheap-to-clone handle to the job engine.
#[derive(Clone)]
pub struct Jobs {
    tx: mpsc::Sender<Command>,
    store: Store,
    default_max_execution: Duration,
    /// The tier's jobs-operations rate (create, cancel, list), `None` when unthrottled.
    api_limiter: Option<Arc<RateLimiter>>,
}

/// Filters and paging of a job listing, as the client sent them (strings are checked here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// `jobType`, case-insensitive.
    pub job_type: Option<String>,
    /// `jobStatus`, case-insensitive.
    pub job_status: Option<String>,
    /// `x-ms-max-item-count` or `pageSize`.
    pub page_size: Option<usize>,
    /// `x-ms-continuation` or `continuationToken`.
    pub continuation: Option<String>,
}

/// Starts the jobs engine on `store`, with the registry and device sessions as its device side.
/// Loads the stored jobs first: scheduled ones are re-armed and running ones resume.
/// Publishes no events; see [`spawn_with_events`].
///
/// # Errors
/// [`JobsError::Store`] when the tables cannot be created or read.
pub async fn spawn(
    cfg: JobsConfig,
    registry: Registry,
    sessions: Sessions,
    store: Store,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Jobs, JobsError> {
    spawn_with_events(cfg, registry, sessions, store, Events::disabled(), shutdown, tracker).await
}

/// [`spawn`], also publishing on `events`: each job's status changes, its statistics at most every
/// [`PROGRESS_EVENT_INTERVAL`] while it runs, and every device record that becomes terminal.
///
/// # Errors
/// [`JobsError::Store`] when the tables cannot be created or read.
pub async fn spawn_with_events(
    cfg: JobsConfig,
    registry: Registry,
    sessions: Sessions,
    store: Store,
    events: Events,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Jobs, JobsError> {
    let backend = Arc::new(HubBackend { registry, sessions });
    spawn_with_backend(cfg, backend, store, events, shutdown, tracker).await
}

/// [`spawn_with_events`] with any device side (tests use a fake).
pub(crate) async fn spawn_with_backend(
    cfg: JobsConfig,
    backend: Arc<dyn DeviceBackend>,
    store: Store,
    events: Events,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Jobs, JobsError> {
    persist::init(&store).await?;
    let loaded = persist::load_jobs(&store).await?;
    let limiter =
        cfg.job_device_ops_per_second().map(|rate| Arc::new(RateLimiter::new(rate, None)));
    let api_limiter = cfg.tier.map(|limits| {
        Arc::new(RateLimiter::new(
            limits.job_operations_per_second(),
            Some(config::DEFAULT_THROTTLE_BACKLOG),
        ))
    });
    let ctx = Arc::new(RunContext {
        store: store.clone(),
        backend,
        limiter,
        max_in_flight: cfg.max_in_flight.get(),
        events,
    });
    // Bounded: when full, `Jobs` calls wait, and runners' completion reports wait too.
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let jobs = Jobs {
        tx: tx.clone(),
        store,
        default_max_execution: cfg.default_max_execution,
        api_limiter,
    };
    let n_loaded = loaded.len();
    let mut engine = Engine::new(cfg, ctx, (tx, rx), tracker.clone(), shutdown);
    engine.adopt(loaded);
    tracker.spawn(engine.run());
    tracing::info!(n_jobs = n_loaded, "jobs engine started");
    Ok(jobs)
}

impl Jobs {
    /// `PUT /jobs/v2/{jobId}`: validates and stores a job; answers the `queued` JobResponse.
    ///
    /// # Errors
    /// 400 for an invalid request, 409 for a duplicate id, 429 over the tier's limits, 500 on a store failure.
    pub async fn create(&self, job_id: &str, body: &[u8]) -> Result<Value, JobsError> {
        self.throttle().await?;
        let job = request::parse_request(job_id, body, Utc::now(), self.default_max_execution)?;
        self.ask(|reply| Command::Create { job: Box::new(job), reply }).await?
    }

    /// `GET /jobs/v2/{jobId}`: the JobResponse with live statistics.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub async fn get(&self, job_id: &str) -> Result<Value, JobsError> {
        let job_id = job_id.to_owned();
        self.ask(|reply| Command::Get { job_id, reply }).await?
    }

    /// `POST /jobs/v2/{jobId}/cancel`: cancels a queued or scheduled job (idempotent once cancelled).
    ///
    /// # Errors
    /// [`JobsError::NotFound`], or [`JobsError::NotCancellable`] for a running or finished job.
    pub async fn cancel(&self, job_id: &str) -> Result<Value, JobsError> {
        self.throttle().await?;
        let job_id = job_id.to_owned();
        self.ask(|reply| Command::Cancel { job_id, reply }).await?
    }

    /// `GET /jobs/v2/query`: jobs oldest first, filtered and paged. The page's continuation token is
    /// [`JobPage::continuation`].
    ///
    /// # Errors
    /// 400 for an unknown `jobType`/`jobStatus` or a malformed continuation token.
    pub async fn list(&self, request: ListRequest) -> Result<JobPage, JobsError> {
        self.throttle().await?;
        let query = list_query(request)?;
        self.ask(|reply| Command::List { query, reply }).await
    }

    /// Device job records (`devices.jobs` JSON) narrowed by `filter`; the caller evaluates the rest of
    /// the query. Reads what is committed: records of a running job appear as its devices progress.
    ///
    /// # Errors
    /// [`JobsError::Store`].
    pub async fn device_job_records(&self, filter: RecordFilter) -> Result<Vec<Value>, JobsError> {
        Ok(persist::read_records(&self.store, filter).await?)
    }

    /// Jobs per wire status, and the number of per-device records that reached a terminal state
    /// (the job device operations done), for `/metrics`.
    ///
    /// # Errors
    /// [`JobsError::Store`].
    pub async fn metrics(&self) -> Result<(Vec<(String, u64)>, u64), JobsError> {
        Ok(persist::read_metrics(&self.store).await?)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, JobsError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(command(reply)).await.map_err(|_| JobsError::ShuttingDown)?;
        answer.await.map_err(|_| JobsError::ShuttingDown)
    }

    async fn throttle(&self) -> Result<(), JobsError> {
        match &self.api_limiter {
            Some(limiter) => limiter.acquire().await.map_err(|_| JobsError::Throttled),
            None => Ok(()),
        }
    }
}

impl JobPage {
    /// The opaque token for the next page (`x-ms-continuation`), `None` on the last page.
    pub fn continuation(&self) -> Option<String> {
        self.last.as_ref().map(|last| URL_SAFE_NO_PAD.encode(format!("after:{last}")))
    }
}

fn list_query(request: ListRequest) -> Result<ListQuery, JobsError> {
    let (job_type, status) =
        protocol::job::parse_job_filter(request.job_type.as_deref(), request.job_status.as_deref())
            .map_err(|err| JobsError::invalid(ErrorCode::ArgumentInvalid, format!("{err}")))?;
    let after = match request.continuation.filter(|token| !token.trim().is_empty()) {
        Some(token) => Some(decode_token(&token)?),
        None => None,
    };
    let page_size = request.page_size.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
    Ok(ListQuery { job_type, status, after, page_size })
}

fn decode_token(token: &str) -> Result<String, JobsError> {
    URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("after:").map(str::to_owned))
        .ok_or_else(|| {
            JobsError::invalid(
                ErrorCode::ArgumentInvalid,
                "the continuation token is not one this hub issued",
            )
        })
}

#[cfg(test)]
mod tests;
