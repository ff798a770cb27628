//! Taking a job: `POST /api/v1/telegram/interactive`, and the steps every
//! enqueueing endpoint shares (body limit, `Idempotency-Key`, `?wait=`).
//!
//! An endpoint only says how to validate its body ([`Validated`]); the rest
//! (store, answer 202, or wait and answer like the seed) is the same for
//! interactive and for text/media messages.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::ApiState;
use super::answer::{self, Failure};
use super::jobs;
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::{BotEntry, Caller};
use crate::chat::ChatId;
use crate::config::Respond;
use crate::error::ApiError;
use crate::interactive::InteractiveRequest;
use crate::outgoing::{self, Outgoing};
use crate::queue::{Enqueued, JobKind, JobState, NewJob};

/// The longest `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The request header naming an idempotent enqueue.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Answer header set when an `Idempotency-Key` named an earlier job.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A request body an endpoint validated, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub chat: ChatId,
    pub kind: JobKind,
    /// The normalized payload JSON.
    pub payload: String,
    /// Telegram messages the job becomes (at least 1).
    pub parts: u16,
    /// Those messages' requests, in `outgoing`'s stored form (`None`: built
    /// when the job goes out, as an edit or delete is).
    pub wire: Option<Vec<u8>>,
    /// `send_at`: not before then.
    pub not_before: Option<crate::queue::Timestamp>,
    /// The telegate message it needs sent first (its edit, delete, reply):
    /// held as long as a `send_at` holds that one.
    pub follows: Option<i64>,
}

/// `POST /api/v1/telegram/interactive`.
pub async fn post_interactive(
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
        interactive: true,
    };
    request
        .accept(query, &headers, body, validate_interactive)
        .await
}

/// One enqueueing request, before its body is read.
pub struct Enqueue<'a> {
    pub api: &'a ApiState,
    pub request_id: &'a RequestId,
    pub caller: &'a Caller,
    /// `POST /api/v1/telegram/interactive`, which a bot with
    /// `interactive = false` may not use.
    pub interactive: bool,
}

fn validate_interactive(body: &[u8]) -> Result<Validated, ApiError> {
    let request = InteractiveRequest::from_json(body)?;
    let requests = outgoing::interactive(&request);
    Ok(Validated::new(
        request.destination(),
        JobKind::Interactive,
        &request,
        &requests,
    )?
    .scheduled_by(request.options()))
}

impl Validated {
    /// A job of `kind` for `chat` whose normalized payload is `request`,
    /// sending `requests` (one Telegram message each).
    pub fn new(
        chat: ChatId,
        kind: JobKind,
        request: &impl serde::Serialize,
        requests: &[Outgoing],
    ) -> Result<Self, ApiError> {
        let payload = serde_json::to_string(request)
            .map_err(|e| ApiError::rejected(format!("cannot store the request: {e}")))?;
        let parts = u16::try_from(requests.len())
            .ok()
            .filter(|&parts| parts > 0)
            .ok_or_else(|| {
                ApiError::rejected(format!(
                    "the request makes {} messages; a job sends 1 to {}",
                    requests.len(),
                    u16::MAX
                ))
            })?;
        Ok(Validated {
            chat,
            kind,
            payload,
            parts,
            wire: Some(outgoing::encode(requests)),
            not_before: None,
            follows: None,
        })
    }

    /// A one-part job of `kind` for `chat` whose request is built when it
    /// goes out: it names telegate's message `target`, whose Telegram id is
    /// not known yet.
    pub fn built_at_send(
        chat: ChatId,
        kind: JobKind,
        target: i64,
        request: &impl serde::Serialize,
    ) -> Result<Self, ApiError> {
        let payload = serde_json::to_string(request)
            .map_err(|e| ApiError::rejected(format!("cannot store the request: {e}")))?;
        Ok(Validated {
            chat,
            kind,
            payload,
            parts: 1,
            wire: None,
            not_before: None,
            follows: Some(target),
        })
    }

    /// Scheduled as `options` say: held until their `send_at`, and after
    /// the telegate message they reply to.
    pub fn scheduled_by(mut self, options: &crate::send_options::SendOptions) -> Self {
        self.not_before = options.send_at();
        if let Some(crate::send_options::ReplyTarget::Telegate(id)) = options.reply_target() {
            self.follows = Some(id);
        }
        self
    }
}

impl Validated {
    /// The job to store for `bot`, made by the request `request_id`.
    pub fn into_job(
        self,
        request_id: &RequestId,
        bot: String,
        idempotency_key: Option<String>,
    ) -> NewJob {
        NewJob {
            request_id: request_id.to_string(),
            bot,
            chat: self.chat,
            kind: self.kind,
            payload: self.payload,
            parts: self.parts,
            idempotency_key,
            wire: self.wire,
            not_before: self.not_before,
            follows: self.follows,
        }
    }
}

