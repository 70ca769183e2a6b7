//! An accepted connection: the hello that authenticates it, then the frames it carries.
//!
//! Bytes arrive in provided buffers (see [`super::bufring`]) and are copied in here. The first
//! [`HELLO_LEN`] bytes must be a hello that [`Auth`] verifies; bytes that cannot be the start of
//! a hello are refused as soon as they arrive (garbage on the port is not kept waiting for 40
//! bytes). After the hello, the [`Assembler`] cuts frames with the runtime's framing rules. Any
//! violation is a [`Refusal`]: the driver reports it as `Rejected` and closes the connection.
//!
//! Large frames skip the provided buffers: once a frame's prefix says at least [`DIRECT_MIN`]
//! bytes are still to come, the driver stops the multishot receive and receives the rest in
//! place, straight into the frame's own allocation ([`Incoming::lend`], [`Incoming::restore`]).
//! That saves a memcpy of every byte of large frames (a quarter of the receiving thread's time
//! with 1 MiB frames). Stopping a multishot takes a round trip during which it keeps filling
//! buffers, so a connection that just received a large frame in place stays *in place*: it
//! reads the next frame's 6-byte prefix in place too, then the rest if the frame is large
//! (two receives per frame, no copy), and goes back to the multishot receive as soon as a
//! frame is small (runs of small frames need one completion per many frames, not two per
//! frame).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;
use picsou_core::keys::LinkKeys;
use picsou_runtime::transport::hello::{self, Claimed, HELLO_LEN, HelloError};
use socket2::Socket;

use crate::assembler::{Assembler, Lent};

/// Receive the rest of a frame in place when at least this many bytes are missing: below, the
/// copy out of provided buffers is cheaper than stopping and re-arming the multishot receive.
pub(crate) const DIRECT_MIN: usize = 128 * 1024;

/// Verifies hellos: the destination is us, the source is a configured peer holding the link
/// key, and the nonce is newer than the last one accepted from that peer.
pub(crate) struct Auth {
    local: ReplicaId,
    keys: LinkKeys,
    known: Vec<ReplicaId>,
    last_nonce: HashMap<ReplicaId, u64>,
    /// The first bytes of every hello (its magic), for the early garbage check.
    magic: [u8; 8],
}

impl Auth {
    /// Accepts hellos from `known` peers only.
    pub(crate) fn new(local: ReplicaId, keys: LinkKeys, known: Vec<ReplicaId>) -> Self {
        let sample = hello::encode(local, local, 0, &[0; 32]);
        let mut magic = [0; 8];
        magic.copy_from_slice(&sample[..8]);
        Self { local, keys, known, last_nonce: HashMap::new(), magic }
    }

    /// Whether `bytes`, the first bytes of a connection, can still begin a hello.
    fn plausible(&self, bytes: &[u8]) -> bool {
        let n = bytes.len().min(self.magic.len());
        bytes[..n] == self.magic[..n]
    }

    /// Verifies `h`; on success remembers its nonce (a replay is refused from then on).
    fn verify(&mut self, h: &[u8; HELLO_LEN]) -> Result<Claimed, HelloError> {
        let claimed = hello::parse(h)?;
        let last = self.last_nonce.get(&claimed.from).copied().unwrap_or(0);
        let (keys, known) = (&self.keys, &self.known);
        let c = hello::verify(h, self.local, |p| known.contains(&p).then(|| keys.key_for(p)).flatten(), last)?;
        self.last_nonce.insert(c.from, c.nonce);
        Ok(c)
    }
}

/// Why a connection is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The peer it claimed to be, if it got that far.
    pub(crate) claimed: Option<ReplicaId>,
    /// Why.
    pub(crate) reason: String,
}

/// What a connection delivered.
#[derive(Debug)]
pub(crate) enum Received {
    /// The hello verified: the connection now carries frames from this peer.
    Authenticated(ReplicaId),
    /// A complete frame.
    Frame(ReplicaId, Bytes),
}

