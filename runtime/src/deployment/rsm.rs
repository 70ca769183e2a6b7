//! [`RsmConfig`] and [`ReplicaConfig`]: one `[[rsm]]` table of a deployment file.

use std::net::SocketAddr;

use picsou_core::config::ReplicaSpec;
use picsou_core::{FaultModel, RsmSpec};

/// One RSM of the deployment (a `[[rsm]]` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsmConfig {
    /// Name, unique in the deployment (used on the command line and in reports).
    pub name: String,
    /// Fault model.
    pub fault: FaultModel,
    /// Faulty stake tolerated.
    pub f: u64,
    /// Replicas sorted by id; the replica with id `i` is at index `i` (its
    /// [`ReplicaId::index`](picsou_core::ReplicaId::index)).
    pub replicas: Vec<ReplicaConfig>,
}

impl RsmConfig {
    /// The RSM as the protocol sees it.
    pub fn spec(&self) -> RsmSpec {
        RsmSpec {
            name: self.name.clone(),
            replicas: self.replicas.iter().map(|r| ReplicaSpec { id: u32::from(r.id), stake: r.stake }).collect(),
            fault: self.fault,
            f: self.f,
        }
    }

    /// Number of replicas.
    pub fn n(&self) -> usize {
        self.replicas.len()
    }
}

/// One replica of an RSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Id, equal to the replica's index in its RSM.
    pub id: u16,
    /// Where it listens and where its peers dial it (`127.0.0.1:0` for in-memory transports
    /// when the file gives none).
    pub address: SocketAddr,
    /// Stake (voting weight), at least 1.
    pub stake: u64,
    /// The replica's public key (ed25519, checked to be a usable point) when the deployment
    /// uses per-replica keys; `None` with a shared secret.
    pub public_key: Option<[u8; 32]>,
}
