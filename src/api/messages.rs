//! `POST /api/v1/telegram/messages`: text and media, through the same
//! enqueue path as interactive messages (body limit, `Idempotency-Key`,
//! `?wait=`). A job of several parts answers `?wait=` with its first
//! message's ids as the seed's `message_id`/`channel_message_id`, plus every
//! part's in `messages`, in sending order.

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::ApiState;
use super::enqueue::{Enqueue, Validated};
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::error::ApiError;
use crate::messages::MessagesRequest;
use crate::outgoing;
use crate::queue::JobKind;

/// `POST /api/v1/telegram/messages`.
pub async fn post_messages(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Enqueue {
        api: &api,
        request_id: &request_id,
        caller: &caller,
        interactive: false,
    };
    request.accept(query, &headers, body, validate).await
}

fn validate(body: &[u8]) -> Result<Validated, ApiError> {
    let request = MessagesRequest::from_json(body)?;
    let requests = outgoing::messages(&request);
    Ok(Validated::new(
        request.destination(),
        JobKind::Messages,
        &request,
        &requests,
    )?
    .scheduled_by(request.options()))
}
