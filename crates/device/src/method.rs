//! Direct methods on the device side: [`MethodRequest`], [`MethodAnswer`] and handler registration types.
//!
//! A handler is an async function from a request to an answer. The client runs handlers inside its
//! own task (no task per call) and publishes the answer on `$iothub/methods/res/{status}/?$rid=..`.
//! This module does not decide routing (exact name, then the default handler); the client does.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

/// A direct-method call from the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRequest {
    /// The method name from the topic (percent-decoded).
    pub name: String,
    /// The request id (`$rid`) the hub correlates the answer by.
    pub rid: String,
    /// The JSON payload (`Value::Null` for a `null` body).
    pub payload: Value,
}

/// A handler's answer: the status (any integer; 200 is success by convention) and a JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodAnswer {
    /// The status reported to the service caller.
    pub status: i32,
    /// The payload reported to the service caller.
    pub payload: Value,
}

impl MethodAnswer {
    /// An answer with `status` and `payload`.
    pub fn new(status: i32, payload: Value) -> MethodAnswer {
        MethodAnswer { status, payload }
    }

    /// `200` with `payload`.
    pub fn ok(payload: Value) -> MethodAnswer {
        MethodAnswer { status: 200, payload }
    }
}

/// A registered handler, shared by reference count (ten thousand clients can share one).
pub type MethodHandler =
    Arc<dyn Fn(MethodRequest) -> BoxFuture<'static, MethodAnswer> + Send + Sync>;

/// Wraps an async closure as a [`MethodHandler`].
pub fn handler<F, Fut>(handler: F) -> MethodHandler
where
    F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = MethodAnswer> + Send + 'static,
{
    Arc::new(move |request| Box::pin(handler(request)))
}

/// The answer to a request whose body is not JSON (the Node SDK answers 400 the same way).
pub(crate) fn invalid_request_answer(reason: &str) -> MethodAnswer {
    MethodAnswer::new(400, Value::String(format!("Invalid request format: {reason}")))
}

/// The answer to a method with no handler and no default handler.
pub(crate) fn no_handler_answer(name: &str) -> MethodAnswer {
    MethodAnswer::new(
        404,
        serde_json::json!({ "message": format!("no handler for method {name:?}") }),
    )
}

/// The answer when a handler panicked.
pub(crate) fn handler_panicked_answer(name: &str) -> MethodAnswer {
    MethodAnswer::new(
        500,
        serde_json::json!({ "message": format!("handler for method {name:?} panicked") }),
    )
}

/// The answer when too many handler calls are already running.
pub(crate) fn busy_answer() -> MethodAnswer {
    MethodAnswer::new(429, serde_json::json!({ "message": "too many method calls in progress" }))
}
