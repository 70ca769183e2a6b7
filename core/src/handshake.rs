//! The session handshake: three messages at the start of every stream connection, by which both
//! ends prove who they are over fresh nonces of both sides, and which give the connection its
//! own session key. No clock is involved.
//!
//! ```text
//!   acceptor ── challenge: its nonce N_A ──────────────────────────────► dialler
//!   acceptor ◄─ hello: ids, I_D, N_D, tag over N_A ───────────────────── dialler
//!   acceptor ── confirm: I_A, tag over N_A, the hello and I_A ─────────► dialler
//! ```
//!
//! Connections are one-way (the dialler writes frames, the acceptor reads them), and the session
//! key authenticates the frames of this one connection: `derive_key("picsou 2026 session v3",
//! link key ‖ deployment id ‖ N_A ‖ hello ‖ confirm[0..24])`. Why each piece:
//! - the hello's tag covers the acceptor's fresh nonce, so a recorded hello is worthless: it
//!   cannot occupy a connection slot or displace the real peer's connection;
//! - the confirm's tag covers the whole hello, hence the dialler's fresh nonce, so the dialler
//!   knows it reached the peer and not something that replays its old answers;
//! - the incarnations (`I_D`, `I_A`: random per process start) tell each side whether the other
//!   restarted, which is the only thing that lets acks move backwards (see
//!   [`crate::Endpoint::set_session`]);
//! - the session key covers both nonces, so a frame recorded on one connection does not verify
//!   on any other — of another run, another deployment, or the same two processes;
//! - the deployment id is bound into both tags and the key, so the same identities used in two
//!   deployments never accept each other's handshakes.
//!
//! Byte layouts (little-endian; `WIRE.md`, "Session handshake", has a worked example):
//!
//! | message | bytes | field |
//! |---|---|---|
//! | challenge | 0..8 | magic `PQCHAL03` |
//! | | 8..24 | acceptor nonce `N_A` |
//! | hello | 0..8 | magic `PQHELLO3` |
//! | | 8, 9..11 | source RSM, index |
//! | | 11, 12..14 | destination RSM, index |
//! | | 14..16 | zero |
//! | | 16..32 | dialler incarnation `I_D` |
//! | | 32..48 | dialler nonce `N_D` |
//! | | 48..64 | tag: `BLAKE3-keyed(link key, "picsou hello v3" ‖ deployment id ‖ N_A ‖ hello[0..48])[0..16]` |
//! | confirm | 0..8 | magic `PQCONF03` |
//! | | 8..24 | acceptor incarnation `I_A` |
//! | | 24..40 | tag: `BLAKE3-keyed(link key, "picsou confirm v3" ‖ deployment id ‖ N_A ‖ hello ‖ confirm[0..24])[0..16]` |

use crate::ids::ReplicaId;
use crate::keys::MacKey;

/// Length of the acceptor's challenge.
pub const CHALLENGE_LEN: usize = 24;
/// Length of the dialler's hello.
pub const HELLO_LEN: usize = 64;
/// Length of the acceptor's confirmation.
pub const CONFIRM_LEN: usize = 40;

const CHALLENGE_MAGIC: &[u8; 8] = b"PQCHAL03";
const HELLO_MAGIC: &[u8; 8] = b"PQHELLO3";
const CONFIRM_MAGIC: &[u8; 8] = b"PQCONF03";
const TAG_LEN: usize = 16;
const SESSION_CONTEXT: &str = "picsou 2026 session v3";

/// A fresh random value of one side of one handshake.
pub type Nonce = [u8; 16];

/// One run of a replica process: random, drawn at start. A peer whose incarnation changed
/// restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Incarnation(pub [u8; 16]);

/// What both ends of a handshake share besides the link key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionContext {
    /// The deployment both ends belong to (see [`crate::identity::deployment_id`]).
    pub deployment: [u8; 32],
    /// This process's incarnation.
    pub incarnation: Incarnation,
}

/// The outcome of a handshake, for the engine: the key that authenticates the frames of this
/// connection, and who the other end is in this run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The MAC key of the connection's frames.
    pub key: MacKey,
    /// The other end's incarnation.
    pub peer_incarnation: Incarnation,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("peer_incarnation", &self.peer_incarnation).finish_non_exhaustive()
    }
}

/// Which of the two one-way connections with a peer a session belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionDirection {
    /// Ours to the peer: we send frames on it.
    Send,
    /// The peer's to us: we receive its frames on it.
    Receive,
}

