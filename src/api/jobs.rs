//! Jobs over the socket: `GET /api/v1/jobs/{job_id}`,
//! `POST /api/v1/jobs/{job_id}/retry` and `GET /api/v1/jobs?state=&after=&limit=`.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::ApiState;
use super::answer::{self, Failure};
use super::enqueue;
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::error::ApiError;
use crate::queue::{Enqueued, Job, JobFilter, JobId, JobState, QueueError, Timestamp};

/// What a client sees of a job in a listing (without its payload, which
/// may be large).
pub fn view(job: &Job) -> Value {
    let mut view = json!({
        "job_id": job.id,
        // `request_id` is this answer's; this is the enqueue's.
        "enqueue_request_id": job.request_id,
        "kind": job.kind,
        "bot": job.bot,
        "destination": job.chat,
        "state": job.state,
        "attempts": job.attempts,
        "not_before": job.not_before,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "parts": job.parts,
    });
    if let Some(key) = &job.idempotency_key {
        view["idempotency_key"] = json!(key);
    }
    if job.state == JobState::Sent {
        view["result"] = sent(job);
    }
    if let Some(error) = &job.error {
        // While a retry waits, the error is the last attempt's.
        let field = if job.state == JobState::Failed {
            "error"
        } else {
            "last_error"
        };
        view[field] = json!(error);
    }
    view
}

/// The job with the normalized payload it will send.
pub fn view_with_payload(job: &Job) -> Value {
    let mut view = view(job);
    let (reference, metadata) = crate::send_options::correlation(&job.payload);
    if let Some(reference) = reference {
        view["reference"] = json!(reference);
    }
    if let Some(metadata) = metadata {
        view["metadata"] = metadata;
    }
    view["payload"] = serde_json::from_str::<Value>(&job.payload)
        .unwrap_or_else(|_| Value::String(job.payload.clone()));
    view
}

/// The seed's success fields for a sent job: its first message's ids, and
/// every message's when it had several.
pub fn sent(job: &Job) -> Value {
    let ids = |part: &crate::queue::Part| {
        json!({
            "message_id": part.message_id,
            "channel_message_id": part.channel_message_id.map(|id| id.to_string()),
        })
    };
    let mut result = job.parts.first().map(ids).unwrap_or_else(|| json!({}));
    if job.parts.len() > 1 {
        result["messages"] = job.parts.iter().map(ids).collect();
    }
    result
}

pub async fn get_job(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
) -> Response {
    let found = match job_id.parse::<JobId>() {
        Ok(id) => api.queue.job(id).await.map_err(Failure::from),
        Err(_) => Ok(None),
    };
    // Another bot's job does not exist for this key.
    let found = found.map(|job| job.filter(|job| caller.may_see(&job.bot)));
    match found {
        Ok(Some(job)) => answer::json(&request_id, StatusCode::OK, view_with_payload(&job)),
        Ok(None) => Failure::NotFound(format!("no job `{job_id}`")).answer(&request_id),
        Err(failure) => failure.answer(&request_id),
    }
}

/// `DELETE /api/v1/jobs/{job_id}`: cancels a queued job nothing of which
/// was sent; 409 naming its state otherwise.
pub async fn cancel_job(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Path(job_id): Path<String>,
) -> Response {
    let Ok(id) = job_id.parse::<JobId>() else {
        return Failure::NotFound(format!("no job `{job_id}`")).answer(&request_id);
    };
    match api.queue.cancel(id, crate::queue::Timestamp::now()).await {
        Ok(job) => answer::json(&request_id, StatusCode::OK, view(&job)),
        Err(QueueError::NoSuchJob(_)) => {
            Failure::NotFound(format!("no job `{job_id}`")).answer(&request_id)
        }
        Err(refused @ QueueError::NotCancellable { state, .. }) => {
            let mut body = json!({"error": refused.to_string(), "state": state});
            body["job_id"] = json!(id);
            answer::json(&request_id, StatusCode::CONFLICT, body)
        }
        Err(error) => Failure::from(error).answer(&request_id),
    }
}

/// `POST /api/v1/jobs/{job_id}/retry[?wait=S]`: a failed job back in line
/// with its `random_id`s (see `queue::retry`); answers like an enqueue.
pub async fn retry_job(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let retried = async {
        let wait = Query::parse(query.as_deref(), &["wait"])?.wait()?;
        let id = job_id
            .parse::<JobId>()
            .map_err(|_| Failure::NotFound(format!("no job `{job_id}`")))?;
        api.queue
            .retry_failed(id, Timestamp::now())
            .await
            .map_err(|err| match err {
                QueueError::NoSuchJob(_) => Failure::NotFound(format!("no job `{job_id}`")),
                QueueError::NotFailed { .. } => Failure::Conflict(err.to_string()),
                other => Failure::from(other),
            })?;
        tracing::info!(job = %id, "failed job put back in line");
        let enqueued = Enqueued {
            id,
            state: JobState::Queued,
            duplicate: false,
        };
        Ok::<_, Failure>(match wait {
            Some(wait) => enqueue::settle(&api, &request_id, enqueued, wait).await?,
            None => enqueue::queued(&request_id, enqueued),
        })
    };
    retried
        .await
        .unwrap_or_else(|failure| failure.answer(&request_id))
}

pub async fn list_jobs(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let listed = async {
        let query = Query::parse(query.as_deref(), &["state", "after", "limit"])?;
        let bot = caller.scope(&api.bots, &query)?;
        let filter = JobFilter {
            bot,
            ..filter(query)?
        };
        Ok::<_, Failure>(api.queue.jobs(filter).await?)
    };
    match listed.await {
        Ok(jobs) => {
            let views: Vec<Value> = jobs.iter().map(view).collect();
            answer::json(&request_id, StatusCode::OK, json!({ "jobs": views }))
        }
        Err(failure) => failure.answer(&request_id),
    }
}

fn filter(query: Query) -> Result<JobFilter, ApiError> {
    let state = query
        .get("state")
        .map(|s| {
            s.parse::<JobState>()
                .map_err(|e| ApiError::invalid(format!("query parameter `state`: {e}")))
        })
        .transpose()?;
    let after = Some(JobId::new(query.after()?));
    let limit = Some(query.limit(JobFilter::DEFAULT_LIMIT, JobFilter::MAX_LIMIT)?);
    Ok(JobFilter {
        bot: None,
        state,
        after,
        limit,
    })
}
