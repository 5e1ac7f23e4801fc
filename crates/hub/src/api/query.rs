//! `POST /devices/query`: IoT Hub's query language over twins and per-device job records.
//!
//! The body is `{"query":".."}`; `x-ms-max-item-count` picks the page size and `x-ms-continuation`
//! resumes. The response is a JSON array with `x-ms-item-type`, and `x-ms-continuation` only when
//! another page exists (an empty value would make the Node SDK loop forever).
//! `FROM devices` and `FROM devices.modules` are answered by the registry. `FROM devices.jobs` reads
//! the jobs engine's committed device records (narrowed by a jobId/deviceId equality when the query
//! has one), evaluates the condition here and pages in (jobId, deviceId) order. A query that does not
//! parse gets 400 with the parser's message.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use protocol::error::ErrorCode;
use protocol::ids::{DeviceId, JobId};
use protocol::query::{
    page_size, QueryItemType, QueryRequest, CONTINUATION_HEADER, ITEM_TYPE_HEADER,
    MAX_ITEM_COUNT_HEADER,
};
use query::{Collection, IndexHint, Query};
use serde_json::Value;

use super::extract::RawBody;
use super::{json_response, ApiError, ApiState};
use crate::jobs::RecordFilter;
use crate::registry::QueryPage;

/// The routes of this file.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/devices/query", post(run_query))
}

async fn run_query(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request = QueryRequest::parse(&body)
        .map_err(|err| ApiError::new(err.error_code(), err.to_string()))?;
    let parsed = query::parse_query(&request.query).map_err(|err| {
        ApiError::new(ErrorCode::ArgumentInvalid, format!("invalid query: {err}"))
    })?;
    let header_text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let size = page_size(header_text(MAX_ITEM_COUNT_HEADER));
    let continuation = header_text(CONTINUATION_HEADER).filter(|token| !token.trim().is_empty());
    let page = match parsed.from {
        Collection::DevicesJobs => device_jobs_page(&state, &parsed, continuation, size).await?,
        _ => state.registry.query_page(&parsed, continuation, size)?,
    };
    Ok(page_response(page))
}

fn page_response(page: QueryPage) -> Response {
    let mut response = json_response(StatusCode::OK, &page.items);
    let headers = response.headers_mut();
    headers.insert(ITEM_TYPE_HEADER, HeaderValue::from_static(page.item_type.header_value()));
    if let Some(token) = page.continuation.filter(|token| !token.is_empty()) {
        if let Ok(value) = HeaderValue::from_str(&token) {
            headers.insert(CONTINUATION_HEADER, value);
        }
    }
    response
}

/// One page of `FROM devices.jobs`: records ordered by (jobId, deviceId); the continuation token is
/// "rows served | last jobId | last deviceId".
async fn device_jobs_page(
    state: &ApiState,
    query: &Query,
    continuation: Option<&str>,
    page_size: usize,
) -> Result<QueryPage, ApiError> {
    let (served, after) = parse_job_cursor(continuation)?;
    let records = state
        .jobs
        .device_job_records(record_filter(query))
        .await
        .map_err(|err| ApiError::new(err.error_code(), err.to_string()))?;
    let remaining = query.top.map_or(u64::MAX, |top| top.saturating_sub(served));
    let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(page_size.max(1));
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for record in records
        .iter()
        .filter(|record| after.as_ref().is_none_or(|after| record_key(record) > *after))
    {
        if !query.matches(record) {
            continue;
        }
        if items.len() == want {
            more = true;
            break;
        }
        last = Some(record_key(record));
        items.push(record.clone());
    }
    let served = served + items.len() as u64;
    let more = more && query.top.is_none_or(|top| served < top);
    let continuation = match (more, last) {
        (true, Some((job, device))) => {
            Some(URL_SAFE_NO_PAD.encode(format!("{served}|{job}|{device}")))
        }
        _ => None,
    };
    Ok(QueryPage { items, item_type: QueryItemType::DeviceJob, continuation })
}

/// Narrows the store read when the query pins one job or one device.
fn record_filter(query: &Query) -> RecordFilter {
    match query.index_hint() {
        IndexHint::JobIds(ids) if ids.len() == 1 => RecordFilter {
            job_id: ids.first().and_then(|id| JobId::new(id.as_str()).ok()),
            device_id: None,
        },
        IndexHint::DeviceIds(ids) if ids.len() == 1 => RecordFilter {
            job_id: None,
            device_id: ids.first().and_then(|id| DeviceId::new(id.as_str()).ok()),
        },
        _ => RecordFilter::default(),
    }
}

fn record_key(record: &Value) -> (String, String) {
    let text = |key: &str| record.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("jobId"), text("deviceId"))
}

fn parse_job_cursor(token: Option<&str>) -> Result<(u64, Option<(String, String)>), ApiError> {
    let Some(token) = token else { return Ok((0, None)) };
    let bad = || {
        ApiError::new(ErrorCode::ArgumentInvalid, format!("invalid continuation token {token:?}"))
    };
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '|');
    let (Some(served), Some(job), Some(device)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let served = served.parse().map_err(|_| bad())?;
    Ok((served, Some((job.to_owned(), device.to_owned()))))
}
