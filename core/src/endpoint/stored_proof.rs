//! How the engine stores a message's proof in its windows.
//!
//! Most deployments' proofs are empty (CFT), and a `Bytes` handle would take 32 bytes in every
//! slot of the send window and of retention — windows of hundreds of thousands of slots, all of
//! which a replica touches. Boxed, an empty proof takes 8 bytes and a real one an allocation,
//! which BFT's signature checks dwarf.

use bytes::Bytes;

/// A message's proof, 8 bytes when empty.
#[derive(Debug, Default)]
pub(super) struct StoredProof(Option<Box<Bytes>>);

impl StoredProof {
    pub(super) fn new(proof: Bytes) -> Self {
        Self((!proof.is_empty()).then(|| Box::new(proof)))
    }

    pub(super) fn get(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}