/// Why a handshake message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a picsou handshake message (garbage, another protocol, or another version).
    #[error("not a picsou v3 handshake message (bad magic)")]
    BadMagic,
    /// The hello is for another replica.
    #[error("hello addressed to {0}, not to this replica")]
    WrongDestination(ReplicaId),
    /// The claimed source is not a member of the deployment.
    #[error("unknown peer {0}")]
    UnknownPeer(ReplicaId),
    /// The hello's tag does not verify: the dialler does not hold the link key, belongs to
    /// another deployment, or replays a hello made for another challenge.
    #[error("hello from {0} failed authentication")]
    BadTag(ReplicaId),
    /// The confirmation's tag does not verify: the acceptor is not the peer we dialled (or
    /// answers another hello).
    #[error("confirmation from {0} failed authentication")]
    BadConfirm(ReplicaId),
}

/// The acceptor's first message.
pub fn challenge(nonce: &Nonce) -> [u8; CHALLENGE_LEN] {
    let mut c = [0u8; CHALLENGE_LEN];
    c[..8].copy_from_slice(CHALLENGE_MAGIC);
    c[8..].copy_from_slice(nonce);
    c
}

/// Whether `bytes`, the first bytes of a message, can still be the start of one with `magic`.
fn plausible(bytes: &[u8], magic: &[u8; 8]) -> bool {
    let n = bytes.len().min(magic.len());
    bytes[..n] == magic[..n]
}

/// Whether `bytes`, the first bytes received on an accepted connection, can still be the start
/// of a hello: lets an acceptor refuse garbage as soon as it arrives.
pub fn plausible_hello(bytes: &[u8]) -> bool {
    plausible(bytes, HELLO_MAGIC)
}

/// Whether `bytes`, the first bytes a dialler received, can still be the start of a challenge.
pub fn plausible_challenge(bytes: &[u8]) -> bool {
    plausible(bytes, CHALLENGE_MAGIC)
}

/// A 16-byte handshake tag: the BLAKE3 keyed hash under `key` of `parts` in order, truncated.
/// Shared with the RDMA bootstrap's tags (`transport-rdma/src/wire.rs`).
pub fn keyed_tag(key: &MacKey, parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut h = blake3::Hasher::new_keyed(key);
    for p in parts {
        h.update(p);
    }
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&h.finalize().as_bytes()[..TAG_LEN]);
    t
}

/// Equality of two tags in time independent of where they differ.
pub fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0 && a.len() == b.len()
}

fn session_key(key: &MacKey, deployment: &[u8; 32], challenge_nonce: &[u8], hello: &[u8], confirm: &[u8]) -> MacKey {
    let mut h = blake3::Hasher::new_derive_key(SESSION_CONTEXT);
    h.update(key);
    h.update(deployment);
    h.update(challenge_nonce);
    h.update(hello);
    h.update(confirm);
    *h.finalize().as_bytes()
}

/// The dialler's side, between reading the challenge and reading the confirmation.
#[derive(Clone)]
pub struct Dialling {
    peer: ReplicaId,
    key: MacKey,
    deployment: [u8; 32],
    challenge_nonce: Nonce,
    hello: [u8; HELLO_LEN],
}

impl std::fmt::Debug for Dialling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialling").field("peer", &self.peer).finish_non_exhaustive()
    }
}

/// The dialler `from` answers the challenge of `to`: returns its hello (to send) and what it
/// needs to check the confirmation. `nonce` must be fresh and random.
pub fn answer(
    challenge: &[u8; CHALLENGE_LEN],
    from: ReplicaId,
    to: ReplicaId,
    key: &MacKey,
    ctx: &SessionContext,
    nonce: &Nonce,
) -> Result<([u8; HELLO_LEN], Dialling), HandshakeError> {
    if &challenge[..8] != CHALLENGE_MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let mut challenge_nonce = [0u8; 16];
    challenge_nonce.copy_from_slice(&challenge[8..]);
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(HELLO_MAGIC);
    h[8] = from.rsm.0;
    h[9..11].copy_from_slice(&from.index.to_le_bytes());
    h[11] = to.rsm.0;
    h[12..14].copy_from_slice(&to.index.to_le_bytes());
    h[16..32].copy_from_slice(&ctx.incarnation.0);
    h[32..48].copy_from_slice(nonce);
    let t = keyed_tag(key, &[b"picsou hello v3", &ctx.deployment, &challenge_nonce, &h[..48]]);
    h[48..].copy_from_slice(&t);
    Ok((h, Dialling { peer: to, key: *key, deployment: ctx.deployment, challenge_nonce, hello: h }))
}

impl Dialling {
    /// Checks the acceptor's confirmation: the session of this connection.
    pub fn confirm(&self, confirm: &[u8; CONFIRM_LEN]) -> Result<Session, HandshakeError> {
        if &confirm[..8] != CONFIRM_MAGIC {
            return Err(HandshakeError::BadMagic);
        }
        let expected = keyed_tag(
            &self.key,
            &[b"picsou confirm v3", &self.deployment, &self.challenge_nonce, &self.hello, &confirm[..24]],
        );
        if !tags_equal(&expected, &confirm[24..]) {
            return Err(HandshakeError::BadConfirm(self.peer));
        }
        let mut incarnation = [0u8; 16];
        incarnation.copy_from_slice(&confirm[8..24]);
        Ok(Session {
            key: session_key(&self.key, &self.deployment, &self.challenge_nonce, &self.hello, &confirm[..24]),
            peer_incarnation: Incarnation(incarnation),
        })
    }
}

