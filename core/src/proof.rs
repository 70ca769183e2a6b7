//! Proofs that the sending RSM committed a message.
//!
//! STUB — being written (helper C). The public API below is fixed; bodies are placeholders.

use crate::ids::RsmId;

/// The stream a message belongs to: from one RSM to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    /// Sending RSM.
    pub from: RsmId,
    /// Receiving RSM.
    pub to: RsmId,
}

/// Why a proof was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The proof bytes are not a certificate.
    #[error("malformed proof: {0}")]
    Malformed(String),
}

/// Checks that the sending RSM committed `payload` at position `seq` of `stream`.
pub trait ProofVerifier: Send + Sync {
    /// `Ok` if the proof is valid.
    fn verify(&self, stream: StreamId, seq: u64, payload: &[u8], proof: &[u8]) -> Result<(), ProofError>;
}

/// Accepts every message: for CFT deployments, where replicas do not lie.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProof;

impl ProofVerifier for NoProof {
    fn verify(&self, _: StreamId, _: u64, _: &[u8], _: &[u8]) -> Result<(), ProofError> {
        Ok(())
    }
}
