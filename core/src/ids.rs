//! Identifiers of RSMs and replicas.

use std::fmt;

/// One of the two RSMs of a deployment: 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RsmId(pub u8);

impl RsmId {
    /// The other RSM of the pair.
    pub const fn other(self) -> Self {
        Self(1 - (self.0 & 1))
    }
}

/// A replica: its RSM and its index (0-based) in that RSM's replica list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ReplicaId {
    /// The RSM the replica belongs to.
    pub rsm: RsmId,
    /// Index of the replica in its RSM.
    pub index: u16,
}

impl ReplicaId {
    /// Builds a replica id.
    pub const fn new(rsm: u8, index: u16) -> Self {
        Self { rsm: RsmId(rsm), index }
    }
}

impl fmt::Display for ReplicaId {
    /// `s3` is replica 3 of RSM 0 (the sender in the simulator), `r2` replica 2 of RSM 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = if self.rsm.0 == 0 { 's' } else { 'r' };
        write!(f, "{side}{}", self.index)
    }
}
