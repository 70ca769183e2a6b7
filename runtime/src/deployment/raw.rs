//! Serde structs that mirror the deployment file exactly, before any semantic check. Reading
//! goes file → [`RawFile`] → (checks in `parse`) → [`DeploymentConfig`]; writing goes back
//! through [`RawTail`] and the same per-table structs.
//!
//! [`DeploymentConfig`]: super::DeploymentConfig

use picsou_core::{FaultModel, ProtocolParams, Strategy};
use serde::{Deserialize, Serialize};

use super::load_spec::{LoadSpec, Senders};
use super::node_tuning::NodeTuning;
use crate::transport::TransportOptions;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a deployment table")]
pub(super) struct RawFile {
    #[serde(default = "default_strategy")]
    pub(super) strategy: Strategy,
    pub(super) rsm: Vec<RawRsm>,
    #[serde(default)]
    pub(super) transport: TransportOptions,
    #[serde(default)]
    pub(super) tuning: ProtocolParams,
    #[serde(default)]
    pub(super) node: RawNode,
    #[serde(default)]
    pub(super) keys: RawKeys,
    #[serde(default)]
    pub(super) load: RawLoad,
}

fn default_strategy() -> Strategy {
    Strategy::Picsou
}

/// One `[[rsm]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[rsm]] table with name, fault, f and replicas")]
pub(super) struct RawRsm {
    pub(super) name: String,
    pub(super) fault: FaultModel,
    pub(super) f: u64,
    pub(super) replicas: Vec<RawReplica>,
}

/// One element of `replicas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a replica table such as { id = 0, address = \"127.0.0.1:27100\" }")]
pub(super) struct RawReplica {
    pub(super) id: u16,
    #[serde(default)]
    pub(super) address: Option<String>,
    #[serde(default = "one")]
    pub(super) stake: u64,
    #[serde(default)]
    pub(super) public_key: Option<String>,
}

fn one() -> u64 {
    1
}

/// `[node]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNode {
    pub(super) batch_messages: usize,
    pub(super) batch_linger_us: u64,
    pub(super) queue_capacity: usize,
    pub(super) queue_mib: usize,
    pub(super) stats_interval_ms: u64,
}

impl From<&NodeTuning> for RawNode {
    fn from(n: &NodeTuning) -> Self {
        Self {
            batch_messages: n.batch_messages,
            batch_linger_us: u64::try_from(n.batch_linger.as_micros()).unwrap_or(u64::MAX),
            queue_capacity: n.queue_capacity,
            queue_mib: n.queue_bytes >> 20,
            stats_interval_ms: u64::try_from(n.stats_interval.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Default for RawNode {
    fn default() -> Self {
        Self::from(&NodeTuning::default())
    }
}

/// `[keys]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a [keys] table with identity_file, or secret or secret_file")]
pub(super) struct RawKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) identity_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) secret_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) signing_seed: Option<String>,
}

/// `[load]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLoad {
    pub(super) messages: u64,
    pub(super) size: usize,
    pub(super) senders: Senders,
    pub(super) rate: u64,
    pub(super) timeout_s: u64,
}

impl From<&LoadSpec> for RawLoad {
    fn from(l: &LoadSpec) -> Self {
        Self { messages: l.messages, size: l.size, senders: l.senders, rate: l.rate, timeout_s: l.timeout.as_secs() }
    }
}

impl Default for RawLoad {
    fn default() -> Self {
        Self::from(&LoadSpec::default())
    }
}

/// The tables written after `strategy` and the `[[rsm]]` tables by
/// [`DeploymentConfig::to_toml_string`](super::DeploymentConfig::to_toml_string).
#[derive(Serialize)]
pub(super) struct RawTail<'a> {
    pub(super) transport: &'a TransportOptions,
    pub(super) tuning: &'a ProtocolParams,
    pub(super) node: RawNode,
    pub(super) keys: RawKeys,
    pub(super) load: RawLoad,
}
