//! The bootstrap exchange over TCP that connects two queue pairs.
//!
//! The dialler (the replica that will write) connects to the peer's address, reads the
//! acceptor's challenge (the session [`handshake`]) and sends [`DIAL_LEN`] bytes: its 64-byte
//! hello answering the challenge, its connection info (queue pair, and where its credit word
//! is), and a tag over both under the link key. The acceptor checks the hello (who dials, over
//! its own fresh nonce) and the tag, answers with the handshake's confirmation, zeroes the
//! dialler's ring, connects its queue pair and sends [`ACCEPT_LEN`] bytes: its connection info
//! (queue pair, and where the ring is) and a tag binding it to the dial. The socket then stays open, idle, as a liveness
//! signal: either side closing it takes the connection down.
//!
//! Connection info (64 bytes, little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `PQRDMA01` |
//! | 8 | version (1) |
//! | 9 | flags: bit 0, this side waits for completions (event mode: writes carry immediates) |
//! | 10 | active MTU (`ibv_mtu`) |
//! | 12..14 | LID |
//! | 16..20 | queue pair number |
//! | 20..24 | first packet sequence number |
//! | 24..40 | GID |
//! | 40..48 | buffer address (dial: credit word; accept: ring) |
//! | 48..56 | buffer length |
//! | 56..60 | buffer remote key |
//!
//! [`handshake`]: picsou_runtime::transport::handshake

use picsou_core::handshake::{keyed_tag, tags_equal};
use picsou_core::keys::MacKey;
use picsou_runtime::transport::handshake::HELLO_LEN;

use crate::verbs::Endpoint;

const MAGIC: &[u8; 8] = b"PQRDMA01";
const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// Bytes of connection info.
pub const INFO_LEN: usize = 64;
/// Bytes a dialler sends.
pub const DIAL_LEN: usize = HELLO_LEN + INFO_LEN + TAG_LEN;
/// Bytes an acceptor answers.
pub const ACCEPT_LEN: usize = INFO_LEN + TAG_LEN;

/// One side's connection details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Its queue pair.
    pub endpoint: Endpoint,
    /// It waits for completions (writes to it must carry immediates).
    pub event: bool,
    /// The buffer the other side writes: the credit word (dial) or the ring (accept).
    pub addr: u64,
    /// Its length.
    pub len: u64,
    /// Its remote key.
    pub rkey: u32,
}

impl Info {
    /// The 64-byte encoding.
    pub fn encode(&self) -> [u8; INFO_LEN] {
        let mut b = [0u8; INFO_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = VERSION;
        b[9] = u8::from(self.event);
        b[10] = self.endpoint.mtu;
        b[12..14].copy_from_slice(&self.endpoint.lid.to_le_bytes());
        b[16..20].copy_from_slice(&self.endpoint.qpn.to_le_bytes());
        b[20..24].copy_from_slice(&self.endpoint.psn.to_le_bytes());
        b[24..40].copy_from_slice(&self.endpoint.gid);
        b[40..48].copy_from_slice(&self.addr.to_le_bytes());
        b[48..56].copy_from_slice(&self.len.to_le_bytes());
        b[56..60].copy_from_slice(&self.rkey.to_le_bytes());
        b
    }

    /// Parses 64 bytes.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() != INFO_LEN || &b[..8] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if b[8] != VERSION {
            return Err(WireError::Version(b[8]));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let mtu = b[10];
        if !(1..=5).contains(&mtu) {
            return Err(WireError::Mtu(mtu));
        }
        let mut gid = [0u8; 16];
        gid.copy_from_slice(&b[24..40]);
        Ok(Self {
            endpoint: Endpoint {
                gid,
                lid: u16::from_le_bytes([b[12], b[13]]),
                qpn: u32_at(16) & 0x00ff_ffff,
                psn: u32_at(20) & 0x00ff_ffff,
                mtu,
            },
            event: b[9] & 1 != 0,
            addr: u64_at(40),
            len: u64_at(48),
            rkey: u32_at(56),
        })
    }
}

/// Why a bootstrap message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not connection info at all.
    #[error("not RDMA connection info (bad magic): is the peer running the rdma transport?")]
    BadMagic,
    /// Another version of the bootstrap.
    #[error("connection info version {0} (this build speaks {VERSION})")]
    Version(u8),
    /// An MTU code outside 1..=5.
    #[error("invalid MTU code {0}")]
    Mtu(u8),
    /// The dial's connection info is not tagged under the link key.
    #[error("connection info failed authentication")]
    DialTag,
    /// The answer is not tagged under the link key for our dial.
    #[error("the answer failed authentication (not the peer we dialled, or a different key)")]
    AnswerTag,
}

