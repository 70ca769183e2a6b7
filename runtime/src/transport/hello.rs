//! The connection hello: the first bytes on every stream connection, proving who dialled.
//!
//! A dialler sends `HELLO_LEN` bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `PQHELLO1` |
//! | 8 | source RSM |
//! | 9..11 | source index (LE) |
//! | 11 | destination RSM |
//! | 12..14 | destination index (LE) |
//! | 14..16 | zero |
//! | 16..24 | nonce: the dialler's clock in ns since the Unix epoch (LE) |
//! | 24..40 | BLAKE3 keyed hash of bytes 0..24 under the link key, truncated to 16 bytes |
//!
//! The acceptor checks the magic, that it is the destination, that it knows the source, the
//! tag under the link key, and that the nonce is newer than the last hello it accepted from
//! that source (a recorded hello cannot be replayed to this process). Frames that follow are
//! authenticated one by one by the engine, so the hello only has to stop unknown and
//! impersonating peers from occupying a connection slot.

use picsou_core::ReplicaId;
use picsou_core::keys::MacKey;

/// Length of a hello.
pub const HELLO_LEN: usize = 40;
const MAGIC: &[u8; 8] = b"PQHELLO1";
const TAG_LEN: usize = 16;

/// Why a hello was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// Not a picsou hello at all (garbage on the port, or another protocol).
    #[error("not a picsou hello (bad magic)")]
    BadMagic,
    /// The hello is for another replica.
    #[error("hello addressed to {0}, not to this replica")]
    WrongDestination(ReplicaId),
    /// The claimed source is not a member of the deployment.
    #[error("unknown peer {0}")]
    UnknownPeer(ReplicaId),
    /// The tag does not verify under the link key: the dialler does not hold the key.
    #[error("hello from {0} failed authentication")]
    BadTag(ReplicaId),
    /// The nonce is not newer than an accepted one: a replayed hello.
    #[error("replayed hello from {0}")]
    Replayed(ReplicaId),
}

/// Builds the hello that `from` sends when dialling `to`.
pub fn encode(from: ReplicaId, to: ReplicaId, nonce: u64, key: &MacKey) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8] = from.rsm.0;
    h[9..11].copy_from_slice(&from.index.to_le_bytes());
    h[11] = to.rsm.0;
    h[12..14].copy_from_slice(&to.index.to_le_bytes());
    h[16..24].copy_from_slice(&nonce.to_le_bytes());
    let tag = blake3::keyed_hash(key, &h[..24]);
    h[24..].copy_from_slice(&tag.as_bytes()[..TAG_LEN]);
    h
}

/// Whether `bytes`, the first bytes received on a connection, can still be the start of a
/// hello. Lets an acceptor refuse garbage as soon as it arrives instead of waiting for 40 bytes
/// (or its hello deadline) from a client that will never send them.
pub fn plausible_prefix(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MAGIC.len());
    bytes[..n] == MAGIC[..n]
}

/// A hello that parsed, before authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Who claims to dial.
    pub from: ReplicaId,
    /// Whom it dials.
    pub to: ReplicaId,
    /// Its nonce.
    pub nonce: u64,
}

/// Parses a hello without checking its tag.
pub fn parse(h: &[u8; HELLO_LEN]) -> Result<Claimed, HelloError> {
    if &h[..8] != MAGIC || h[14..16] != [0, 0] || h[8] > 1 || h[11] > 1 {
        return Err(HelloError::BadMagic);
    }
    let from = ReplicaId::new(h[8], u16::from_le_bytes([h[9], h[10]]));
    let to = ReplicaId::new(h[11], u16::from_le_bytes([h[12], h[13]]));
    let nonce = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    Ok(Claimed { from, to, nonce })
}

/// Verifies a hello received by `local`: `key_for` gives the link key of a claimed source (or
/// `None` if unknown), `last_nonce` the newest nonce accepted from it so far.
pub fn verify(
    h: &[u8; HELLO_LEN],
    local: ReplicaId,
    key_for: impl FnOnce(ReplicaId) -> Option<MacKey>,
    last_nonce: u64,
) -> Result<Claimed, HelloError> {
    let c = parse(h)?;
    if c.to != local {
        return Err(HelloError::WrongDestination(c.to));
    }
    if c.from == local {
        return Err(HelloError::UnknownPeer(c.from));
    }
    let key = key_for(c.from).ok_or(HelloError::UnknownPeer(c.from))?;
    let tag = blake3::keyed_hash(&key, &h[..24]);
    // Constant-time comparison: `blake3::Hash` compares in constant time, so compare whole
    // hashes by rebuilding the expected truncated tag into a fixed array.
    let mut diff = 0u8;
    for (a, b) in tag.as_bytes()[..TAG_LEN].iter().zip(&h[24..]) {
        diff |= a ^ b;
    }
    if diff != 0 {
        return Err(HelloError::BadTag(c.from));
    }
    if c.nonce <= last_nonce {
        return Err(HelloError::Replayed(c.from));
    }
    Ok(c)
}

/// A nonce for a new hello: nanoseconds since the Unix epoch, strictly increasing within this
/// process (a restarted dialler's clock has moved on, so its hellos stay newer).
pub fn next_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(1);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::new(0, 1);
    const B: ReplicaId = ReplicaId::new(1, 3);

    #[test]
    fn round_trip_and_every_rejection() {
        let key = [9u8; 32];
        let h = encode(A, B, 77, &key);
        let ok = verify(&h, B, |p| (p == A).then_some(key), 0).unwrap();
        assert_eq!(ok, Claimed { from: A, to: B, nonce: 77 });
        assert_eq!(verify(&h, A, |_| Some(key), 0), Err(HelloError::WrongDestination(B)));
        assert_eq!(verify(&h, B, |_| None, 0), Err(HelloError::UnknownPeer(A)));
        assert_eq!(verify(&h, B, |_| Some([1u8; 32]), 0), Err(HelloError::BadTag(A)));
        assert_eq!(verify(&h, B, |_| Some(key), 77), Err(HelloError::Replayed(A)));
        let mut bad = h;
        bad[0] = b'G';
        assert_eq!(verify(&bad, B, |_| Some(key), 0), Err(HelloError::BadMagic));
        let mut flipped = h;
        flipped[17] ^= 1;
        assert_eq!(verify(&flipped, B, |_| Some(key), 0), Err(HelloError::BadTag(A)));
    }

    #[test]
    fn plausible_prefixes() {
        let h = encode(A, B, 1, &[0u8; 32]);
        assert!(plausible_prefix(&[]));
        assert!(plausible_prefix(&h[..3]));
        assert!(plausible_prefix(&h));
        assert!(!plausible_prefix(b"GET / HTTP/1.1"));
        assert!(!plausible_prefix(b"PQX"));
    }

    #[test]
    fn nonces_increase() {
        let a = next_nonce();
        let b = next_nonce();
        assert!(b > a);
    }
}
