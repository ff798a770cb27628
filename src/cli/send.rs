//! `telegate send [--wait S] FILE...`: enqueue request bodies over the socket.
//!
//! A file holding one JSON value is one body; any other file is NDJSON, one
//! body per non-blank line. Bodies go out over a few keep-alive connections
//! at once, and one result line per body is printed in input order, as JSON:
//! `{"source":"FILE:LINE","status":202,"answer":{...}}`. A progress bar shows
//! on a terminal when there are many bodies.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{CliError, Global, Outcome};
use crate::api::client::{Answer, Client, ClientError, Connection};

/// Bodies from which a progress bar is shown on a terminal.
const PROGRESS_FROM: usize = 20;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Wait up to S seconds (at most 60) for each job to be sent.
    #[arg(long, value_name = "S")]
    wait: Option<f64>,
    /// The endpoint to post to.
    #[arg(long, default_value = "/api/v1/telegram/interactive")]
    path: String,
    /// Connections used at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// JSON or NDJSON files of request bodies (`-`: standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// One request body and where it came from.
#[derive(Debug, Clone, PartialEq)]
struct Body {
    source: String,
    bytes: Bytes,
}

pub async fn send(global: &Global, args: SendArgs) -> Result<Outcome, CliError> {
    let mut bodies = Vec::new();
    for file in &args.files {
        bodies.extend(read_bodies(file)?);
    }
    let mut path = args.path.clone();
    if let Some(wait) = args.wait {
        path.push_str(&format!("?wait={wait}"));
    }
    let client = global.client();
    client.connect().await?; // fail early, with the socket's path

    let progress = progress_bar(bodies.len());
    let total = bodies.len();
    let mut results = spawn_senders(client, path, bodies, usize::from(args.concurrency));
    let mut pending = BTreeMap::new();
    let mut next = 0;
    let mut failed = false;
    while let Some((index, line, ok)) = results.recv().await {
        failed |= !ok;
        pending.insert(index, line);
        while let Some(line) = pending.remove(&next) {
            progress.suspend(|| println!("{line}"));
            progress.inc(1);
            next += 1;
        }
    }
    progress.finish_and_clear();
    if next < total {
        return Err(CliError::Input(format!(
            "{} of {total} bodies got no result",
            total - next
        )));
    }
    Ok(if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// Starts `concurrency` tasks, each with its own connection, taking bodies
/// in turn; each result is `(index, line, success)`.
fn spawn_senders(
    client: Client,
    path: String,
    bodies: Vec<Body>,
    concurrency: usize,
) -> mpsc::UnboundedReceiver<(usize, String, bool)> {
    let (results, received) = mpsc::unbounded_channel();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..concurrency.min(bodies.len()) {
        let (client, path, bodies, next, results) = (
            client.clone(),
            path.clone(),
            Arc::clone(&bodies),
            Arc::clone(&next),
            results.clone(),
        );
        tokio::spawn(async move {
            let mut connection = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { break };
                let outcome = post(&client, &mut connection, &path, body).await;
                let (line, ok) = result_line(&body.source, outcome);
                if results.send((index, line, ok)).is_err() {
                    break;
                }
            }
        });
    }
    received
}

/// Posts `body` on the task's connection, opening one when there is none
/// and dropping it after a failure.
async fn post(
    client: &Client,
    connection: &mut Option<Connection>,
    path: &str,
    body: &Body,
) -> Result<Answer, ClientError> {
    let conn = match connection {
        Some(conn) => conn,
        None => connection.insert(client.connect().await?),
    };
    let answer = conn.post(path, &[], body.bytes.clone()).await;
    if answer.is_err() {
        *connection = None;
    }
    answer
}

/// The printed result of one body, and whether it succeeded.
fn result_line(source: &str, outcome: Result<Answer, ClientError>) -> (String, bool) {
    match outcome {
        Ok(answer) => {
            let body = answer.json().unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&answer.body).into_owned())
            });
            let line =
                json!({ "source": source, "status": answer.status.as_u16(), "answer": body });
            (line.to_string(), answer.status.is_success())
        }
        Err(err) => (
            json!({ "source": source, "error": err.to_string() }).to_string(),
            false,
        ),
    }
}

fn read_bodies(file: &PathBuf) -> Result<Vec<Body>, CliError> {
    let name = file.display().to_string();
    let read_error = |source| CliError::Read {
        path: name.clone(),
        source,
    };
    let text = if name == "-" {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .map_err(read_error)?;
        text
    } else {
        std::fs::read(file).map_err(read_error)?
    };
    let bodies = split_bodies(&name, text);
    if bodies.is_empty() {
        return Err(CliError::Input(format!("{name} holds no request body")));
    }
    Ok(bodies)
}

/// One body if `text` is one JSON value, else one per non-blank line.
fn split_bodies(name: &str, text: Vec<u8>) -> Vec<Body> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&text).is_ok() {
        return vec![Body {
            source: name.to_owned(),
            bytes: Bytes::from(text),
        }];
    }
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(n, line)| Body {
            source: format!("{name}:{}", n + 1),
            bytes: Bytes::copy_from_slice(line.trim_ascii()),
        })
        .collect()
}

fn progress_bar(bodies: usize) -> ProgressBar {
    if bodies < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(bodies as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_value_is_one_body() {
        let bodies = split_bodies("a.json", b"{\n  \"x\": 1\n}\n".to_vec());
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0].source, "a.json");
    }

    #[test]
    fn ndjson_is_one_body_per_line() {
        let bodies = split_bodies("b.ndjson", b"{\"x\":1}\n\n{\"x\":2}\nnot json\n".to_vec());
        let sources: Vec<_> = bodies.iter().map(|b| b.source.as_str()).collect();
        assert_eq!(sources, ["b.ndjson:1", "b.ndjson:3", "b.ndjson:4"]);
        assert_eq!(&bodies[1].bytes[..], b"{\"x\":2}");
        assert!(split_bodies("c", b"\n  \n".to_vec()).is_empty());
    }
}
