//! The session handshake: the acceptor's check of arbitrary 64-byte hellos against a known
//! challenge, the dialler's reading of arbitrary challenges and confirmations, and the accept
//! loop's judgement of a connection's first bytes fed in arbitrary splits (the first byte
//! picks the split). Never a panic; a hello is accepted only if it is exactly what the holder
//! of the claimed peer's link key sends for that challenge; the accept loop, whose challenge is
//! random, and the dialler, whose nonce is random, accept nothing from the fuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picsou_core::ReplicaId;
use picsou_core::handshake::{self as wire, HELLO_LEN, Incarnation, SessionContext};
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::accept::{Acceptor, Step};
use picsou_runtime::transport::handshake::{DialHandshake, DialProgress};
use picsou_runtime::transport::{Report, TransportStats};

const SECRET: [u8; 32] = [7; 32];
const LOCAL: ReplicaId = ReplicaId::new(1, 0);
const PEER: ReplicaId = ReplicaId::new(0, 2);
/// The challenge nonce of the seed's hello.
const NONCE: [u8; 16] = [0x42; 16];

fn ctx(incarnation: Incarnation) -> SessionContext {
    SessionContext { deployment: [1; 32], incarnation }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let keys = LinkKeys::derived(LOCAL, SECRET);
    let own = ctx(Incarnation([2; 16]));
    if let Some(h) = bytes.first_chunk::<HELLO_LEN>() {
        let _ = wire::parse_hello(h);
        if let Ok((c, _, _)) = wire::accept(h, LOCAL, &NONCE, &own, |p| keys.key_for(p)) {
            let key = LinkKeys::derived(c.from, SECRET).key_for(LOCAL).unwrap();
            let mut nonce = [0u8; 16];
            nonce.copy_from_slice(&h[32..48]);
            let (expected, _) = wire::answer(&wire::challenge(&NONCE), c.from, LOCAL, &key, &ctx(c.incarnation), &nonce)
                .expect("a valid challenge");
            assert_eq!(&expected, h, "a hello accepted that its claimed sender did not write");
        }
    }
    let step = usize::from(split % 48) + 1;
    // The dialler reads arbitrary bytes as the challenge and the confirmation.
    let key = LinkKeys::derived(PEER, SECRET).key_for(LOCAL).unwrap();
    let mut dialler = DialHandshake::new(PEER, LOCAL, key, own);
    let mut rest = bytes;
    while !rest.is_empty() {
        let room = dialler.unfilled();
        let n = room.len().min(step).min(rest.len());
        room[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        match dialler.filled(n) {
            Ok(DialProgress::More | DialProgress::Send(_)) => {}
            Ok(DialProgress::Done(_)) => panic!("a confirmation forged without the link key"),
            Err(_) => break,
        }
    }
    // The accept loop, whose challenge is fresh and random.
    let (mut events, mut stats) = (Vec::new(), TransportStats::default());
    let mut report = Report { events: &mut events, stats: &mut stats };
    let mut acc: Acceptor<u32, ()> = Acceptor::new(LOCAL, keys, own, [PEER], HELLO_LEN + 8);
    acc.admit(1, (), "127.0.0.1:9".into(), std::time::Instant::now());
    for chunk in bytes.chunks(step) {
        match acc.feed(1, chunk, &mut report).0 {
            Step::Waiting => {}
            Step::Arrived(_) => panic!("a hello accepted without answering the challenge"),
            Step::Refused(()) | Step::Gone(()) => break,
        }
    }
});
