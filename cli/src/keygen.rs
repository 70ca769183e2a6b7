//! `picsou keygen`: per-replica keys for a deployment.
//!
//! Reads a deployment file (its keys, if any, are ignored), writes one secret identity file
//! per replica (`<rsm>-<id>.key`, mode 0600) and `deployment.toml` (the deployment with every
//! public key and `keys.identity_file`) into the output directory, and prints what to copy
//! where.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use picsou_runtime::deployment::DeploymentConfig;
use picsou_runtime::deployment::keygen::{IDENTITY_FILE_TEMPLATE, generate, identity_file_in};

/// Arguments of `picsou keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The deployment file (its [keys] table and public keys, if any, are ignored).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Directory for the key files and the new deployment file (created, private, if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace key files that already exist (old keys are lost).
    #[arg(long)]
    force: bool,
}

/// Name of the deployment file written next to the keys.
const DEPLOYMENT_FILE: &str = "deployment.toml";

pub(crate) fn main(args: &KeygenArgs) -> ExitCode {
    let template = match DeploymentConfig::template_from_path(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picsou keygen: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match generate(&template, &args.out, args.force) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("picsou keygen: {e}{}", if args.force { "" } else { " (--force replaces existing keys)" });
            return ExitCode::from(2);
        }
    };
    let path = args.out.join(DEPLOYMENT_FILE);
    let text = format!(
        "# Written by `picsou keygen --config {}`: per-replica public keys. Copy this file to every\n\
         # host; copy each replica's key file ({IDENTITY_FILE_TEMPLATE}) to its own host only, at\n\
         # keys.identity_file below (or pass picsou node --key-file).\n{}",
        args.config.display(),
        config.to_toml_string()
    );
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("picsou keygen: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    // Check what was written: it must parse and every replica must load its own identity.
    let check = DeploymentConfig::from_path(&path)
        .and_then(|c| c.replicas().into_iter().try_for_each(|r| c.replica_keys(r).map(drop)));
    if let Err(e) = check {
        eprintln!("picsou keygen: the written deployment does not load: {e}");
        return ExitCode::from(1);
    }
    println!("wrote {} identity files and {}", config.replicas().len(), path.display());
    for r in config.replicas() {
        let name = config.replica_name(r);
        let key = identity_file_in(&args.out, &config.rsm(r.rsm).name, r.index);
        println!("  {name:<16} {}  ->  host of {}", key.display(), config.address(r));
    }
    println!(
        "Copy {DEPLOYMENT_FILE} to every host and each key file to its replica's host only; then on each host:\n  \
         picsou node --config {DEPLOYMENT_FILE} --rsm <rsm> --replica <id> [--key-file <its key file>]"
    );
    ExitCode::SUCCESS
}
