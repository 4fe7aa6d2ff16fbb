//! `reelq`: analyse a video locally, or submit videos to reelq, wait for their analyses and
//! inspect jobs.

mod analyze;
mod args;
mod client;
mod commands;
#[cfg(test)]
mod fake_api;
mod model;
mod progress;
mod render;
mod songs;
mod submit_many;
mod upload;
mod wait;

use std::process::ExitCode;

use clap::Parser;

// One thread is plenty: the CLI does one request at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
