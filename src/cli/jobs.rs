//! `telegate jobs` and `telegate job ID`: reading the queue over the socket.

use clap::Args;
use serde_json::Value;

use super::{CliError, Global, Outcome};
use crate::api::client::Answer;
use crate::queue::JobState;

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state (queued, sending, sent, failed).
    #[arg(long)]
    state: Option<JobState>,
    /// Only jobs with a larger id (for paging).
    #[arg(long)]
    after: Option<i64>,
    /// At most this many jobs (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job id, as in `job_id`.
    id: String,
}

/// Prints one line per job: id, state, attempts, destination, kind, update.
pub async fn list(global: &Global, args: JobsArgs) -> Result<Outcome, CliError> {
    let mut path = format!("/api/v1/jobs?limit={}", args.limit);
    if let Some(state) = args.state {
        path.push_str(&format!("&state={state}"));
    }
    if let Some(after) = args.after {
        path.push_str(&format!("&after={after}"));
    }
    let answer = ok(global.client().get(&path).await?)?;
    let body = answer.json()?;
    let jobs = body["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    println!("JOB\tSTATE\tATTEMPTS\tDESTINATION\tKIND\tUPDATED");
    for job in jobs {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            job["job_id"],
            text(&job["state"]),
            job["attempts"],
            text(&job["destination"]),
            text(&job["kind"]),
            text(&job["updated_at"]),
        );
    }
    Ok(Outcome::Success)
}

/// Prints the job as the API shows it, pretty.
pub async fn show(global: &Global, args: JobArgs) -> Result<Outcome, CliError> {
    let path = format!("/api/v1/jobs/{}", urlencode(&args.id));
    let answer = ok(global.client().get(&path).await?)?;
    let body = answer.json()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
    );
    Ok(Outcome::Success)
}

/// The answer if it is a success, else an error carrying its body.
pub(super) fn ok(answer: Answer) -> Result<Answer, CliError> {
    if answer.status.is_success() {
        return Ok(answer);
    }
    let detail = answer
        .json()
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    Err(CliError::Input(format!("{}: {detail}", answer.status)))
}

pub(super) fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