/// A hello that parsed, before authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Who claims to dial.
    pub from: ReplicaId,
    /// Whom it dials.
    pub to: ReplicaId,
    /// Its incarnation.
    pub incarnation: Incarnation,
}

/// Parses a hello without checking its tag.
pub fn parse_hello(h: &[u8; HELLO_LEN]) -> Result<Claimed, HandshakeError> {
    if &h[..8] != HELLO_MAGIC || h[14..16] != [0, 0] || h[8] > 1 || h[11] > 1 {
        return Err(HandshakeError::BadMagic);
    }
    let from = ReplicaId::new(h[8], u16::from_le_bytes([h[9], h[10]]));
    let to = ReplicaId::new(h[11], u16::from_le_bytes([h[12], h[13]]));
    let mut incarnation = [0u8; 16];
    incarnation.copy_from_slice(&h[16..32]);
    Ok(Claimed { from, to, incarnation: Incarnation(incarnation) })
}

/// The acceptor `local`, which sent the challenge with `challenge_nonce`, checks a hello:
/// `key_for` gives the link key of a claimed source (`None`: not a peer). Returns who dialled,
/// the confirmation to send back, and the session of the connection.
pub fn accept(
    h: &[u8; HELLO_LEN],
    local: ReplicaId,
    challenge_nonce: &Nonce,
    ctx: &SessionContext,
    key_for: impl FnOnce(ReplicaId) -> Option<MacKey>,
) -> Result<(Claimed, [u8; CONFIRM_LEN], Session), HandshakeError> {
    let c = parse_hello(h)?;
    if c.to != local {
        return Err(HandshakeError::WrongDestination(c.to));
    }
    if c.from == local {
        return Err(HandshakeError::UnknownPeer(c.from));
    }
    let key = key_for(c.from).ok_or(HandshakeError::UnknownPeer(c.from))?;
    let expected = keyed_tag(&key, &[b"picsou hello v3", &ctx.deployment, challenge_nonce, &h[..48]]);
    if !tags_equal(&expected, &h[48..]) {
        return Err(HandshakeError::BadTag(c.from));
    }
    let mut confirm = [0u8; CONFIRM_LEN];
    confirm[..8].copy_from_slice(CONFIRM_MAGIC);
    confirm[8..24].copy_from_slice(&ctx.incarnation.0);
    let t = keyed_tag(&key, &[b"picsou confirm v3", &ctx.deployment, challenge_nonce, h, &confirm[..24]]);
    confirm[24..].copy_from_slice(&t);
    let session = Session {
        key: session_key(&key, &ctx.deployment, challenge_nonce, h, &confirm[..24]),
        peer_incarnation: c.incarnation,
    };
    Ok((c, confirm, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::new(0, 1);
    const B: ReplicaId = ReplicaId::new(1, 3);
    const KEY: MacKey = [9; 32];

    fn ctx(i: u8) -> SessionContext {
        SessionContext { deployment: [5; 32], incarnation: Incarnation([i; 16]) }
    }

    /// A dials B: both sides end with the same session, each knowing the other's incarnation.
    fn run(na: Nonce, nd: Nonce) -> (Session, Session) {
        let (h, dialling) = answer(&challenge(&na), A, B, &KEY, &ctx(1), &nd).unwrap();
        let (c, confirm, acc) = accept(&h, B, &na, &ctx(2), |p| (p == A).then_some(KEY)).unwrap();
        assert_eq!(c, Claimed { from: A, to: B, incarnation: Incarnation([1; 16]) });
        let dia = dialling.confirm(&confirm).unwrap();
        assert_eq!(dia.key, acc.key);
        assert_eq!(dia.peer_incarnation, Incarnation([2; 16]));
        assert_eq!(acc.peer_incarnation, Incarnation([1; 16]));
        (dia, acc)
    }

    #[test]
    fn both_sides_agree_and_every_connection_has_its_own_key() {
        let (s1, _) = run([1; 16], [2; 16]);
        let (s2, _) = run([1; 16], [3; 16]);
        let (s3, _) = run([4; 16], [2; 16]);
        assert_ne!(s1.key, s2.key);
        assert_ne!(s1.key, s3.key);
        assert_ne!(s1.key, KEY);
    }

    #[test]
    fn every_rejection() {
        let na = [1; 16];
        let (h, dialling) = answer(&challenge(&na), A, B, &KEY, &ctx(1), &[2; 16]).unwrap();
        let keys = |p: ReplicaId| (p == A).then_some(KEY);
        assert_eq!(accept(&h, A, &na, &ctx(2), keys).unwrap_err(), HandshakeError::WrongDestination(B));
        assert_eq!(accept(&h, B, &na, &ctx(2), |_| None).unwrap_err(), HandshakeError::UnknownPeer(A));
        assert_eq!(accept(&h, B, &na, &ctx(2), |_| Some([1; 32])).unwrap_err(), HandshakeError::BadTag(A));
        // Replayed to another challenge: refused.
        assert_eq!(accept(&h, B, &[7; 16], &ctx(2), keys).unwrap_err(), HandshakeError::BadTag(A));
        // Another deployment: refused.
        let other = SessionContext { deployment: [6; 32], ..ctx(2) };
        assert_eq!(accept(&h, B, &na, &other, keys).unwrap_err(), HandshakeError::BadTag(A));
        let mut bad = h;
        bad[0] = b'G';
        assert_eq!(accept(&bad, B, &na, &ctx(2), keys).unwrap_err(), HandshakeError::BadMagic);
        let mut flipped = h;
        flipped[20] ^= 1;
        assert_eq!(accept(&flipped, B, &na, &ctx(2), keys).unwrap_err(), HandshakeError::BadTag(A));
        // A confirmation for another hello, or tampered: refused by the dialler.
        let (h2, _) = answer(&challenge(&na), A, B, &KEY, &ctx(1), &[3; 16]).unwrap();
        let (_, other_confirm, _) = accept(&h2, B, &na, &ctx(2), keys).unwrap();
        assert_eq!(dialling.confirm(&other_confirm).unwrap_err(), HandshakeError::BadConfirm(B));
        let (_, mut confirm, _) = accept(&h, B, &na, &ctx(2), keys).unwrap();
        confirm[9] ^= 1;
        assert_eq!(dialling.confirm(&confirm).unwrap_err(), HandshakeError::BadConfirm(B));
        confirm[0] = 0;
        assert_eq!(dialling.confirm(&confirm).unwrap_err(), HandshakeError::BadMagic);
        assert_eq!(answer(&[0; CHALLENGE_LEN], A, B, &KEY, &ctx(1), &[2; 16]).unwrap_err(), HandshakeError::BadMagic);
    }

    #[test]
    fn plausible_prefixes() {
        let (h, _) = answer(&challenge(&[0; 16]), A, B, &KEY, &ctx(1), &[2; 16]).unwrap();
        assert!(plausible_hello(&[]));
        assert!(plausible_hello(&h[..3]));
        assert!(plausible_hello(&h));
        assert!(!plausible_hello(b"GET / HTTP/1.1"));
        assert!(plausible_challenge(&challenge(&[1; 16])));
        assert!(!plausible_challenge(b"PQHELLO3"));
    }
}

#[cfg(test)]
mod wire_md {
    use super::*;

    /// The worked example of WIRE.md: s1 dials r2 under link key `00 01 … 1f`, deployment id
    /// `11 × 32`; nonces and incarnations are runs of one byte.
    fn example() -> Vec<u8> {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = i as u8;
        }
        let (s1, r2) = (ReplicaId::new(0, 1), ReplicaId::new(1, 2));
        let dialler = SessionContext { deployment: [0x11; 32], incarnation: Incarnation([0xd1; 16]) };
        let acceptor = SessionContext { deployment: [0x11; 32], incarnation: Incarnation([0xa1; 16]) };
        let (na, nd) = ([0xaa; 16], [0xdd; 16]);
        let c = challenge(&na);
        let (h, dialling) = answer(&c, s1, r2, &key, &dialler, &nd).unwrap();
        let (_, confirm, session) = accept(&h, r2, &na, &acceptor, |_| Some(key)).unwrap();
        assert_eq!(dialling.confirm(&confirm).unwrap().key, session.key);
        [&c[..], &h, &confirm, &session.key].concat()
    }

    /// The hex of the example block in WIRE.md (everything before `#` on each line).
    fn documented() -> Vec<u8> {
        let doc = include_str!("../WIRE.md");
        let start = doc.find("<!-- example-handshake:begin -->").expect("begin marker");
        let end = doc.find("<!-- example-handshake:end -->").expect("end marker");
        let mut out = Vec::new();
        for line in doc[start..end].lines().skip(1).filter(|l| !l.starts_with("```")) {
            for tok in line.split('#').next().unwrap_or("").split_whitespace() {
                out.push(u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("bad hex {tok:?}")));
            }
        }
        out
    }

    #[test]
    fn wire_md_handshake_example_matches() {
        let bytes = example();
        let hex: Vec<String> =
            bytes.chunks(8).map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(documented(), bytes, "WIRE.md handshake example is stale; the bytes are:\n{}", hex.join("\n"));
    }
}