/// The dialler's message: `hello` (already built for this peer), info, tag.
pub fn encode_dial(hello: &[u8; HELLO_LEN], info: &Info, key: &MacKey) -> [u8; DIAL_LEN] {
    let mut b = [0u8; DIAL_LEN];
    b[..HELLO_LEN].copy_from_slice(hello);
    b[HELLO_LEN..HELLO_LEN + INFO_LEN].copy_from_slice(&info.encode());
    let t = keyed_tag(key, &[b"PQRDMA dial", &b[..HELLO_LEN + INFO_LEN]]);
    b[HELLO_LEN + INFO_LEN..].copy_from_slice(&t);
    b
}

/// The info of a dial whose hello was verified, after checking its tag.
pub fn decode_dial(b: &[u8; DIAL_LEN], key: &MacKey) -> Result<Info, WireError> {
    let t = keyed_tag(key, &[b"PQRDMA dial", &b[..HELLO_LEN + INFO_LEN]]);
    if !tags_equal(&t, &b[HELLO_LEN + INFO_LEN..]) {
        return Err(WireError::DialTag);
    }
    Info::decode(&b[HELLO_LEN..HELLO_LEN + INFO_LEN])
}

/// The acceptor's answer to `dial`.
pub fn encode_accept(dial: &[u8; DIAL_LEN], info: &Info, key: &MacKey) -> [u8; ACCEPT_LEN] {
    let mut b = [0u8; ACCEPT_LEN];
    b[..INFO_LEN].copy_from_slice(&info.encode());
    let t = keyed_tag(key, &[b"PQRDMA accept", dial, &b[..INFO_LEN]]);
    b[INFO_LEN..].copy_from_slice(&t);
    b
}

/// Checks and parses the answer to our `dial`.
pub fn decode_accept(dial: &[u8; DIAL_LEN], b: &[u8; ACCEPT_LEN], key: &MacKey) -> Result<Info, WireError> {
    let t = keyed_tag(key, &[b"PQRDMA accept", dial, &b[..INFO_LEN]]);
    if !tags_equal(&t, &b[INFO_LEN..]) {
        return Err(WireError::AnswerTag);
    }
    Info::decode(&b[..INFO_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;
    use picsou_core::ReplicaId;
    use picsou_core::handshake::{self, Incarnation, SessionContext};

    fn info(event: bool) -> Info {
        Info {
            endpoint: Endpoint { gid: [3; 16], lid: 7, qpn: 0x12_3456, psn: 0xab_cdef, mtu: 3 },
            event,
            addr: 0xdead_beef_0000,
            len: 1 << 20,
            rkey: 0x4242,
        }
    }

    fn hello(nonce: u8) -> [u8; HELLO_LEN] {
        let ctx = SessionContext { deployment: [0; 32], incarnation: Incarnation([1; 16]) };
        let challenge = handshake::challenge(&[nonce; 16]);
        handshake::answer(&challenge, ReplicaId::new(0, 1), ReplicaId::new(1, 2), &[5; 32], &ctx, &[2; 16]).unwrap().0
    }

    #[test]
    fn dial_and_accept_round_trip_and_reject_tampering() {
        let key = [5u8; 32];
        let dial = encode_dial(&hello(1), &info(true), &key);
        assert_eq!(decode_dial(&dial, &key), Ok(info(true)));
        let mut bad = dial;
        bad[HELLO_LEN + 45] ^= 1;
        assert_eq!(decode_dial(&bad, &key), Err(WireError::DialTag));
        assert!(decode_dial(&dial, &[6u8; 32]).is_err());

        let acc = encode_accept(&dial, &info(false), &key);
        assert_eq!(decode_accept(&dial, &acc, &key), Ok(info(false)));
        // An answer to another dial (replayed) does not verify.
        let other = encode_dial(&hello(2), &info(true), &key);
        assert!(decode_accept(&other, &acc, &key).is_err());
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(Info::decode(&[0u8; INFO_LEN]), Err(WireError::BadMagic));
        let mut b = info(false).encode();
        b[8] = 9;
        assert!(matches!(Info::decode(&b), Err(WireError::Version(_))));
        let mut b = info(false).encode();
        b[10] = 0;
        assert!(matches!(Info::decode(&b), Err(WireError::Mtu(_))));
    }

    proptest::proptest! {
        /// Bootstrap messages come from whoever connects to the port: arbitrary bytes are
        /// refused with a reason (or, for `Info`, parsed into some value), never a panic.
        #[test]
        fn arbitrary_bootstrap_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..ACCEPT_LEN + DIAL_LEN + 8),
        ) {
            let key = [5u8; 32];
            let _ = Info::decode(&bytes);
            let mut dial = [0u8; DIAL_LEN];
            let n = bytes.len().min(DIAL_LEN);
            dial[..n].copy_from_slice(&bytes[..n]);
            proptest::prop_assert!(decode_dial(&dial, &key).is_err(), "unauthenticated dial accepted");
            let mut acc = [0u8; ACCEPT_LEN];
            let m = bytes.len().min(ACCEPT_LEN);
            acc[..m].copy_from_slice(&bytes[..m]);
            proptest::prop_assert!(decode_accept(&dial, &acc, &key).is_err());
        }
    }
}
