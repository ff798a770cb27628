//! `telegate bots` and `telegate reload`: the daemon's bots over the socket.

use axum::http::Method;
use bytes::Bytes;

use super::jobs::{ok, text};
use super::{CliError, Global, Outcome};

/// Prints one line per bot: name, state, queue depth, last error.
pub async fn list(global: &Global) -> Result<Outcome, CliError> {
    let answer = ok(global.client().get("/api/v1/bots").await?)?;
    let body = answer.json()?;
    let bots = body["bots"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    println!("BOT\tSTATE\tQUEUED\tLAST ERROR");
    for bot in bots {
        let last_error = bot["last_error"].as_str().unwrap_or("-");
        println!(
            "{}\t{}\t{}\t{last_error}",
            text(&bot["name"]),
            text(&bot["state"]),
            bot["queue_depth"],
        );
    }
    Ok(Outcome::Success)
}

/// Asks the daemon to re-read its config; prints what changed.
pub async fn reload(global: &Global) -> Result<Outcome, CliError> {
    let mut connection = global.client().connect().await?;
    let answer = connection
        .send(Method::POST, "/api/v1/reload", &[], Bytes::new())
        .await?;
    let body = ok(answer)?.json()?;
    for change in ["started", "stopped", "restarted", "unchanged"] {
        let names: Vec<String> = body[change]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(text)
            .collect();
        println!("{change}: {}", names.join(" "));
    }
    Ok(Outcome::Success)
}
