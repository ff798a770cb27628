use std::process::ExitCode;

use clap::Parser;
use telegate::cli::{self, Cli, Outcome};
use telegate::memory;

#[tokio::main]
async fn main() -> ExitCode {
    // Before any SQLite connection; what it could not set only costs memory.
    let _ = memory::configure();
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    match cli::run(cli).await {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(err) => {
            eprintln!("telegate: {err}");
            ExitCode::from(2)
        }
    }
}
