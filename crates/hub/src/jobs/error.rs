//! [`JobsError`]: why a jobs v2 request was refused, with the IoT Hub code each failure maps to.
//!
//! Job *outcomes* (a job that ends `failed`, a device record that fails) are data in the job, not
//! errors here; this type is only for requests the engine turns down.

use protocol::error::ErrorCode;

use crate::store::StoreError;

/// Why a jobs request was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The request is malformed or breaks a documented rule.
    #[error("{message}")]
    InvalidRequest {
        /// The code to answer with (400xxx or 413001).
        code: ErrorCode,
        /// What is wrong, for the client.
        message: String,
    },
    /// No job with that id (also for ids that are not valid job ids).
    #[error("job '{0}' not found")]
    NotFound(String),
    /// A job with that id exists (or existed within the history retention).
    #[error("a job with id '{0}' already exists")]
    AlreadyExists(String),
    /// The tier's cap on concurrently active jobs is reached.
    #[error("the hub already has {active} active jobs; the tier allows {limit}")]
    TooManyActiveJobs {
        /// Queued, scheduled and running jobs now.
        active: usize,
        /// The tier's cap.
        limit: usize,
    },
    /// The job cannot be cancelled in its current status.
    #[error("job '{job_id}' cannot be cancelled: it is {status} (only queued or scheduled jobs can be cancelled)")]
    NotCancellable {
        /// The job.
        job_id: String,
        /// Its status on the wire (`running`, `completed`, `failed`).
        status: &'static str,
    },
    /// A jobs API call was throttled by the tier's jobs-operations rate.
    #[error("too many jobs operations: the tier's rate is exceeded")]
    Throttled,
    /// The store failed; the change may not be durable.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The engine is shutting down.
    #[error("the jobs engine is shutting down")]
    ShuttingDown,
}

impl JobsError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            JobsError::InvalidRequest { code, .. } => *code,
            JobsError::NotFound(_) => ErrorCode::JobNotFound,
            JobsError::AlreadyExists(_) => ErrorCode::JobAlreadyExists,
            JobsError::TooManyActiveJobs { .. } => ErrorCode::ThrottlingMaxActiveJobCountExceeded,
            JobsError::NotCancellable { .. } => ErrorCode::JobRunPreconditionFailed,
            JobsError::Throttled => ErrorCode::ThrottlingException,
            JobsError::Store(_) => ErrorCode::ServerError,
            JobsError::ShuttingDown => ErrorCode::ServiceUnavailable,
        }
    }

    /// A 400 with `code` and `message`.
    pub(crate) fn invalid(code: ErrorCode, message: impl Into<String>) -> JobsError {
        JobsError::InvalidRequest { code, message: message.into() }
    }
}
