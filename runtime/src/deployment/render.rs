//! Writing a [`DeploymentConfig`] back as TOML that re-parses to an equal configuration.

use std::fmt::Write as _;

use picsou_core::FaultModel;

use super::DeploymentConfig;
use super::keys::{KeyMaterial, encode_hex};
use super::raw::{RawKeys, RawTail};

/// The configuration as a deployment file (see
/// [`DeploymentConfig::to_toml_string`]).
pub(super) fn render(cfg: &DeploymentConfig) -> String {
    let mut out = String::new();
    let source = cfg.source.replace(['\n', '\r'], " ");
    // `write!` to a `String` cannot fail.
    let _ = writeln!(out, "# Deployment derived from {source}.");
    let _ = writeln!(out, "strategy = {}", quote(cfg.strategy.name()));
    for rsm in &cfg.rsms {
        let fault = match rsm.fault {
            FaultModel::Cft => "cft",
            FaultModel::Bft => "bft",
        };
        let _ = writeln!(
            out,
            "\n[[rsm]]\nname = {}\nfault = {}\nf = {}\nreplicas = [",
            quote(&rsm.name),
            quote(fault),
            rsm.f
        );
        for r in &rsm.replicas {
            let address = quote(&r.address.to_string());
            let public_key = match &r.public_key {
                Some(key) => format!(", public_key = {}", quote(&encode_hex(key))),
                None => String::new(),
            };
            let _ = writeln!(out, "  {{ id = {}, address = {address}, stake = {}{public_key} }},", r.id, r.stake);
        }
        out.push_str("]\n");
    }
    let tail = RawTail {
        transport: &cfg.transport,
        tuning: &cfg.tuning,
        node: (&cfg.node).into(),
        keys: match &cfg.keys {
            KeyMaterial::Shared { secret, signing_seed } => RawKeys {
                identity_file: None,
                secret: Some(encode_hex(secret)),
                secret_file: None,
                signing_seed: signing_seed.as_ref().map(encode_hex),
            },
            // Identities given in memory stay there: a child process reads its identity file.
            KeyMaterial::PerReplica { identity_file, .. } => RawKeys {
                identity_file: identity_file.as_ref().map(|p| p.to_string_lossy().into_owned()),
                ..RawKeys::default()
            },
        },
        load: (&cfg.load).into(),
    };
    out.push('\n');
    // Every field is a number, string, boolean or table of those: serialization cannot fail.
    out.push_str(&toml::to_string(&tail).unwrap_or_else(|e| panic!("deployment tables serialize: {e}")));
    out
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
