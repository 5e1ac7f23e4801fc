//! The `hubsim` binary: parses the command line, installs the tracing subscriber, runs one command
//! on a tokio runtime and turns the outcome into an exit code (0 ok, 1 failure, 2 usage).
//!
//! Only this crate reads argv, the environment and signals; the commands live in [`commands`], the
//! settings they resolve in [`config`], and every byte written to stdout goes through [`output`].

mod args;
mod bench;
mod commands;
mod config;
mod output;
mod report;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::Cli;
use crate::config::UsageError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own story; the hub's and fleet's lifecycle logs would drown it.
    let quiet = matches!(cli.command, args::Command::Demo(_));
    init_tracing(cli.verbose, quiet);
    let out = output::Output::new(cli.output);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            output::print_error(
                &anyhow::Error::new(err).context("could not start the async runtime"),
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(&err);
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `RUST_LOG` wins; otherwise `-v` means debug for hubsim's crates and `-vv` trace. `quiet` commands
/// log only warnings unless `-v` is given.
fn init_tracing(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn",
        0 => "info",
        1 => "info,hub=debug,service=debug,device=debug,fleet=debug,cli=debug",
        _ => "debug,hub=trace,service=trace,device=trace,fleet=trace,cli=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
