//! Commit proofs and link keys for a simulated deployment, all derived from the seed.
//!
//! Under BFT every message needs a proof that RSM 0 committed it. Simulating the consensus
//! that would produce it is out of scope, so the simulator plays the role of RSM 0's consensus:
//! it issues each message's proof once and hands the same bytes to every sender replica (as a
//! committed log entry would be). By default the proof is an [`OracleCertificate`], a keyed hash
//! that is cheap to check but that no Byzantine replica can forge (they never hold the oracle
//! key; the engine's `forge` behaviour tampers with payloads and proofs itself and must be
//! caught). With `real_signatures`, proofs are real ed25519 [`QuorumCertificate`]s signed by
//! `f_s + 1` stake of non-Byzantine sender replicas, checked by [`Ed25519QuorumVerifier`].

use std::sync::Arc;

use bytes::Bytes;

use super::rng::SimRng;
use super::scenario::Resolved;
use picsou_core::config::FaultModel;
use picsou_core::ids::RsmId;
use picsou_core::keys::MacKey;
use picsou_core::proof::{
    CommitSigner, Ed25519QuorumVerifier, NoProof, OracleCertificate, ProofVerifier, QuorumCertificate, StreamId,
    derive_signing_key,
};

/// The only stream a simulation carries: RSM 0 to RSM 1.
pub const STREAM: StreamId = StreamId { from: RsmId(0), to: RsmId(1) };

/// Issues the proof of each message RSM 0 commits.
#[derive(Debug)]
pub enum ProofIssuer {
    /// CFT: empty proofs.
    None,
    /// BFT, cheap: oracle certificates.
    Oracle(OracleCertificate),
    /// BFT, real: ed25519 shares of these signers, assembled into a certificate.
    Signed(Vec<CommitSigner>),
}

impl ProofIssuer {
    /// The issuer and the matching verifier for a run with `seed`.
    pub fn new(resolved: &Resolved, real_signatures: bool, seed: u64) -> (Self, Arc<dyn ProofVerifier>) {
        let sender = &resolved.membership.rsms[0];
        if sender.fault == FaultModel::Cft {
            return (Self::None, Arc::new(NoProof));
        }
        if !real_signatures {
            let mut key = [0u8; 32];
            SimRng::derive(seed, "oracle certificate key").fill(&mut key);
            let oracle = OracleCertificate::new(key);
            return (Self::Oracle(oracle.clone()), Arc::new(oracle));
        }
        let mut master = [0u8; 32];
        SimRng::derive(seed, "replica signing keys").fill(&mut master);
        let keys: Vec<_> = (0..sender.n()).map(|i| derive_signing_key(&master, RsmId(0), i as u16)).collect();
        let verifier =
            Ed25519QuorumVerifier::new(keys.iter().map(|k| k.verifying_key()).collect(), sender.stakes(), sender.f);
        // Signers: non-Byzantine sender replicas in index order until they hold f_s + 1 stake
        // (they exist: Byzantine stake is at most f_s of at least 3 f_s + 1).
        let mut signers = Vec::new();
        let mut stake = 0;
        for (i, plan) in resolved.replicas.iter().take(sender.n()).enumerate() {
            if stake > sender.f {
                break;
            }
            if plan.is_honest() {
                stake += plan.stake;
                signers.push(CommitSigner::new(i as u16, keys[i].clone()));
            }
        }
        (Self::Signed(signers), Arc::new(verifier))
    }

    /// The proof that RSM 0 committed `payload` at `seq`.
    pub fn issue(&self, seq: u64, payload: &[u8]) -> Bytes {
        match self {
            Self::None => Bytes::new(),
            Self::Oracle(o) => Bytes::copy_from_slice(&o.issue(STREAM, seq, payload)),
            Self::Signed(signers) => Bytes::from(
                QuorumCertificate::assemble(signers.iter().map(|s| s.sign_share(STREAM, seq, payload))).encode(),
            ),
        }
    }
}

/// The deployment secret from which every link's MAC key is derived.
pub fn mac_secret(seed: u64) -> MacKey {
    let mut secret = [0u8; 32];
    SimRng::derive(seed, "link mac secret").fill(&mut secret);
    secret
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::scenario::Scenario;
    use picsou_core::adversary::Behavior;

    #[test]
    fn cft_proofs_are_empty() {
        let s = Scenario { fault: FaultModel::Cft, ..Scenario::default() };
        let (issuer, verifier) = ProofIssuer::new(&s.resolve().unwrap(), false, 1);
        assert!(issuer.issue(0, b"x").is_empty());
        assert!(verifier.verify(STREAM, 0, b"x", b"").is_ok());
    }

    #[test]
    fn oracle_proofs_verify_only_for_their_message() {
        let (issuer, verifier) = ProofIssuer::new(&Scenario::default().resolve().unwrap(), false, 1);
        let p = issuer.issue(3, b"hello");
        assert!(verifier.verify(STREAM, 3, b"hello", &p).is_ok());
        assert!(verifier.verify(STREAM, 4, b"hello", &p).is_err());
        assert!(verifier.verify(STREAM, 3, b"hellO", &p).is_err());
        // Another seed, another key.
        let (other, _) = ProofIssuer::new(&Scenario::default().resolve().unwrap(), false, 2);
        assert!(verifier.verify(STREAM, 3, b"hello", &other.issue(3, b"hello")).is_err());
    }

    #[test]
    fn real_certificates_skip_byzantine_signers() {
        let s = Scenario {
            sender_n: 7,
            byzantine: BTreeMap::from([("s0".into(), Behavior::Forge.into())]),
            real_signatures: true,
            ..Scenario::default()
        };
        let (issuer, verifier) = ProofIssuer::new(&s.resolve().unwrap(), true, 1);
        let ProofIssuer::Signed(signers) = &issuer else { panic!("expected signers") };
        let idx: Vec<u16> = signers.iter().map(CommitSigner::index).collect();
        assert_eq!(idx, vec![1, 2, 3]); // f_s = 2: three unit stakes, s0 excluded
        let p = issuer.issue(9, b"payload");
        assert!(verifier.verify(STREAM, 9, b"payload", &p).is_ok());
        assert!(verifier.verify(STREAM, 9, b"paylo4d", &p).is_err());
    }

    #[test]
    fn mac_secret_depends_on_seed() {
        assert_eq!(mac_secret(1), mac_secret(1));
        assert_ne!(mac_secret(1), mac_secret(2));
    }
}
