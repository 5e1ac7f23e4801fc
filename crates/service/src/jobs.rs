//! Jobs v2: create (`PUT /jobs/v2/{id}`), get, cancel (`POST /jobs/v2/{id}/cancel`), list
//! (`GET /jobs/v2/query` with paging), and a job's per-device records (`FROM devices.jobs`).
//!
//! Requests are `protocol::job::JobRequest` (validated there); the body always carries the path's job id.
//! Answers are `protocol::job::JobResponse` and `protocol::job::DeviceJob`. Waiting for a job to finish
//! is the caller's loop (the CLI's `job watch`), not this module's.

use std::collections::HashSet;

use protocol::ids::JobId;
use protocol::job::{DeviceJob, JobRequest, JobResponse, JobStatus, JobType};
use reqwest::Method;
use serde_json::Value;

use crate::client::{segment, Call, ServiceClient};
use crate::error::ServiceError;
use crate::query::{paging_headers, read_page, Page};

/// Which jobs `GET /jobs/v2/query` lists; `None` fields do not filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
}

impl ServiceClient {
    /// Schedules a job; the answer is the job document in `queued` state.
    ///
    /// # Errors
    /// 409104 JobAlreadyExists, 429004 ThrottlingMaxActiveJobCountExceeded, 400 for a bad request;
    /// transport and decode errors.
    pub async fn create_job(
        &self,
        job_id: &JobId,
        request: &JobRequest,
    ) -> Result<JobResponse, ServiceError> {
        let mut body = request.to_value();
        if let Value::Object(fields) = &mut body {
            fields.insert("jobId".into(), Value::from(job_id.as_str()));
        }
        self.execute_json(Call::new(Method::PUT, job_path(job_id)).json(&body)?).await
    }

    /// Reads a job document.
    ///
    /// # Errors
    /// 404002 JobNotFound; transport and decode errors.
    pub async fn get_job(&self, job_id: &JobId) -> Result<JobResponse, ServiceError> {
        self.execute_json(Call::new(Method::GET, job_path(job_id))).await
    }

    /// Cancels a queued or scheduled job; the answer is the job document (`cancelled`).
    ///
    /// # Errors
    /// 404002 JobNotFound, 412003 JobRunPreconditionFailed when the job can no longer be cancelled.
    pub async fn cancel_job(&self, job_id: &JobId) -> Result<JobResponse, ServiceError> {
        let path = format!("{}/cancel", job_path(job_id));
        self.execute_json(Call::new(Method::POST, path)).await
    }

    /// One page of the job listing.
    ///
    /// # Errors
    /// Transport and decode errors, or the hub's refusal.
    pub async fn list_jobs_page(
        &self,
        filter: JobFilter,
        page_size: Option<usize>,
        continuation: Option<&str>,
    ) -> Result<Page<JobResponse>, ServiceError> {
        let mut call = Call::new(Method::GET, "/jobs/v2/query".to_owned());
        if let Some(job_type) = filter.job_type {
            call = call.query("jobType", job_type.as_str());
        }
        if let Some(status) = filter.status {
            call = call.query("jobStatus", status.as_str());
        }
        let answer = self.execute(paging_headers(call, page_size, continuation)).await?;
        read_page(&answer)
    }

    /// Every job matching `filter`, following continuation tokens.
    ///
    /// # Errors
    /// As [`ServiceClient::list_jobs_page`], plus [`ServiceError::PagingLoop`].
    pub async fn list_jobs(
        &self,
        filter: JobFilter,
        page_size: Option<usize>,
    ) -> Result<Vec<JobResponse>, ServiceError> {
        let mut jobs = Vec::new();
        let mut seen = HashSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_jobs_page(filter, page_size, token.as_deref()).await?;
            jobs.extend(page.items);
            match page.continuation {
                None => return Ok(jobs),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(ServiceError::PagingLoop {
                        operation: "GET /jobs/v2/query".into(),
                        token: next,
                    });
                }
                Some(next) => token = Some(next),
            }
        }
    }

    /// The per-device records of one job (`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '<id>'`).
    ///
    /// # Errors
    /// As [`ServiceClient::query_all`], plus a decode error for a record of the wrong shape.
    pub async fn device_jobs(
        &self,
        job_id: &JobId,
        page_size: Option<usize>,
    ) -> Result<Vec<DeviceJob>, ServiceError> {
        // Job ids are letters, digits and '-', so they need no escaping inside the quotes.
        let sql = format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'");
        let items = self.query_all(&sql, page_size).await?;
        items
            .into_iter()
            .map(|item| {
                serde_json::from_value(item).map_err(|err| ServiceError::Decode {
                    operation: "POST /devices/query".into(),
                    detail: format!("device job record: {err}"),
                })
            })
            .collect()
    }
}

fn job_path(job_id: &JobId) -> String {
    format!("/jobs/v2/{}", segment(job_id.as_str()))
}
