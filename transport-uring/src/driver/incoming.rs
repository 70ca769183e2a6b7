//! An accepted connection: the frames it carries once its hello verified.
//!
//! Bytes arrive in provided buffers (see [`crate::bufring`]) and are copied in here. Until the
//! hello verified they go to the runtime's shared accept loop
//! ([`Acceptor`](picsou_runtime::transport::accept::Acceptor), which the driver holds); after
//! it, the [`Assembler`] cuts frames with the runtime's framing rules. A violation closes the
//! connection and is reported as `Rejected`.
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

use bytes::Bytes;
use picsou_core::ReplicaId;
use picsou_core::bufpool::BufPool;
use picsou_runtime::transport::framer::FramingError;
use socket2::Socket;

use crate::assembler::{Assembler, Lent};

/// Receive the rest of a frame in place when at least this many bytes are missing: below, the
/// copy out of provided buffers is cheaper than stopping and re-arming the multishot receive.
pub(crate) const DIRECT_MIN: usize = 128 * 1024;

/// A receive completion the kernel should never produce; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Anomaly {
    /// Data without a provided buffer.
    #[error("receive completed without a buffer")]
    NoBuffer,
    /// A buffer id or length outside the ring.
    #[error("receive completion out of range")]
    OutOfRange,
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
    /// The peer, once its hello verified.
    peer: Option<ReplicaId>,
    frames: Assembler,
}

impl Incoming {
    /// A freshly accepted connection; its large frames are received into buffers recycled
    /// through `pool`.
    pub(crate) fn new(sock: Socket, epoch: u32, source: String, max_frame: usize, pool: BufPool) -> Self {
        Self {
            sock,
            epoch,
            source,
            recv: None,
            stopping: false,
            direct: false,
            in_place: false,
            peer: None,
            frames: Assembler::new(max_frame, Some(pool)),
        }
    }

    /// The authenticated peer, once the hello verified.
    pub(crate) fn peer(&self) -> Option<ReplicaId> {
        self.peer
    }

    /// Its hello verified: frames from `peer` follow.
    pub(crate) fn authenticated(&mut self, peer: ReplicaId) {
        self.peer = Some(peer);
    }

    /// Takes received frame bytes (after the hello); complete frames go to `out`.
    pub(crate) fn receive(&mut self, data: &[u8], out: &mut impl FnMut(ReplicaId, Bytes)) -> Result<(), FramingError> {
        let Some(from) = self.peer else { return Ok(()) };
        self.frames.feed(data, &mut |f| out(from, f))
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
        out: &mut impl FnMut(ReplicaId, Bytes),
    ) -> Result<(), FramingError> {
        let Some(from) = self.peer else { return Ok(()) };
        // SAFETY: forwarded from the caller.
        unsafe { self.frames.restore(buf, n, &mut |f| out(from, f)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::new(0, 1);

    fn conn() -> Incoming {
        let (s, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut c =
            Incoming::new(Socket::from(std::os::fd::OwnedFd::from(s)), 1, "test".into(), 4096, BufPool::new(1, 1));
        c.authenticated(A);
        c
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![1u8; len];
        f[..4].copy_from_slice(&(len as u32).to_le_bytes());
        f[4..6].copy_from_slice(b"PQ");
        f
    }

    #[test]
    fn frames_in_any_split() {
        let mut stream = frame(60);
        stream.extend(frame(100));
        for cut in [1, 3, 6, 7, 59, 60, 61, 1000] {
            let mut c = conn();
            let mut all = Vec::new();
            for chunk in stream.chunks(cut) {
                c.receive(chunk, &mut |p, f| all.push(format!("{p} {}", f.len()))).unwrap();
            }
            assert_eq!(all, vec!["s1 60".to_string(), "s1 100".into()], "cut {cut}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let mut c = conn();
        assert!(matches!(c.receive(&frame(5000)[..6], &mut |_, _| {}), Err(FramingError::BadLength { .. })));
    }
}
