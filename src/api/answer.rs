//! Turning outcomes into HTTP answers: always JSON, always with the
//! `request_id`, errors in the seed's shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::request_id::RequestId;
use crate::error::ApiError;
use crate::queue::QueueError;

/// A JSON answer: `body`'s fields plus `request_id`.
pub fn json(request_id: &RequestId, status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        with_request_id(request_id, body),
    )
        .into_response()
}

/// `body`'s fields plus `request_id`, serialized.
fn with_request_id(request_id: &RequestId, body: Value) -> Vec<u8> {
    let mut fields = match body {
        Value::Object(fields) => fields,
        other => {
            let mut fields = Map::new();
            fields.insert("result".into(), other);
            fields
        }
    };
    fields.insert("request_id".into(), Value::String(request_id.to_string()));
    serde_json::to_vec(&Value::Object(fields)).unwrap_or_default()
}

/// Every way a request can fail.
#[derive(Debug)]
pub enum Failure {
    /// 400 with the seed's code.
    BadRequest(ApiError),
    /// 401: no API key, or an unknown one.
    Unauthorized(String),
    /// 403: the key's bot may not do this (disabled, not interactive).
    Forbidden(String),
    /// 404: an unknown path or job.
    NotFound(String),
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 409: the request came too late for what it asks.
    Conflict(String),
    /// 413: the body is over the limit (in bytes).
    TooLarge(usize),
    /// 415: a body coding telegate does not decode.
    UnsupportedEncoding(String),
    /// 503: the store cannot take work.
    Unavailable(String),
    /// Refused by the HTTP layer (hyper or axum) before a handler judged it.
    Protocol { status: StatusCode, message: String },
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Failure::Forbidden(_) => StatusCode::FORBIDDEN,
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Failure::Conflict(_) => StatusCode::CONFLICT,
            Failure::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Failure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Protocol { status, .. } => *status,
        }
    }

    fn body(&self) -> Value {
        match self {
            Failure::BadRequest(err) => err.to_json(),
            Failure::NotFound(what)
            | Failure::Conflict(what)
            | Failure::Unauthorized(what)
            | Failure::Forbidden(what)
            | Failure::UnsupportedEncoding(what)
            | Failure::Protocol { message: what, .. } => json!({ "error": what }),
            Failure::MethodNotAllowed => json!({ "error": "method not allowed for this path" }),
            Failure::TooLarge(limit) => {
                json!({ "error": format!("request body is larger than {limit} bytes") })
            }
            Failure::Unavailable(why) => {
                json!({ "error": format!("the job store cannot accept work: {why}") })
            }
        }
    }

    /// The answer for the request `request_id`.
    pub fn answer(&self, request_id: &RequestId) -> Response {
        if let Failure::Unavailable(why) = self {
            tracing::error!(error = %why, "store unavailable");
        }
        json(request_id, self.status(), self.body())
    }

    /// The answer's body alone, for answers written below the router.
    pub fn to_bytes(&self, request_id: &RequestId) -> Vec<u8> {
        with_request_id(request_id, self.body())
    }
}

impl From<ApiError> for Failure {
    fn from(err: ApiError) -> Self {
        Failure::BadRequest(err)
    }
}

impl From<QueueError> for Failure {
    fn from(err: QueueError) -> Self {
        Failure::Unavailable(err.to_string())
    }
}
