//! Device queries (`POST /devices/query`) and the paging both queries and job listings share.
//!
//! A page is read from the body (a JSON array of items) and the `x-ms-continuation` /
//! `x-ms-item-type` headers; the next page is asked for with the token in the `x-ms-continuation`
//! request header. [`ServiceClient::query_all`] follows tokens until the hub omits one, and stops with
//! [`ServiceError::PagingLoop`] if a token repeats. Items stay `serde_json::Value`: a projection or
//! aggregate has no fixed shape; callers that know they asked for twins decode them.

use std::collections::HashSet;

use protocol::query::{
    QueryItemType, QueryRequest, CONTINUATION_HEADER, ITEM_TYPE_HEADER, MAX_ITEM_COUNT_HEADER,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{Answer, Call, ServiceClient};
use crate::error::ServiceError;

/// One page of a query or listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// What the items are, from `x-ms-item-type` (when sent and known).
    pub item_type: Option<QueryItemType>,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

impl ServiceClient {
    /// Runs one page of a query; `continuation` is the token from the previous page.
    ///
    /// # Errors
    /// 400 for a query the hub cannot parse; transport and decode errors.
    pub async fn query_page(
        &self,
        sql: &str,
        page_size: Option<usize>,
        continuation: Option<&str>,
    ) -> Result<Page<Value>, ServiceError> {
        let body = QueryRequest { query: sql.to_owned() };
        let call = paging_headers(
            Call::new(Method::POST, "/devices/query".to_owned()).json(&body)?,
            page_size,
            continuation,
        );
        let answer = self.execute(call).await?;
        read_page(&answer)
    }

    /// Runs a query and follows continuation tokens to the end.
    ///
    /// # Errors
    /// As [`ServiceClient::query_page`], plus [`ServiceError::PagingLoop`].
    pub async fn query_all(
        &self,
        sql: &str,
        page_size: Option<usize>,
    ) -> Result<Vec<Value>, ServiceError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.query_page(sql, page_size, token.as_deref()).await?;
            items.extend(page.items);
            match page.continuation {
                None => return Ok(items),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(ServiceError::PagingLoop {
                        operation: "POST /devices/query".into(),
                        token: next,
                    });
                }
                Some(next) => token = Some(next),
            }
        }
    }
}

/// Adds `x-ms-max-item-count` and `x-ms-continuation` when given.
pub(crate) fn paging_headers<'a>(
    mut call: Call<'a>,
    page_size: Option<usize>,
    continuation: Option<&str>,
) -> Call<'a> {
    if let Some(size) = page_size {
        call = call.header(MAX_ITEM_COUNT_HEADER, size.to_string());
    }
    if let Some(token) = continuation {
        call = call.header(CONTINUATION_HEADER, token);
    }
    call
}

/// Reads a page: the body is a JSON array, or (from services that wrap it) an object with `items`
/// and `continuationToken`; the headers take precedence for the token.
pub(crate) fn read_page<T: DeserializeOwned>(answer: &Answer) -> Result<Page<T>, ServiceError> {
    let body: Value = answer.json()?;
    let (raw_items, body_token) = match body {
        Value::Array(items) => (items, None),
        Value::Object(mut object) => {
            let items = match object.remove("items") {
                Some(Value::Array(items)) => items,
                _ => return Err(answer.decode_error("expected a json array of items".into())),
            };
            let token = object
                .remove("continuationToken")
                .and_then(|token| token.as_str().map(str::to_owned));
            (items, token)
        }
        _ => return Err(answer.decode_error("expected a json array of items".into())),
    };
    let items = raw_items
        .into_iter()
        .map(|item| {
            serde_json::from_value(item).map_err(|err| answer.decode_error(err.to_string()))
        })
        .collect::<Result<Vec<T>, ServiceError>>()?;
    let header_token = answer.header(CONTINUATION_HEADER).map(str::to_owned);
    let continuation = header_token.or(body_token).filter(|token| !token.is_empty());
    let item_type = answer.header(ITEM_TYPE_HEADER).and_then(QueryItemType::parse);
    Ok(Page { items, item_type, continuation })
}
