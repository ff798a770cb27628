//! `telegate events [--follow] [--after N]`: the event stream on stdout.
//!
//! Prints the NDJSON lines of `GET /api/v1/events` as they are, so the
//! output can be piped into anything that reads JSON lines; a consumer
//! remembers the last `cursor` it handled and resumes with `--after`. With
//! `--follow` it long-polls for new events until interrupted, riding out a
//! daemon restart.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::jobs::ok;
use super::{CliError, Global, Outcome};

/// How long one long poll waits for an event.
const POLL_SECONDS: u32 = 30;
/// How long to wait before reconnecting to a daemon that went away.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this cursor.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Keep waiting for new events (until interrupted).
    #[arg(long)]
    follow: bool,
    /// Events fetched per request (1 to 1000).
    #[arg(long, default_value_t = 500)]
    limit: u32,
}

pub async fn run(global: &Global, args: EventsArgs) -> Result<Outcome, CliError> {
    let client = global.client();
    let mut cursor = args.after;
    let wait = if args.follow { POLL_SECONDS } else { 0 };
    loop {
        let path = format!(
            "/api/v1/events?after={cursor}&wait={wait}&limit={}",
            args.limit
        );
        let answer = match client.get(&path).await {
            Ok(answer) => ok(answer)?,
            Err(error) if args.follow => {
                tracing::warn!(%error, "cannot read events; retrying");
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let body = std::str::from_utf8(&answer.body)
            .map_err(|_| CliError::Input("the event stream is not UTF-8".into()))?;
        let mut out = std::io::stdout().lock();
        let mut last = None;
        for line in body.lines() {
            writeln!(out, "{line}").map_err(CliError::Output)?;
            last = Some(line);
        }
        out.flush().map_err(CliError::Output)?;
        match last.map(cursor_of).transpose()? {
            Some(next) => cursor = next,
            None if args.follow => {}
            None => return Ok(Outcome::Success),
        }
    }
}

/// The cursor of one stream line.
fn cursor_of(line: &str) -> Result<i64, CliError> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|value| value["cursor"].as_i64())
        .ok_or_else(|| CliError::Input(format!("a stream line without a cursor: {line}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_read_from_lines() {
        assert_eq!(cursor_of(r#"{"cursor":42,"event":{}}"#).unwrap(), 42);
        let err = cursor_of(r#"{"event":{}}"#).unwrap_err();
        assert!(err.to_string().contains("without a cursor"), "{err}");
    }
}
