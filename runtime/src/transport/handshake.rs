//! The session handshake as the stream transports run it (the messages and the key schedule are
//! [`picsou_core::handshake`]): fresh nonces and incarnations from the OS's random source, and
//! the dialler's side as a reader that any transport feeds from its socket.
//!
//! The acceptor's side lives in the shared [`accept`](super::accept) loop: it sends the
//! challenge as soon as it accepts, checks the hello, and answers with the confirmation.

use std::io::{self, Read};

use picsou_core::ReplicaId;
use picsou_core::handshake::{self as wire, Dialling};
pub use picsou_core::handshake::{
    CHALLENGE_LEN, CONFIRM_LEN, Claimed, HELLO_LEN, HandshakeError, Incarnation, Nonce, Session, SessionContext,
    SessionDirection,
};
use picsou_core::keys::MacKey;

/// A fresh random nonce. The OS's random source does not fail on Linux once booted; if it
/// ever does, the nonce comes from a hash of the time and a counter — unpredictable enough
/// to stay unique, and logged.
pub fn fresh_nonce() -> Nonce {
    let mut n = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut n) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        tracing::warn!("the OS random source failed ({e}); nonce derived from the clock");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(&now.as_nanos().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        n.copy_from_slice(&h.finalize().as_bytes()[..16]);
    }
    n
}

/// A new incarnation for a process (or a transport) that starts.
pub fn new_incarnation() -> Incarnation {
    Incarnation(fresh_nonce())
}

/// What the dialler's handshake wants next.
#[derive(Debug)]
pub enum DialProgress {
    /// Keep reading.
    More,
    /// Send this hello, then keep reading (for the confirmation).
    Send([u8; HELLO_LEN]),
    /// The handshake is complete: the connection's session.
    Done(Session),
}

/// The dialler's side of one connection's handshake: reads the challenge, answers with a hello,
/// reads the confirmation. Reads exactly the handshake's bytes, never past them (the RDMA
/// bootstrap's answer follows the confirmation on the same socket).
#[derive(Debug)]
pub struct DialHandshake {
    local: ReplicaId,
    peer: ReplicaId,
    key: MacKey,
    ctx: SessionContext,
    buf: [u8; CONFIRM_LEN],
    got: usize,
    /// After the hello went out: what checks the confirmation.
    dialling: Option<Dialling>,
}

impl DialHandshake {
    /// `local` dials `peer`, whose link key is `key`.
    pub fn new(local: ReplicaId, peer: ReplicaId, key: MacKey, ctx: SessionContext) -> Self {
        Self { local, peer, key, ctx, buf: [0; CONFIRM_LEN], got: 0, dialling: None }
    }

    /// Length of the message being read.
    fn want(&self) -> usize {
        if self.dialling.is_some() { CONFIRM_LEN } else { CHALLENGE_LEN }
    }

    /// Where the next bytes go: the rest of the message being read.
    pub fn unfilled(&mut self) -> &mut [u8] {
        let want = self.want();
        &mut self.buf[self.got..want]
    }

    /// `n` bytes were read into [`DialHandshake::unfilled`].
    pub fn filled(&mut self, n: usize) -> Result<DialProgress, HandshakeError> {
        self.got += n;
        if self.dialling.is_none() && !wire::plausible_challenge(&self.buf[..self.got]) {
            return Err(HandshakeError::BadMagic);
        }
        if self.got < self.want() {
            return Ok(DialProgress::More);
        }
        self.got = 0;
        match &self.dialling {
            None => {
                let mut c = [0u8; CHALLENGE_LEN];
                c.copy_from_slice(&self.buf[..CHALLENGE_LEN]);
                let (hello, dialling) = wire::answer(&c, self.local, self.peer, &self.key, &self.ctx, &fresh_nonce())?;
                self.dialling = Some(dialling);
                Ok(DialProgress::Send(hello))
            }
            Some(dialling) => dialling.confirm(&self.buf).map(DialProgress::Done),
        }
    }

    /// Reads what `stream` has (non-blocking) until the handshake needs to send or is done;
    /// `More` when the stream has nothing more now. A closed stream is an error
    /// (`UnexpectedEof`).
    pub fn read_from(&mut self, stream: &mut impl Read) -> io::Result<Result<DialProgress, HandshakeError>> {
        loop {
            match stream.read(self.unfilled()) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => match self.filled(n) {
                    Ok(DialProgress::More) => {}
                    other => return Ok(other),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Ok(DialProgress::More)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialler_reads_byte_by_byte_and_agrees_with_the_acceptor() {
        let (a, b) = (ReplicaId::new(0, 1), ReplicaId::new(1, 0));
        let key = [3; 32];
        let ctx = SessionContext { deployment: [1; 32], incarnation: new_incarnation() };
        let actx = SessionContext { deployment: [1; 32], incarnation: new_incarnation() };
        let mut d = DialHandshake::new(a, b, key, ctx);
        let na = fresh_nonce();
        let challenge = wire::challenge(&na);
        let mut hello = None;
        for (i, byte) in challenge.iter().enumerate() {
            d.unfilled()[0] = *byte;
            match d.filled(1).unwrap() {
                DialProgress::More => assert!(i + 1 < CHALLENGE_LEN),
                DialProgress::Send(h) => hello = Some(h),
                DialProgress::Done(_) => unreachable!(),
            }
        }
        let (claimed, confirm, session) = wire::accept(&hello.unwrap(), b, &na, &actx, |_| Some(key)).unwrap();
        assert_eq!(claimed.incarnation, ctx.incarnation);
        let mut src = &confirm[..];
        let Ok(Ok(DialProgress::Done(s))) = d.read_from(&mut src) else { panic!("not done") };
        assert_eq!(s.key, session.key);
        assert_eq!(s.peer_incarnation, actx.incarnation);
    }

    #[test]
    fn garbage_instead_of_a_challenge_is_refused_at_once() {
        let mut d = DialHandshake::new(
            ReplicaId::new(0, 1),
            ReplicaId::new(1, 0),
            [0; 32],
            SessionContext { deployment: [0; 32], incarnation: Incarnation::default() },
        );
        let mut src = &b"HTTP/1.1 400"[..];
        assert_eq!(d.read_from(&mut src).unwrap().unwrap_err(), HandshakeError::BadMagic);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(fresh_nonce(), fresh_nonce());
    }
}
