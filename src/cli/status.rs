//! `telegate status`: one screen for a person, from `GET /api/v1/status`.

use serde_json::Value;

use super::jobs::ok;
use super::{CliError, Global, Outcome};
use crate::api::client::Client;

/// Prints bots and their state, the queue, the send rate over the last
/// minute, the webhook and the latest failures.
pub async fn run(global: &Global) -> Result<Outcome, CliError> {
    let socket = global.state().socket();
    let body = ok(Client::new(&socket).get("/api/v1/status").await?)?.json()?;
    print!("{}", render(&socket.display().to_string(), &body));
    Ok(Outcome::Success)
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// The screen for `body` (the status answer) of the telegate at `socket`.
fn render(socket: &str, body: &Value) -> String {
    let mut out = format!("telegate at {socket}\n");
    let bots = body["bots"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if bots.is_empty() {
        out.push_str("bots:           none running\n");
    }
    for bot in bots {
        let mut line = format!("bot {:<11} {}", text(&bot["name"]), text(&bot["state"]));
        for (key, label) in [
            ("username", "@"),
            ("last_error", "last error: "),
            ("error", ""),
            ("reason", ""),
        ] {
            if let Some(value) = bot[key].as_str() {
                line.push_str(&format!("  {label}{value}"));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    let waiting = body["queue"]["waiting"].as_i64().unwrap_or(0);
    match body["queue"]["oldest_age_seconds"].as_f64() {
        Some(age) => out.push_str(&format!(
            "queue:          {waiting} waiting, oldest {age:.0} s\n"
        )),
        None => out.push_str("queue:          empty\n"),
    }
    let sent = body["sent_last_minute"].as_i64().unwrap_or(0);
    out.push_str(&format!(
        "send rate:      {sent} sent in the last minute ({:.2}/s)\n",
        sent as f64 / 60.0
    ));
    match body["webhook"].as_object() {
        Some(webhook) => out.push_str(&format!(
            "webhook:        backlog {}, {} delivered, {} failed attempts, {} dead\n",
            webhook["backlog"], webhook["delivered"], webhook["failed_attempts"], webhook["dead"]
        )),
        None => out.push_str("webhook:        not configured\n"),
    }
    let errors = body["recent_errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if errors.is_empty() {
        out.push_str("recent errors:  none\n");
    } else {
        out.push_str("recent errors:\n");
        for error in errors {
            out.push_str(&format!(
                "  job {} chat {} at {}: {}\n",
                error["job_id"],
                text(&error["chat"]),
                text(&error["at"]),
                text(&error["error"]),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_screen_says_everything() {
        let body = serde_json::json!({
            "bots": [{"name": "default", "state": "signing_in", "attempt": 3, "last_error": "connection refused"}],
            "queue": {"waiting": 4, "oldest_age_seconds": 61.2},
            "sent_last_minute": 30,
            "webhook": null,
            "recent_errors": [{"job_id": 9, "chat": "1000001", "error": "Telegram refused the message: 400 USER_IS_BLOCKED", "at": "2026-12-01T20:00:00Z"}],
        });
        let screen = render("/run/telegate/telegate.sock", &body);
        for expected in [
            "bot default     signing_in  last error: connection refused",
            "queue:          4 waiting, oldest 61 s",
            "30 sent in the last minute (0.50/s)",
            "webhook:        not configured",
            "job 9 chat 1000001 at 2026-12-01T20:00:00Z: Telegram refused the message: 400 USER_IS_BLOCKED",
        ] {
            assert!(screen.contains(expected), "{expected:?} not in\n{screen}");
        }
    }
}
