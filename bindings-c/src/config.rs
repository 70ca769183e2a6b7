//! The deployment text and replica choice that both constructors (node and endpoint) take.

use std::ffi::c_char;

use picsou_core::ReplicaId;
use picsou_runtime::deployment::DeploymentConfig;

use crate::error::{Error, picsou_result};
use crate::ptr::str_in;

/// The source name deployment errors carry (the text has no file name).
const SOURCE: &str = "<config_toml>";

/// A replica: its RSM (0 for the first `[[rsm]]` of the deployment file, 1 for the second) and
/// its id in that RSM.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct picsou_replica {
    /// 0 or 1.
    pub rsm: u8,
    /// Replica id within the RSM (0 to n - 1).
    pub index: u16,
}

impl From<ReplicaId> for picsou_replica {
    fn from(r: ReplicaId) -> Self {
        Self { rsm: r.rsm.0, index: r.index }
    }
}

impl From<picsou_replica> for ReplicaId {
    fn from(r: picsou_replica) -> Self {
        Self::new(r.rsm, r.index)
    }
}

/// Parses the deployment text and picks replica `replica` of RSM `rsm` (its name or "0"/"1").
///
/// # Safety
/// `config_toml` and `rsm` must be NULL or NUL-terminated strings.
pub(crate) unsafe fn load(
    config_toml: *const c_char,
    rsm: *const c_char,
    replica: u16,
) -> Result<(DeploymentConfig, ReplicaId), Error> {
    // SAFETY: forwarded contract.
    let text = unsafe { str_in(config_toml, "config_toml") }?;
    // SAFETY: forwarded contract.
    let rsm = unsafe { str_in(rsm, "rsm") }?;
    let config = DeploymentConfig::from_toml_str(text, SOURCE)
        .map_err(|e| Error::new(picsou_result::PICSOU_ERR_CONFIG, e.to_string()))?;
    let rsm_id = config.rsm_id(rsm).map_err(|e| Error::new(picsou_result::PICSOU_ERR_UNKNOWN_RSM, e.to_string()))?;
    let local = config
        .replica(&rsm_id.0.to_string(), replica)
        .map_err(|e| Error::new(picsou_result::PICSOU_ERR_UNKNOWN_REPLICA, e.to_string()))?;
    Ok((config, local))
}

/// Gives `local` the identity in the file at `identity_file` (NULL: the deployment's own
/// `keys.identity_file`, if any).
///
/// # Safety
/// `identity_file` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn with_identity_file(
    config: DeploymentConfig,
    local: ReplicaId,
    identity_file: *const c_char,
) -> Result<DeploymentConfig, Error> {
    if identity_file.is_null() {
        return Ok(config);
    }
    // SAFETY: forwarded contract.
    let path = unsafe { str_in(identity_file, "identity_file") }?;
    config
        .with_identity_file(local, std::path::Path::new(path))
        .map_err(|e| Error::new(picsou_result::PICSOU_ERR_CONFIG, e.to_string()))
}
