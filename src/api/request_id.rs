//! A unique id for every request: in its answer's body and `X-Request-Id`
//! header, and in the span of everything logged while serving it.

use std::fmt;
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The answer header carrying the id.
pub const HEADER: &str = "x-request-id";

/// `req_` and 16 random hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    pub fn generate() -> Self {
        RequestId(format!("req_{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Middleware: gives the request its id and span, and stamps the answer.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = RequestId::generate();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    request.extensions_mut().insert(id.clone());
    let started = Instant::now();
    let mut response = match super::contract::screen(&request) {
        Some(refusal) => refusal.answer(&id),
        None => {
            let response = next.run(request).instrument(span.clone()).await;
            super::contract::conform(&id, response).await
        }
    };
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    // Successes are the bulk (tens of thousands a second): debug. Anything
    // else is worth a line at info.
    span.in_scope(|| {
        if response.status().is_success() {
            tracing::debug!(status, micros, "answered");
        } else {
            tracing::info!(status, micros, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