/// One accepted connection.
pub(crate) struct Incoming {
    /// The socket (we only read from it).
    pub(crate) sock: Socket,
    /// Distinguishes this connection from earlier ones in the same slot.
    pub(crate) epoch: u32,
    /// Remote address, for reports.
    pub(crate) source: String,
    /// The `user_data` of the armed multishot receive, if any.
    pub(crate) recv: Option<u64>,
    /// That multishot is being cancelled (to switch to a direct receive).
    pub(crate) stopping: bool,
    /// A direct receive into the frame's buffer is in flight.
    pub(crate) direct: bool,
    /// The last frame was large and received in place: read the next prefix in place too.
    in_place: bool,
    /// A connection still without a verified hello at this instant is refused.
    pub(crate) hello_deadline: Instant,
    hello: [u8; HELLO_LEN],
    got: usize,
    peer: Option<ReplicaId>,
    frames: Assembler,
}

impl Incoming {
    /// A freshly accepted connection; its large frames are received into buffers recycled
    /// through `pool`.
    pub(crate) fn new(
        sock: Socket,
        epoch: u32,
        source: String,
        max_frame: usize,
        pool: BufPool,
        hello_deadline: Instant,
    ) -> Self {
        Self {
            sock,
            epoch,
            source,
            recv: None,
            stopping: false,
            direct: false,
            in_place: false,
            hello_deadline,
            hello: [0; HELLO_LEN],
            got: 0,
            peer: None,
            frames: Assembler::new(max_frame, Some(pool)),
        }
    }

    /// The authenticated peer, once the hello verified.
    pub(crate) fn peer(&self) -> Option<ReplicaId> {
        self.peer
    }

    /// Some bytes arrived but not a whole hello (a close now is worth reporting).
    pub(crate) fn mid_hello(&self) -> bool {
        self.peer.is_none() && self.got > 0
    }

    /// Takes received bytes; reports the hello's success and frames through `out`.
    pub(crate) fn receive(
        &mut self,
        mut data: &[u8],
        auth: &mut Auth,
        out: &mut impl FnMut(Received),
    ) -> Result<(), Refusal> {
        if self.peer.is_none() {
            let take = (HELLO_LEN - self.got).min(data.len());
            self.hello[self.got..self.got + take].copy_from_slice(&data[..take]);
            self.got += take;
            data = &data[take..];
            if !auth.plausible(&self.hello[..self.got]) {
                return Err(Refusal { claimed: None, reason: HelloError::BadMagic.to_string() });
            }
            if self.got < HELLO_LEN {
                return Ok(());
            }
            match auth.verify(&self.hello) {
                Ok(c) => {
                    self.peer = Some(c.from);
                    out(Received::Authenticated(c.from));
                }
                Err(e) => {
                    let claimed = hello::parse(&self.hello).ok().map(|c| c.from);
                    return Err(Refusal { claimed, reason: e.to_string() });
                }
            }
        }
        let Some(from) = self.peer else { return Ok(()) };
        self.frames
            .feed(data, &mut |f| out(Received::Frame(from, f)))
            .map_err(|e| Refusal { claimed: Some(from), reason: e.to_string() })
    }

    /// Bytes of an incomplete frame held (for reports on close).
    pub(crate) fn partial(&self) -> usize {
        self.frames.buffered()
    }

    /// The rest of the current frame is large enough to be received in place.
    pub(crate) fn wants_direct(&self) -> bool {
        self.peer.is_some() && self.frames.missing().is_some_and(|m| m >= DIRECT_MIN)
    }

    /// Lends the current frame's buffer for a direct receive of its missing bytes (returned
    /// with the buffer): the rest of a large frame, or the next prefix after a large frame.
    /// `None`: use the multishot receive.
    pub(crate) fn lend(&mut self) -> Option<(Lent, usize)> {
        if self.wants_direct() {
            self.in_place = true;
            return self.frames.lend_rest();
        }
        if self.in_place && self.peer.is_some() {
            if let Some(lent) = self.frames.lend_prefix() {
                return Some(lent);
            }
            // The prefix is in and the frame is small: back to the multishot receive.
            self.in_place = false;
        }
        None
    }

