//! The `picsou` command: simulate, run and benchmark Picsou deployments.
//!
//! `main` only parses the command line and dispatches; each subcommand lives in its own module
//! and returns the process exit code:
//! - 0: success;
//! - 1: the command ran but its result is a failure (e.g. the simulator found a C3B violation);
//! - 2: usage or configuration error (clap uses 2 for usage errors too).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod deploy_args;
mod keygen;
mod local;
mod netns;
mod node;
mod plots;
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
    /// Run one replica of a deployment (one process per replica, on any host).
    Node(Box<node::NodeArgs>),
    /// Run a whole two-RSM deployment on this machine and report receiver-confirmed throughput
    /// (with no arguments: the embedded default, 4+4 replicas over TCP on loopback).
    Local(Box<local::LocalArgs>),
    /// Benchmark strategies × message sizes × RSM sizes × transports over real deployments on
    /// loopback; writes JSON and PNG/SVG plots.
    Bench(Box<bench::BenchArgs>),
    /// Generate per-replica keys for a deployment file: one secret key file per replica and
    /// the deployment file with every public key.
    Keygen(keygen::KeygenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Sim(args) => sim::main(&args),
        Command::Node(args) => node::main(&args),
        Command::Local(args) => local::main(&args),
        Command::Bench(args) => bench::main(&args),
        Command::Keygen(args) => keygen::main(&args),
    }
}

/// Logs go to stderr through `tracing`, filtered by `RUST_LOG` (default: warnings and errors).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
