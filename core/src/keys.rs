//! Per-link MAC keys.
//!
//! Every frame carries a MAC under the key of the (sender, receiver) replica pair. Keys come
//! from configuration: either an explicit table, or derived from a deployment secret with
//! BLAKE3's key derivation (a convenience for tests and single-operator deployments; with a
//! shared secret every holder can derive every key, so multi-operator deployments should hand
//! each replica only its own links' keys).

use std::collections::HashMap;

use crate::ids::ReplicaId;

/// A 256-bit MAC key.
pub type MacKey = [u8; 32];

/// The MAC keys of one replica's links.
#[derive(Clone)]
pub struct LinkKeys {
    local: ReplicaId,
    source: KeySource,
}

#[derive(Clone)]
enum KeySource {
    Derived(MacKey),
    Table(HashMap<ReplicaId, MacKey>),
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys").field("local", &self.local).finish_non_exhaustive()
    }
}

impl LinkKeys {
    /// Keys derived from a deployment secret: the key of link {a, b} is
    /// `BLAKE3-derive_key("picsou 2026 link mac v1", secret || min(a,b) || max(a,b))`.
    pub fn derived(local: ReplicaId, secret: MacKey) -> Self {
        Self { local, source: KeySource::Derived(secret) }
    }

    /// An explicit table of keys, one per peer.
    pub fn table(local: ReplicaId, keys: HashMap<ReplicaId, MacKey>) -> Self {
        Self { local, source: KeySource::Table(keys) }
    }

    /// The replica these keys belong to.
    pub fn local(&self) -> ReplicaId {
        self.local
    }

    /// The key of the link between this replica and `peer`, if known.
    pub fn key_for(&self, peer: ReplicaId) -> Option<MacKey> {
        match &self.source {
            KeySource::Derived(secret) => Some(derive_link_key(secret, self.local, peer)),
            KeySource::Table(t) => t.get(&peer).copied(),
        }
    }
}

/// The derived key of the link between `a` and `b` (symmetric in `a` and `b`).
pub fn derive_link_key(secret: &MacKey, a: ReplicaId, b: ReplicaId) -> MacKey {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut material = [0u8; 32 + 6];
    material[..32].copy_from_slice(secret);
    material[32] = lo.rsm.0;
    material[33..35].copy_from_slice(&lo.index.to_le_bytes());
    material[35] = hi.rsm.0;
    material[36..38].copy_from_slice(&hi.index.to_le_bytes());
    blake3::derive_key("picsou 2026 link mac v1", &material)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_symmetric_and_distinct() {
        let s = [7u8; 32];
        let a = ReplicaId::new(0, 1);
        let b = ReplicaId::new(1, 1);
        let c = ReplicaId::new(1, 2);
        assert_eq!(derive_link_key(&s, a, b), derive_link_key(&s, b, a));
        assert_ne!(derive_link_key(&s, a, b), derive_link_key(&s, a, c));
        assert_ne!(derive_link_key(&s, a, b), derive_link_key(&[8u8; 32], a, b));
        let keys = LinkKeys::derived(a, s);
        assert_eq!(keys.key_for(b), Some(derive_link_key(&s, a, b)));
        let table = LinkKeys::table(a, HashMap::from([(b, [1u8; 32])]));
        assert_eq!(table.key_for(b), Some([1u8; 32]));
        assert_eq!(table.key_for(c), None);
    }
}
