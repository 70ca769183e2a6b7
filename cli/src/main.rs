//! The `picsou` command: simulate, run and benchmark Picsou deployments.
//!
//! `main` only parses the command line and dispatches; each subcommand lives in its own module
//! and returns the process exit code:
//! - 0: success;
//! - 1: the command ran but its result is a failure (e.g. the simulator found a C3B violation);
//! - 2: usage or configuration error (clap uses 2 for usage errors too).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod sim;

/// Cross-Cluster Consistent Broadcast between two replicated state machines.
#[derive(Debug, Parser)]
#[command(name = "picsou", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a deterministic simulation of two RSMs and check C3B.
    Sim(Box<sim::SimArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::main(&args),
    }
}
