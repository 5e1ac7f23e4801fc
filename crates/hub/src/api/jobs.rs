//! Jobs v2 REST: `PUT /jobs/v2/{jobId}`, `GET /jobs/v2/{jobId}`, `POST /jobs/v2/{jobId}/cancel` and
//! `GET /jobs/v2/query`.
//!
//! Handlers only translate HTTP to [`crate::jobs::Jobs`] calls: the path id and raw body go to the
//! engine, which validates them. The listing reads `jobType`/`jobStatus` (case-insensitive) and pages
//! with `x-ms-max-item-count`/`x-ms-continuation` headers or the `pageSize`/`continuationToken` query
//! parameters; it answers a JSON array of JobResponse with `x-ms-item-type: jobResponse`, and
//! `x-ms-continuation` only when another page exists. (Python's `query_scheduled_jobs` expects an
//! object instead and cannot read the service's array either; see the shared protocol notes §5.6.)

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use protocol::error::ErrorCode;
use protocol::query::{
    QueryItemType, CONTINUATION_HEADER, ITEM_TYPE_HEADER, MAX_ITEM_COUNT_HEADER,
};

use super::extract::RawBody;
use super::{json_response, ApiError, ApiState};
use crate::jobs::{JobsError, ListRequest};

/// The routes of this file.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/jobs/v2/query", get(list_jobs))
        .route("/jobs/v2/{job_id}", put(create_job).get(get_job))
        .route("/jobs/v2/{job_id}/cancel", post(cancel_job))
}

impl From<JobsError> for ApiError {
    fn from(err: JobsError) -> ApiError {
        ApiError::new(err.error_code(), err.to_string())
    }
}

async fn create_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let job_id = job_path(path)?;
    let job = state.jobs.create(&job_id, &body).await?;
    Ok(json_response(StatusCode::OK, &job))
}

async fn get_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let job = state.jobs.get(&job_path(path)?).await?;
    Ok(json_response(StatusCode::OK, &job))
}

async fn cancel_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let job = state.jobs.cancel(&job_path(path)?).await?;
    Ok(json_response(StatusCode::OK, &job))
}

async fn list_jobs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|err| {
        ApiError::new(ErrorCode::ArgumentInvalid, format!("invalid query string: {err}"))
    })?;
    let request = list_request(&headers, &params)?;
    let page = state.jobs.list(request).await?;
    let mut response = json_response(StatusCode::OK, &page.items);
    let response_headers = response.headers_mut();
    response_headers.insert(
        ITEM_TYPE_HEADER,
        HeaderValue::from_static(QueryItemType::JobResponse.header_value()),
    );
    if let Some(token) = page.continuation() {
        if let Ok(value) = HeaderValue::from_str(&token) {
            response_headers.insert(CONTINUATION_HEADER, value);
        }
    }
    Ok(response)
}

/// The path's job id as sent (the engine validates it: 400 on create, 404 on get and cancel).
fn job_path(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    path.map(|Path(job_id)| job_id).map_err(|err| {
        ApiError::new(ErrorCode::ArgumentInvalid, format!("invalid job id in the path: {err}"))
    })
}

/// Filters from the query string; paging from the headers, else from the query string.
fn list_request(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<ListRequest, ApiError> {
    let header =
        |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let page_size = match header(MAX_ITEM_COUNT_HEADER).or_else(|| param("pageSize")) {
        Some(text) => Some(text.trim().parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                format!("the page size {text:?} is not a positive integer"),
            )
        })?),
        None => None,
    };
    Ok(ListRequest {
        job_type: param("jobType"),
        job_status: param("jobStatus"),
        page_size,
        continuation: header(CONTINUATION_HEADER).or_else(|| param("continuationToken")),
    })
}