impl Enqueue<'_> {
    /// Everything an enqueueing endpoint does once it knows how to
    /// `validate`.
    pub async fn accept(
        &self,
        query: Option<String>,
        headers: &HeaderMap,
        body: Body,
        validate: impl FnOnce(&[u8]) -> Result<Validated, ApiError>,
    ) -> Response {
        match self.enqueue(query, headers, body, validate).await {
            Ok(response) => response,
            Err(failure) => failure.answer(self.request_id),
        }
    }

    /// The bot the job goes to: the caller's, enabled, and allowed
    /// interactive messages if this is one.
    fn bot(&self, query: &Query) -> Result<Arc<BotEntry>, Failure> {
        let entry = self.caller.bot(&self.api.bots, query)?;
        if !entry.is_enabled() {
            return Err(Failure::Forbidden(format!(
                "bot `{}` is disabled",
                entry.name()
            )));
        }
        if self.interactive && !entry.is_interactive() {
            return Err(Failure::Forbidden(format!(
                "interactive messages are not enabled for bot `{}` (`interactive = false`)",
                entry.name()
            )));
        }
        Ok(entry)
    }

    /// The name of the bot a request with `query` enqueues for.
    pub fn bot_of(&self, query: Option<&str>) -> Result<String, Failure> {
        let query = Query::parse(query, &["wait"])?;
        Ok(self.bot(&query)?.name().to_string())
    }

    async fn enqueue(
        &self,
        query: Option<String>,
        headers: &HeaderMap,
        body: Body,
        validate: impl FnOnce(&[u8]) -> Result<Validated, ApiError>,
    ) -> Result<Response, Failure> {
        let (api, request_id) = (self.api, self.request_id);
        let query = Query::parse(query.as_deref(), &["wait"])?;
        let entry = self.bot(&query)?;
        let respond = entry.respond().unwrap_or(api.respond);
        let how = match query.wait()? {
            Some(wait) => Answer::Wait(wait),
            None => Answer::Mode(respond),
        };
        let bot = entry.name().to_string();
        enqueue(api, request_id, bot, how, headers, body, validate).await
    }
}

/// How an enqueue is answered: `?wait=`, or the bot's response mode.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Wait(Duration),
    Mode(Respond),
}

async fn enqueue(
    api: &ApiState,
    request_id: &RequestId,
    bot: String,
    how: Answer,
    headers: &HeaderMap,
    body: Body,
    validate: impl FnOnce(&[u8]) -> Result<Validated, ApiError>,
) -> Result<Response, Failure> {
    let idempotency_key = idempotency_key(headers)?;
    let body = read_body(body, headers, api.max_body_bytes).await?;
    let validated = validate(&body)?;
    let job = validated.into_job(request_id, bot, idempotency_key);
    let bot = job.bot.clone();
    let enqueued = api.queue.enqueue(job).await?;
    if !enqueued.duplicate {
        crate::metrics::metrics()
            .jobs_enqueued
            .get_or_create(&crate::metrics::bot_label(&bot))
            .inc();
    }
    let mut response = match how {
        Answer::Wait(wait) => settle(api, request_id, enqueued, wait).await?,
        Answer::Mode(Respond::Sent) => {
            settle_as(api, request_id, enqueued, api.respond_timeout, Shape::Seed).await?
        }
        Answer::Mode(Respond::Queued) => queued(request_id, enqueued),
    };
    if enqueued.duplicate {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::rejected(format!(
            "header `Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "header `Idempotency-Key` must be visible ASCII characters",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The whole body, or 413 past `limit` bytes.
pub(super) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Failure::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Failure::TooLarge(limit))
        }
        Err(err) if super::connections::is_stall(err.as_ref()) => Err(Failure::Protocol {
            status: StatusCode::REQUEST_TIMEOUT,
            message: err.to_string(),
        }),
        Err(err) => Err(ApiError::invalid(format!("cannot read the request body: {err}")).into()),
    }
}

/// 202: the job is stored (or, for a repeat, was stored before).
pub(super) fn queued(request_id: &RequestId, enqueued: Enqueued) -> Response {
    answer::json(
        request_id,
        StatusCode::ACCEPTED,
        json!({ "job_id": enqueued.id, "status": enqueued.state }),
    )
}

/// How a settled job's 201 or 400 reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `?wait=`: the seed's fields plus `job_id` (and `telegram_error`).
    WithJob,
    /// `[api] respond = "sent"`: exactly the Octopods seed's fields, so its
    /// clients see what they were written for.
    Seed,
}

/// Waits for the job's outcome: 201 once sent, 400 with its error once
/// failed, else (time up, or the server stopping) 202 as it stands.
/// (`?wait=`'s answer: with `job_id`).
pub(super) async fn settle(
    api: &ApiState,
    request_id: &RequestId,
    enqueued: Enqueued,
    wait: Duration,
) -> Result<Response, Failure> {
    settle_as(api, request_id, enqueued, wait, Shape::WithJob).await
}

/// [`settle`], answering in `shape`.
///
/// The job is already durable when this starts: a client that gives up
/// waiting loses nothing, and a 201 is never work the store could lose.
async fn settle_as(
    api: &ApiState,
    request_id: &RequestId,
    enqueued: Enqueued,
    wait: Duration,
    shape: Shape,
) -> Result<Response, Failure> {
    let mut stopping = api.stopping.clone();
    let stopped = async move {
        // Dropping the sender (server gone) counts as stopping too.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let settled = tokio::select! {
        settled = api.queue.settled(enqueued.id, wait) => settled?,
        () = stopped => api.queue.job(enqueued.id).await?,
    };
    let Some(job) = settled else {
        return Err(Failure::Unavailable(format!(
            "job {} vanished",
            enqueued.id
        )));
    };
    Ok(match (job.state, &job.error) {
        (JobState::Sent, _) => {
            let mut body = jobs::sent(&job);
            if shape == Shape::WithJob {
                body["job_id"] = json!(job.id);
            }
            answer::json(request_id, StatusCode::CREATED, body)
        }
        (JobState::Failed, Some(error)) => {
            let body = match shape {
                Shape::WithJob => {
                    let mut body = json!(error);
                    body["job_id"] = json!(job.id);
                    body
                }
                Shape::Seed => error.to_api_error().to_json(),
            };
            answer::json(request_id, StatusCode::BAD_REQUEST, body)
        }
        (state, _) => queued(
            request_id,
            Enqueued {
                id: job.id,
                state,
                duplicate: enqueued.duplicate,
            },
        ),
    })
}
