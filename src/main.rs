use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use telegate::cli::{self, Cli, Outcome};
use telegate::memory;

/// How long the exit waits for blocking calls still running (a store out
/// of reach answers none): what was acknowledged is already stored.
const BLOCKING_AT_EXIT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    // Before any SQLite connection; what it could not set only costs memory.
    let _ = memory::configure();
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("telegate: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(cli::run(cli));
    runtime.shutdown_timeout(BLOCKING_AT_EXIT);
    match outcome {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(err) => {
            eprintln!("telegate: {err}");
            ExitCode::from(2)
        }
    }
}
