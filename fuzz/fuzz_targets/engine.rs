//! The engine fed authenticated garbage: frames whose every byte is chosen by the input and
//! then sealed with the link key of the peer they claim to come from (what a Byzantine peer
//! can send), interleaved with time passing. Never a panic, and whatever is delivered is
//! delivered in order, exactly once.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use picsou_core::config::{EndpointConfig, FaultModel, Membership, ProtocolParams, RsmSpec, Strategy};
use picsou_core::keys::{LinkKeys, derive_link_key};
use picsou_core::proof::NoProof;
use picsou_core::{Endpoint, Event, ReplicaId, Time, wire};

const SECRET: [u8; 32] = [9; 32];

fuzz_target!(|data: &[u8]| {
    let m = Arc::new(
        Membership::new(RsmSpec::uniform("a", 4, FaultModel::Cft, 1), RsmSpec::uniform("b", 4, FaultModel::Cft, 1))
            .expect("membership"),
    );
    let local = ReplicaId::new(1, 0);
    let cfg = EndpointConfig::new(
        m,
        local,
        Strategy::Picsou,
        ProtocolParams::default(),
        LinkKeys::derived(local, SECRET),
        Arc::new(NoProof),
    );
    let Ok(mut ep) = Endpoint::new(cfg, Time::ZERO) else { return };
    let mut t = 0u64;
    let mut delivered = Vec::new();
    // Input: frames, each a length byte pair, a peer byte and that many bytes.
    let mut rest = data;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([head[0], head[1]])) % 2048;
        let from = match head[2] % 8 {
            k @ 0..4 => ReplicaId::new(0, u16::from(k)),
            k => ReplicaId::new(1, u16::from(k - 4)),
        };
        let (body, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        let mut frame = body.to_vec();
        wire::reseal(&mut frame, &derive_link_key(&SECRET, from, local));
        t += 1_000_000;
        let now = Time::from_nanos(t);
        ep.handle_frame(now, from, Bytes::from(frame));
        ep.handle_timeout(now);
        while ep.poll_transmit(now).is_some() {}
        while let Some(e) = ep.poll_event() {
            if let Event::Deliver { seq, .. } = e {
                delivered.push(seq);
            }
        }
    }
    assert!(delivered.iter().enumerate().all(|(i, &s)| s == i as u64), "out of order or repeated: {delivered:?}");
});