    /// Takes back a lent buffer after a direct receive of `n` bytes; a completed frame goes to
    /// `out`.
    ///
    /// # Safety
    /// As [`Assembler::restore`]: `n` bytes of the spare capacity were written by the kernel,
    /// and `n` is at most what [`Incoming::lend`] returned.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn restore(
        &mut self,
        buf: Lent,
        n: usize,
        out: &mut impl FnMut(Received),
    ) -> Result<(), Refusal> {
        let Some(from) = self.peer else { return Ok(()) };
        // SAFETY: forwarded from the caller.
        unsafe { self.frames.restore(buf, n, &mut |f| out(Received::Frame(from, f))) }
            .map_err(|e| Refusal { claimed: Some(from), reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::new(0, 1);
    const B: ReplicaId = ReplicaId::new(1, 0);
    const C: ReplicaId = ReplicaId::new(1, 5);

    fn conn() -> Incoming {
        let (s, _) = std::os::unix::net::UnixStream::pair().unwrap();
        Incoming::new(
            Socket::from(std::os::fd::OwnedFd::from(s)),
            1,
            "test".into(),
            4096,
            BufPool::new(1, 1),
            Instant::now(),
        )
    }

    fn keys(local: ReplicaId) -> LinkKeys {
        LinkKeys::derived(local, [7; 32])
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![1u8; len];
        f[..4].copy_from_slice(&(len as u32).to_le_bytes());
        f[4..6].copy_from_slice(b"PQ");
        f
    }

    fn collect(c: &mut Incoming, auth: &mut Auth, data: &[u8]) -> (Vec<String>, Result<(), Refusal>) {
        let mut got = Vec::new();
        let r = c.receive(data, auth, &mut |r| {
            got.push(match r {
                Received::Authenticated(p) => format!("up {p}"),
                Received::Frame(p, f) => format!("{p} {}", f.len()),
            })
        });
        (got, r)
    }

    #[test]
    fn hello_then_frames_in_any_split() {
        let key = keys(A).key_for(B).unwrap();
        let mut stream = hello::encode(A, B, 5, &key).to_vec();
        stream.extend(frame(60));
        stream.extend(frame(100));
        for cut in [1, 3, 39, 40, 41, 1000] {
            let mut auth = Auth::new(B, keys(B), vec![A]);
            let mut c = conn();
            let mut all = Vec::new();
            for chunk in stream.chunks(cut) {
                let (got, r) = collect(&mut c, &mut auth, chunk);
                r.unwrap();
                all.extend(got);
            }
            assert_eq!(all, vec!["up s1".to_string(), "s1 60".into(), "s1 100".into()], "cut {cut}");
            assert_eq!(c.peer(), Some(A));
        }
    }

    #[test]
    fn refusals() {
        let key = keys(A).key_for(B).unwrap();
        let mut auth = Auth::new(B, keys(B), vec![A]);
        // Garbage is refused at its first byte.
        let (_, r) = collect(&mut conn(), &mut auth, b"G");
        assert_eq!(r.unwrap_err().claimed, None);
        // Wrong key.
        let (_, r) = collect(&mut conn(), &mut auth, &hello::encode(A, B, 9, &[3; 32]));
        assert_eq!(r.unwrap_err().claimed, Some(A));
        // Not a configured peer (even holding a derivable key).
        let (_, r) = collect(&mut conn(), &mut auth, &hello::encode(C, B, 9, &keys(C).key_for(B).unwrap()));
        assert!(r.unwrap_err().reason.contains("unknown"));
        // Accepted, then replayed.
        let h = hello::encode(A, B, 9, &key);
        assert!(collect(&mut conn(), &mut auth, &h).1.is_ok());
        assert!(collect(&mut conn(), &mut auth, &h).1.unwrap_err().reason.contains("replayed"));
        // Oversized frame after a good hello.
        let mut c = conn();
        let mut s = hello::encode(A, B, 10, &key).to_vec();
        s.extend(&frame(5000)[..6]);
        let (got, r) = collect(&mut c, &mut auth, &s);
        assert_eq!(got, vec!["up s1".to_string()]);
        assert_eq!(r.unwrap_err().claimed, Some(A));
    }
}
