//! Commit-certificate decoding and verification on arbitrary bytes: never a panic; a real
//! certificate verifies exactly when its signers hold f+1 stake, and still never panics once
//! damaged.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use picsou_core::RsmId;
use picsou_core::proof::{CommitSigner, Ed25519QuorumVerifier, ProofVerifier, QuorumCertificate, StreamId};

const STREAM: StreamId = StreamId { from: RsmId(0), to: RsmId(1) };

static SIGNERS: LazyLock<Vec<CommitSigner>> =
    LazyLock::new(|| (0..4u16).map(|i| CommitSigner::from_seed(i, &[i as u8 + 1; 32])).collect());
static VERIFIER: LazyLock<Ed25519QuorumVerifier> = LazyLock::new(|| {
    Ed25519QuorumVerifier::new(SIGNERS.iter().map(CommitSigner::verifying_key).collect(), vec![1; 4], 1)
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let _ = QuorumCertificate::decode(rest);
    // Arbitrary bytes as the proof of message (seq, payload): the verifier must not panic (a
    // valid certificate in the input, as in the seed corpus, does verify).
    let (seq, payload) = (u64::from(selector), b"committed".as_slice());
    let _ = VERIFIER.verify(STREAM, seq, payload, rest);
    // A real certificate from the signers the selector picks, then damaged by the rest.
    let who: Vec<&CommitSigner> =
        SIGNERS.iter().enumerate().filter(|(i, _)| selector >> i & 1 == 1).map(|(_, s)| s).collect();
    let mut cert = QuorumCertificate::assemble(who.iter().map(|s| s.sign_share(STREAM, seq, payload))).encode();
    let verified = VERIFIER.verify(STREAM, seq, payload, &cert).is_ok();
    assert_eq!(verified, who.len() >= 2, "{} signers", who.len());
    if let Some((&at, flips)) = rest.split_first() {
        let len = cert.len().max(1);
        for (k, &b) in flips.iter().enumerate().take(8) {
            if let Some(x) = cert.get_mut((usize::from(at) + 31 * k) % len) {
                *x ^= b;
            }
        }
        let _ = VERIFIER.verify(STREAM, seq, payload, &cert);
    }
});
