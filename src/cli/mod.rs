//! The command line: one subcommand per job telegate can do.
//!
//! Commands return errors and exit codes; only `main` prints fatal errors and
//! exits.

pub mod sandbox;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod validate;

/// A Telegram bot worker that speaks MTProto.
#[derive(Debug, Parser)]
#[command(name = "telegate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate one request body and show the MTProto reply markup it becomes.
    Validate {
        /// Print only the lowercase hex of the serialized boxed `ReplyMarkup`.
        #[arg(long)]
        tl_hex: bool,
        /// The request body (`-` or nothing: standard input).
        file: Option<PathBuf>,
    },
    /// Run the local Telegram sandbox: an MTProto DC and its control API.
    Sandbox(sandbox::SandboxArgs),
}

/// How a command ended, for `main` to turn into an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    match cli.command {
        Command::Validate { tl_hex, file } => {
            validate::run(tl_hex, file.as_deref(), &mut std::io::stdout().lock())
        }
        Command::Sandbox(args) => {
            sandbox::run(args).await?;
            Ok(Outcome::Success)
        }
    }
}

/// Errors that end a command before it could do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxCliError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}
