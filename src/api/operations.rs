//! `POST /api/v1/telegram/messages/{message_id}/edit` and `DELETE
//! /api/v1/telegram/messages/{message_id}`: changes to a message telegate
//! sent, enqueued in that message's chat like any send (same body limit,
//! `Idempotency-Key` and `?wait=`).

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::ApiState;
use super::answer::Failure;
use super::enqueue::{Enqueue, Validated};
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::chat::ChatId;
use crate::error::ApiError;
use crate::operations::{DeleteRequest, EditRequest};
use crate::queue::{JobKind, MessageOwner};

/// `POST /api/v1/telegram/messages/{message_id}/edit`.
pub async fn post_edit(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(message_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let on = Target {
        api: &api,
        request_id: &request_id,
        caller: &caller,
    };
    on.enqueue(&message_id, query, &headers, body, |id, chat, bytes| {
        let edit = EditRequest::from_json(id, bytes)?;
        Validated::built_at_send(chat, JobKind::Edit, id, &edit)
    })
    .await
}

/// `DELETE /api/v1/telegram/messages/{message_id}` (no body).
pub async fn delete_message(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(message_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let on = Target {
        api: &api,
        request_id: &request_id,
        caller: &caller,
    };
    on.enqueue(&message_id, query, &headers, body, |id, chat, bytes| {
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "DELETE of a message takes no body: the path names the message",
            ));
        }
        Validated::built_at_send(chat, JobKind::Delete, id, &DeleteRequest { message_id: id })
    })
    .await
}

/// An operation on a message telegate sent, queued in that message's chat.
struct Target<'a> {
    api: &'a ApiState,
    request_id: &'a RequestId,
    caller: &'a Caller,
}

impl Target<'_> {
    /// Finds the message named in the path (one of the caller's bot's),
    /// then enqueues what `build` makes of it and the body.
    async fn enqueue(
        &self,
        message_id: &str,
        query: Option<String>,
        headers: &HeaderMap,
        body: Body,
        build: impl FnOnce(i64, ChatId, &[u8]) -> Result<Validated, ApiError>,
    ) -> Response {
        let request = Enqueue {
            api: self.api,
            request_id: self.request_id,
            caller: self.caller,
            interactive: false,
        };
        let found = match request.bot_of(query.as_deref()) {
            Ok(bot) => target(self.api, &bot, message_id).await,
            Err(failure) => Err(failure),
        };
        let (id, chat) = match found {
            Ok(found) => found,
            Err(failure) => return failure.answer(self.request_id),
        };
        request
            .accept(query, headers, body, move |bytes| build(id, chat, bytes))
            .await
    }
}

/// telegate's message `message_id` and its chat; 404 unless it is a message
/// a send job of `bot` made (another bot's message is as unknown as none:
/// its key must not learn that it exists).
async fn target(api: &ApiState, bot: &str, message_id: &str) -> Result<(i64, ChatId), Failure> {
    let unknown = || Failure::NotFound(format!("no message `{message_id}` sent by telegate"));
    let id: i64 = message_id.parse().map_err(|_| unknown())?;
    match api.queue.message(id).await? {
        Some(MessageOwner {
            bot: owner,
            chat,
            kind: JobKind::Interactive | JobKind::Messages,
            ..
        }) if owner == bot => Ok((id, chat)),
        _ => Err(unknown()),
    }
}
