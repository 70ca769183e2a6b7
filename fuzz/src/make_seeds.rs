//! Writes the seed corpora of the fuzz targets (valid inputs, so that fuzzing starts past the
//! first checks): `fuzz/corpus/<target>/<name>`.

use std::path::Path;

use picsou_core::ReplicaId;
use picsou_core::RsmId;
use picsou_core::keys::{LinkKeys, derive_link_key};
use picsou_core::proof::{CommitSigner, QuorumCertificate, StreamId};
use picsou_core::wire::{AckReport, FrameBuilder, FrameKind, RecordKind};
use picsou_core::handshake::{self, Incarnation, SessionContext};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn frame(from: ReplicaId, to: ReplicaId, key: &[u8; 32], records: &[(RecordKind, u64, &[u8])]) -> Vec<u8> {
    let mut b = FrameBuilder::new(FrameKind::between(from, to), from, to, &AckReport { next: 3, phi: vec![0b101] });
    for &(kind, seq, payload) in records {
        b.push(kind, seq, payload, b"");
    }
    b.finish(key).to_vec()
}

fn main() {
    let (s1, r0) = (ReplicaId::new(0, 1), ReplicaId::new(1, 0));
    // frame_decode: byte 0 picks raw (even) or re-sealed (odd); its key is [0x5a; 32].
    let f = frame(s1, r0, &[0x5a; 32], &[(RecordKind::First, 0, b"hello"), (RecordKind::First, 4, b"world")]);
    write("frame_decode", "two-records", &[[0u8].as_slice(), &f].concat());
    write("frame_decode", "two-records-resealed", &[[1u8].as_slice(), &f].concat());
    let ack = frame(s1, r0, &[0x5a; 32], &[]);
    write("frame_decode", "ack-only", &[[0u8].as_slice(), &ack].concat());

    // framer: byte 0 picks the split; then a stream of frames.
    write("framer", "three-frames", &[[7u8].as_slice(), &f, &ack, &f].concat());

    // hello: byte 0 picks the split; s2's hello to r0 answering the target's known challenge,
    // and 8 more bytes.
    let (s2, secret) = (ReplicaId::new(0, 2), [7u8; 32]);
    let ctx = SessionContext { deployment: [1; 32], incarnation: Incarnation([3; 16]) };
    let key = LinkKeys::derived(s2, secret).key_for(r0).expect("key");
    let (h, _) = handshake::answer(&handshake::challenge(&[0x42; 16]), s2, r0, &key, &ctx, &[5; 16]).expect("hello");
    write("hello", "valid", &[[13u8].as_slice(), &h, b"frames.."].concat());

    // rdma_bootstrap: a dial and an answer under key [3; 32].
    let info = picsou_transport_rdma::wire::Info::decode(&[0u8; picsou_transport_rdma::wire::INFO_LEN]);
    if let Ok(info) = info {
        let dial = picsou_transport_rdma::wire::encode_dial(&h, &info, &[3; 32]);
        let answer = picsou_transport_rdma::wire::encode_accept(&dial, &info, &[3; 32]);
        write("rdma_bootstrap", "dial-and-answer", &[dial.as_slice(), &answer].concat());
    }
    write("rdma_bootstrap", "zeros", &[0u8; 64]);

    // proof: byte 0 = seq and the signers (bits 0..3); then a certificate.
    let stream = StreamId { from: RsmId(0), to: RsmId(1) };
    let signers: Vec<CommitSigner> = (0..4u16).map(|i| CommitSigner::from_seed(i, &[i as u8 + 1; 32])).collect();
    let cert = QuorumCertificate::assemble(signers[..2].iter().map(|s| s.sign_share(stream, 3, b"committed"))).encode();
    write("proof", "two-shares", &[[3u8].as_slice(), &cert].concat());

    // engine: frames as (length u16 LE, peer byte, bytes), sealed by the target.
    let key = derive_link_key(&[9; 32], s1, r0);
    let mut input = Vec::new();
    for seq in 0..4u64 {
        let f = frame(s1, r0, &key, &[(RecordKind::First, seq, b"payload")]);
        input.extend_from_slice(&(f.len() as u16).to_le_bytes());
        input.push(1);
        input.extend_from_slice(&f);
    }
    write("engine", "first-sends-from-s1", &input);
}
