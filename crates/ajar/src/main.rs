//! `ajar`: the command line. Parses flags, runs one command, maps the outcome
//! to an exit code: 0 success, 1 an error from the server or at run time, 2 bad
//! usage (clap's own errors and [`error::UsageError`]).

mod commands;
mod error;
mod flags;
mod output;
mod settings;
mod spec;

use std::process::ExitCode;

use clap::Parser;

use crate::error::UsageError;

fn main() -> ExitCode {
    let cli = flags::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}
