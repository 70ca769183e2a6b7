//! The hello: parsing and verification of arbitrary 40-byte hellos, and the accept loop's
//! judgement of a connection's first bytes fed in arbitrary splits (the first byte picks the
//! split). Never a panic; a connection is accepted only with an authentic hello from a
//! configured peer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picsou_core::ReplicaId;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::accept::{Acceptor, Step};
use picsou_runtime::transport::hello::{self, HELLO_LEN};
use picsou_runtime::transport::{Report, TransportStats};

const SECRET: [u8; 32] = [7; 32];
const LOCAL: ReplicaId = ReplicaId::new(1, 0);
const PEER: ReplicaId = ReplicaId::new(0, 2);

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    if let Some(h) = bytes.first_chunk::<HELLO_LEN>() {
        let _ = hello::parse(h);
        let keys = LinkKeys::derived(LOCAL, SECRET);
        let _ = hello::verify(h, LOCAL, |p| keys.key_for(p), 0);
    }
    let (mut events, mut stats) = (Vec::new(), TransportStats::default());
    let mut report = Report { events: &mut events, stats: &mut stats };
    let mut acc: Acceptor<u32, ()> = Acceptor::new(LOCAL, LinkKeys::derived(LOCAL, SECRET), [PEER], HELLO_LEN + 8);
    acc.admit(1, (), "127.0.0.1:9".into(), std::time::Instant::now());
    let step = usize::from(split % 48) + 1;
    for chunk in bytes.chunks(step) {
        match acc.feed(1, chunk, &mut report).0 {
            Step::Waiting => {}
            Step::Arrived(a) => {
                // Only the holder of PEER's link key can have written this hello.
                let expected = hello::encode(
                    PEER,
                    LOCAL,
                    u64::from_le_bytes(a.message[16..24].try_into().unwrap()),
                    &LinkKeys::derived(PEER, SECRET).key_for(LOCAL).unwrap(),
                );
                assert_eq!(a.peer, PEER);
                assert_eq!(&a.message[..HELLO_LEN], &expected[..]);
                break;
            }
            Step::Refused(()) | Step::Gone(()) => break,
        }
    }
});
