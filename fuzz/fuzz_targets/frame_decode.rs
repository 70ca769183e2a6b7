//! The frame decoder on arbitrary bytes: as they arrive from anyone (byte 0 even), and
//! re-sealed under the link key (byte 0 odd), which is what a Byzantine peer holding the key
//! can send: every check after authentication is reached. Never a panic; a decoded frame
//! stays within the limits.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use picsou_core::wire::{self, Limits};

const KEY: [u8; 32] = [0x5a; 32];
const LIMITS: Limits =
    Limits { max_frame_bytes: 1 << 20, max_payload_bytes: 1 << 16, max_proof_bytes: 4096, max_phi_words: 64 };

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut frame = rest.to_vec();
    if mode & 1 == 1 {
        wire::reseal(&mut frame, &KEY);
    }
    let _ = wire::frame_len(&frame);
    if let Ok((f, section)) = wire::decode_with_section(Bytes::from(frame), &LIMITS, |_| Some(KEY)) {
        assert!(f.ack.phi.len() <= LIMITS.max_phi_words);
        for r in &f.records {
            assert!(r.payload.len() <= LIMITS.max_payload_bytes && r.proof.len() <= LIMITS.max_proof_bytes);
        }
        assert!(section.bytes.len() <= LIMITS.max_frame_bytes);
    }
});
