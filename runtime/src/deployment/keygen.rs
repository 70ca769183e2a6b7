//! Generating per-replica keys for a deployment (`picsou keygen`).
//!
//! From a deployment file (its keys, if any, are ignored), [`generate`] draws a fresh random
//! identity for every replica, writes each to its own file (`<rsm>-<id>.key`, mode 0600) in an
//! output directory, and returns the deployment with every replica's public key and
//! `keys.identity_file = "<dir>/{rsm}-{id}.key"`. The operator then copies that deployment
//! file to every host and each key file to its replica's host only.

use std::path::{Path, PathBuf};

use picsou_core::ReplicaId;
use picsou_core::identity::Identity;

use super::DeploymentConfig;
use super::keys::{KeyMaterial, write_identity_file};

/// The name of the identity file of each replica in a [`generate`] output directory.
pub const IDENTITY_FILE_TEMPLATE: &str = "{rsm}-{id}.key";

/// Why keys could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeygenError {
    /// The operating system's random number generator failed.
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    /// The output directory or a key file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The identity file [`generate`] writes for replica `index` of RSM `rsm_name` in `dir`.
pub fn identity_file_in(dir: &Path, rsm_name: &str, index: u16) -> PathBuf {
    super::keys::identity_path(&dir.join(IDENTITY_FILE_TEMPLATE), rsm_name, index)
}

/// One fresh identity from the operating system's random number generator.
pub fn random_identity() -> Result<Identity, KeygenError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeygenError::Random(e.to_string()))?;
    Ok(Identity::from_seed(&seed))
}

/// Draws an identity for every replica of `template`, writes each to
/// `out_dir/<rsm>-<id>.key` (mode 0600; an existing file is an error unless `overwrite`) and
/// returns `template` with the public keys and `keys.identity_file` set (absolute, so the
/// result renders to a file that works from any directory).
pub fn generate(template: &DeploymentConfig, out_dir: &Path, overwrite: bool) -> Result<DeploymentConfig, KeygenError> {
    create_private_dir(out_dir)?;
    let dir = std::path::absolute(out_dir).map_err(|source| KeygenError::Write { path: out_dir.into(), source })?;
    let mut out = template.clone();
    for r in template.replicas() {
        let identity = random_identity()?;
        let path = identity_file_in(&dir, &template.rsm(r.rsm).name, r.index);
        write_identity_file(&path, &identity, overwrite).map_err(|source| KeygenError::Write { path, source })?;
        set_public_key(&mut out, r, identity.public());
    }
    out.keys = KeyMaterial::PerReplica {
        identity_file: Some(dir.join(IDENTITY_FILE_TEMPLATE)),
        identities: Default::default(),
    };
    Ok(out)
}

/// The same as [`generate`], without files: every identity kept in memory (tests, one-process
/// demos). Returns the deployment, which holds every identity.
pub fn generate_in_memory(template: &DeploymentConfig) -> Result<DeploymentConfig, KeygenError> {
    let mut out = template.clone();
    let mut identities = std::collections::BTreeMap::new();
    for r in template.replicas() {
        let identity = random_identity()?;
        set_public_key(&mut out, r, identity.public());
        identities.insert(r, identity);
    }
    out.keys = KeyMaterial::PerReplica { identity_file: None, identities };
    Ok(out)
}

fn set_public_key(config: &mut DeploymentConfig, r: ReplicaId, public: [u8; 32]) {
    config.rsms[usize::from(r.rsm.0 & 1)].replicas[usize::from(r.index)].public_key = Some(public);
}

/// Creates `dir` (and its parents) if missing; a new directory is private to its owner.
fn create_private_dir(dir: &Path) -> Result<(), KeygenError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| KeygenError::Write { path: dir.into(), source })
}
