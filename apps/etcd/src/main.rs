//! `picsou-etcd`: a Picsou sidecar for etcd members (`sidecar`), and a whole two-cluster demo
//! on this machine (`demo`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "picsou-etcd",
    version,
    about = "Mirror etcd clusters over Picsou: disaster recovery and reconciliation"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one sidecar next to one etcd member.
    Sidecar(picsou_etcd::sidecar::SidecarArgs),
    /// Two 3-member etcd clusters on loopback, six sidecars, a write load, and a report.
    Demo(picsou_etcd::demo::DemoArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Sidecar(a) => match picsou_etcd::sidecar::main(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("picsou-etcd sidecar: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Demo(a) => match picsou_etcd::demo::main(&a) {
            Ok(report) => {
                if let Some(path) = &a.out
                    && let Err(e) = picsou_etcd::demo::write_json(&report, path)
                {
                    eprintln!("picsou-etcd demo: {e}");
                }
                if a.json {
                    match serde_json::to_string_pretty(&report) {
                        Ok(j) => println!("{j}"),
                        Err(e) => eprintln!("picsou-etcd demo: {e}"),
                    }
                } else {
                    print!("{}", picsou_etcd::demo::human(&report));
                }
                if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                eprintln!("picsou-etcd demo: {e}");
                ExitCode::from(2)
            }
        },
    }
}
